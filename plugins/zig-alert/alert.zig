//! Example job in Zig: an alert check with a threshold.
//!
//! A plain WASI command (wasm32-wasi). Reads latency samples in
//! milliseconds, one per line, from the payload (stdin); fails (exit 1)
//! when their maximum is above THRESHOLD_MS (default 250), so the host
//! records a failure and retries per [retry].
//!
//! Build: python3 -m ziglang build-exe -target wasm32-wasi -O ReleaseSmall -femit-bin=alert.wasm alert.zig

const std = @import("std");

pub fn main() !u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const allocator = arena.allocator();

    const threshold: f64 = blk: {
        const text = std.process.getEnvVarOwned(allocator, "THRESHOLD_MS") catch break :blk 250;
        break :blk std.fmt.parseFloat(f64, text) catch {
            std.debug.print("THRESHOLD_MS={s} is not a number\n", .{text});
            return 1;
        };
    };

    const input = try std.io.getStdIn().readToEndAlloc(allocator, 16 << 20);
    var worst: f64 = 0;
    var count: usize = 0;
    var lines = std.mem.tokenizeAny(u8, input, "\r\n");
    while (lines.next()) |line| {
        const value = std.fmt.parseFloat(f64, std.mem.trim(u8, line, " \t")) catch {
            std.debug.print("\"{s}\" is not a number\n", .{line});
            return 1;
        };
        worst = @max(worst, value);
        count += 1;
    }
    if (count == 0) {
        std.debug.print("no samples in the payload\n", .{});
        return 1;
    }
    const stdout = std.io.getStdOut().writer();
    try stdout.print("max latency {d:.1} ms over {d} samples (threshold {d:.1} ms)\n", .{ worst, count, threshold });
    if (worst > threshold) {
        std.debug.print("ALERT: max latency {d:.1} ms is above {d:.1} ms\n", .{ worst, threshold });
        return 1;
    }
    return 0;
}
