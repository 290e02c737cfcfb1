;; Example job in hand-written WAT: prints one line and exits 0.
;; It shows the smallest possible wasmcron job: a WASI command module that
;; exports `_start` and imports only `fd_write`.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: pointer 16, length 21
  (data (i32.const 0) "\10\00\00\00\15\00\00\00")
  (data (i32.const 16) "heartbeat: all well.\0a")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
