"""Example job of the job world in Python (componentize-py): retention.

Each run records itself under `seen/RUN` in the job's key-value store, then
prunes all but the newest KEEP entries (default 3), logging what it did.
The store outlives restarts and reloads, so the window slides across runs.

Build: componentize-py -d ../../sdk/wit -w job componentize app -o build/prune.wasm
"""

import os

import wit_world
from wit_world.imports import kv, log


class WitWorld(wit_world.WitWorld):
    def run(self, context, payload: bytes) -> None:
        keep = int(os.environ.get("KEEP", "3"))
        kv.set(f"seen/{context.run_id:012d}", context.scheduled_at.encode())
        keys = kv.list_keys("seen/")
        stale = keys[:-keep] if len(keys) > keep else []
        for key in stale:
            kv.delete(key)
        kept = len(keys) - len(stale)
        log.log(log.Level.INFO, "pruned old entries", [("removed", str(len(stale))), ("kept", str(kept))])
        print(f"{context.job}: kept {kept} of {len(keys)} entries (attempt {context.attempt}, {context.trigger})")
