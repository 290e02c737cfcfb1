"""{{name}}: a wasmcron job of the job world in Python (componentize-py).

`run` gets the run's context and payload; the host offers logging,
key-value state private to this job, and `enqueue`. Raise
componentize_py_types.Err("why") to fail the run.
"""

import wit_world
from wit_world.imports import kv, log


class WitWorld(wit_world.WitWorld):
    def run(self, context, payload: bytes) -> None:
        runs = int((kv.get("runs") or b"0").decode()) + 1
        kv.set("runs", str(runs).encode())
        log.log(log.Level.INFO, "hello", [("runs", str(runs))])
        print(f"{context.job}: hello from Python in the job world (run {runs} of this job, {context.trigger})")
