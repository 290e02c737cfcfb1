// Builds app.js into build/{{name}}.wasm, a component of the job world.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const { component } = await componentize({
  sourcePath: here("app.js"),
  witWorld: await readFile(here("wit/job.wit"), "utf8"),
  worldName: "job",
  // No network: leave out fetch. To use fetch, drop "http" here and grant
  // its destination in the declaration's [network] (docs/writing-jobs.md).
  disableFeatures: ["http", "fetch-event"],
});
await mkdir(here("build"), { recursive: true });
await writeFile(here("build/{{name}}.wasm"), component);
