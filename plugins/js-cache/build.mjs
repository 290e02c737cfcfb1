// Builds app.js into a component of the wasmcron job world, with `fetch`,
// using componentize-js. The WIT is passed as text (its wasm-sandboxed
// tools cannot open a folder outside the working directory): world.wit,
// then sdk/wit/job.wit as a nested package.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const job = await readFile(here("../../sdk/wit/job.wit"), "utf8");
const nested = job.replace(/^package (wasmcron:job@[0-9.]+);$/m, "package $1 {") + "\n}\n";
const { component } = await componentize({
  sourcePath: here("app.js"),
  witWorld: (await readFile(here("world.wit"), "utf8")) + "\n" + nested,
  worldName: "cache",
  // `fetch` needs StarlingMonkey's "http" feature (outgoing wasi:http);
  // "fetch-event" would make this an incoming HTTP handler, which a job is not.
  disableFeatures: ["fetch-event"],
});
await mkdir(here("build"), { recursive: true });
await writeFile(here("build/cache.wasm"), component);
