// Example job in AssemblyScript: a queue-depth check.
//
// A plain WASI command (via @assemblyscript/wasi-shim). The payload (stdin)
// is the current depth of a work queue, as a number; the job fails when it
// is above MAX_DEPTH (default 1000), so the host records a failure and
// retries. Without a payload it reports that it had nothing to check.
//
// Build: npm install && npm run build

function readStdin(): string {
  const chunk = new ArrayBuffer(4096);
  let text = "";
  while (true) {
    const read = process.stdin.read(chunk);
    if (read <= 0) break;
    text += String.UTF8.decode(chunk.slice(0, read));
  }
  return text.trim();
}

const job = process.env.has("WASMCRON_JOB") ? process.env.get("WASMCRON_JOB") : "as-check";
const limitText = process.env.has("MAX_DEPTH") ? process.env.get("MAX_DEPTH") : "1000";
const limit = I64.parseInt(limitText);
const payload = readStdin();

if (payload.length == 0) {
  console.log(job + ": no queue depth in the payload; nothing to check");
} else {
  const depth = I64.parseInt(payload);
  console.log(job + ": queue depth " + depth.toString() + " (limit " + limit.toString() + ")");
  if (depth > limit) {
    process.stderr.write(job + ": ALERT: queue depth " + depth.toString() + " is above " + limit.toString() + "\n");
    process.exit(1);
  }
}
