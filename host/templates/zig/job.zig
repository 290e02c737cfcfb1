//! {{name}}: a wasmcron job in Zig (0.14), as a WASI command. The run's
//! facts are in WASMCRON_* variables, the payload is stdin, and the exit
//! code is the outcome (0 succeeded, anything else failed).

const std = @import("std");

pub fn main() !u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const allocator = arena.allocator();
    const job = std.process.getEnvVarOwned(allocator, "WASMCRON_JOB") catch "{{name}}";
    const run = std.process.getEnvVarOwned(allocator, "WASMCRON_RUN_ID") catch "";
    const trigger = std.process.getEnvVarOwned(allocator, "WASMCRON_TRIGGER") catch "";
    const payload = try std.io.getStdIn().readToEndAlloc(allocator, 16 << 20);
    try std.io.getStdOut().writer().print("{s}: hello from Zig (run {s}, trigger {s}, {d} bytes of payload)\n", .{ job, run, trigger, payload.len });
    return 0;
}
