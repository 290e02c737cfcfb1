// Example job of the job world in JavaScript (componentize-js via jco):
// a dispatcher that fans work out to other jobs with `enqueue`.
//
// The payload is a list of job names, one per line or comma-separated. Each
// is queued with this run's id in its payload and recorded with this run as
// its parent; a running count is kept in the key-value store. An unknown
// job fails this run with the host's message, after the others are queued.
//
// Build: npm install && npm run build

import { log } from "wasmcron:job/log@0.1.0";
import { enqueue } from "wasmcron:job/queue@0.1.0";
import { get, set } from "wasmcron:job/kv@0.1.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function run(context, payload) {
  const text = decoder.decode(payload).trim();
  const targets = text
    .split(/[\n,]/)
    .map((name) => name.trim())
    .filter((name) => name.length > 0);
  if (targets.length === 0) {
    log("warn", "nothing to dispatch", []);
    return;
  }
  const dispatched = Number(decoder.decode(get("dispatched") ?? encoder.encode("0")));
  const failures = [];
  for (const job of targets) {
    try {
      const id = enqueue(job, encoder.encode(`from ${context.job} run ${context.runId}`), 0n);
      log("info", "queued", [["job", job], ["run_id", String(id)]]);
    } catch (error) {
      failures.push(`${job}: ${error.payload ?? error}`);
    }
  }
  set("dispatched", encoder.encode(String(dispatched + targets.length - failures.length)));
  console.log(`${context.job}: queued ${targets.length - failures.length} of ${targets.length} follow-ups`);
  if (failures.length > 0) {
    throw failures.join("; ");
  }
}
