// Builds app.js into a component of the wasmcron job world with
// componentize-js. The WIT is passed as text: its wasm-sandboxed tools
// cannot open a folder outside the working directory.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const { component } = await componentize({
  sourcePath: here("app.js"),
  witWorld: await readFile(here("../../sdk/wit/job.wit"), "utf8"),
  worldName: "job",
  // This job needs no network: leave out fetch (see js-cache for a job that uses it).
  disableFeatures: ["http", "fetch-event"],
});
await mkdir(here("build"), { recursive: true });
await writeFile(here("build/followup.wasm"), component);
