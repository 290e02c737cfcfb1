//! Example job: a report over the files in a folder the host preopened.
//!
//! Usage (as `args` in the declaration): `report DIR [OUT]`. Prints one line
//! per file (lines, bytes) and a total; with OUT (in a `rw` preopen), also
//! writes the report there. Fails if DIR cannot be read — for example when
//! the declaration forgot its `[[dirs]]` entry.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

fn main() {
    wasmcron_sdk::run(|ctx, _payload| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let dir = args.first().map(String::as_str).unwrap_or("/data");
        let report = summarise(Path::new(dir)).map_err(|e| format!("cannot read {dir}: {e}"))?;
        let header = format!("report for {dir} (run {} of {}, due {})\n", ctx.run_id, ctx.job, ctx.scheduled_at);
        print!("{header}{report}");
        if let Some(out) = args.get(1) {
            fs::write(out, format!("{header}{report}")).map_err(|e| format!("cannot write {out}: {e}"))?;
            println!("written to {out}");
        }
        Ok(())
    })
}

fn summarise(dir: &Path) -> std::io::Result<String> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut report = String::new();
    let (mut files, mut total_lines, mut total_bytes) = (0, 0, 0);
    for entry in entries {
        if !entry.file_type()?.is_file() {
            continue;
        }
        let text = fs::read(entry.path())?;
        let lines = text.iter().filter(|&&b| b == b'\n').count();
        writeln!(report, "{:<24} {lines:>6} lines {:>8} bytes", entry.file_name().to_string_lossy(), text.len())
            .unwrap();
        files += 1;
        total_lines += lines;
        total_bytes += text.len();
    }
    writeln!(report, "total: {files} files, {total_lines} lines, {total_bytes} bytes").unwrap();
    Ok(report)
}
