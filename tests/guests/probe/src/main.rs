//! Test guest. Its first argument says what to do; it prints what it saw
//! and exits 0 if the action worked, 1 (with the error on stderr) if not.
//!
//!   env               print args, then every environment variable, sorted
//!   stdin             copy the payload (stdin) to stdout
//!   read PATH         print the file at PATH
//!   write PATH TEXT   write TEXT to PATH
//!   list PATH         print the names in the folder PATH
//!   sleep SECONDS     sleep, then print "woke"
//!   split VAR         print the variable VAR's value in two writes, cut in
//!                     its middle, then a newline
//!   fail MESSAGE      return an error (exit 1)

use std::io::Write;
use std::time::Duration;

fn main() {
    wasmcron_sdk::run(|ctx, payload| {
        let args: Vec<String> = std::env::args().collect();
        let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
        match arg(1)? {
            "env" => {
                println!("args={}", args.join(" "));
                println!("context={ctx:?}");
                let mut vars: Vec<(String, String)> = std::env::vars().collect();
                vars.sort();
                for (key, value) in vars {
                    println!("{key}={value}");
                }
            }
            "stdin" => print!("{}", String::from_utf8_lossy(payload)),
            "read" => print!("{}", std::fs::read_to_string(arg(2)?)?),
            "write" => {
                std::fs::write(arg(2)?, arg(3)?)?;
                println!("wrote {}", arg(2)?);
            }
            "list" => {
                let mut names: Vec<String> = std::fs::read_dir(arg(2)?)?
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<_, _>>()?;
                names.sort();
                println!("{}", names.join("\n"));
            }
            "sleep" => {
                std::thread::sleep(Duration::from_secs(arg(2)?.parse()?));
                println!("woke");
            }
            "split" => {
                let value = std::env::var(arg(2)?)?;
                let (first, second) = value.as_bytes().split_at(value.len() / 2);
                let mut stdout = std::io::stdout();
                for half in [first, second, b"\n"] {
                    stdout.write_all(half)?;
                    stdout.flush()?;
                }
            }
            "fail" => return Err(arg(2)?.to_owned().into()),
            other => return Err(format!("unknown action {other:?}").into()),
        }
        Ok(())
    })
}
