// {{name}}: a wasmcron job in AssemblyScript, as a WASI command (through
// @assemblyscript/wasi-shim). The run's facts are in WASMCRON_* variables,
// the payload is stdin, and process.exit(code) sets the outcome.

function env(name: string): string {
  return process.env.has(name) ? process.env.get(name) : "";
}

let payload = 0;
const chunk = new ArrayBuffer(4096);
while (true) {
  const read = process.stdin.read(chunk);
  if (read <= 0) break;
  payload += read;
}
console.log(
  env("WASMCRON_JOB") + ": hello from AssemblyScript (run " + env("WASMCRON_RUN_ID") + ", trigger " +
    env("WASMCRON_TRIGGER") + ", " + payload.toString() + " bytes of payload)",
);
