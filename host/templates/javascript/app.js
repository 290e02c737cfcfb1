// {{name}}: a wasmcron job of the job world in JavaScript (componentize-js).
// `run` gets the run's context and payload; the host offers logging,
// key-value state private to this job, and `enqueue`. Throw a string to
// fail the run.

import { log } from "wasmcron:job/log@0.1.0";
import { get, set } from "wasmcron:job/kv@0.1.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function run(context, payload) {
  const stored = get("runs");
  const runs = (stored ? Number(decoder.decode(stored)) : 0) + 1;
  set("runs", encoder.encode(String(runs)));
  log("info", "hello", [["runs", String(runs)]]);
  console.log(`${context.job}: hello from JavaScript in the job world (run ${runs} of this job, ${context.trigger})`);
}
