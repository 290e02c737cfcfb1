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
//!   http URL [CONNECT_MS FIRST_BYTE_MS]
//!                     GET URL over wasi:http (components only), following
//!                     up to 5 redirects; print each hop's status, then the body
//!   http-repeat N URL GET URL N times over wasi:http, each on a new
//!                     connection, expecting 200 (the outbound benchmark)
//!   tcp HOST PORT LINE connect over wasi:sockets, send LINE, print the reply line

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
            #[cfg(all(target_os = "wasi", target_env = "p2"))]
            "http" => {
                let timeouts = match (args.get(3), args.get(4)) {
                    (Some(connect), Some(first_byte)) => Some((connect.parse()?, first_byte.parse()?)),
                    _ => None,
                };
                wstd::runtime::block_on(http::get(arg(2)?, timeouts))?
            }
            #[cfg(all(target_os = "wasi", target_env = "p2"))]
            "http-repeat" => {
                let times: usize = arg(2)?.parse()?;
                wstd::runtime::block_on(http::repeat(times, arg(3)?))?;
                println!("{times} ok");
            }
            "tcp" => {
                use std::io::{BufRead, Write};
                let mut stream = std::net::TcpStream::connect((arg(2)?, arg(3)?.parse::<u16>()?))?;
                writeln!(stream, "{}", arg(4)?)?;
                let mut reply = String::new();
                std::io::BufReader::new(stream).read_line(&mut reply)?;
                print!("reply: {reply}");
            }
            other => return Err(format!("unknown action {other:?}").into()),
        }
        Ok(())
    })
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod http {
    use wstd::http::{Body, Client, Request};
    use wstd::time::Duration;

    type Error = Box<dyn std::error::Error>;

    pub async fn get(url: &str, timeouts: Option<(u64, u64)>) -> Result<(), Error> {
        let mut client = Client::new();
        if let Some((connect, first_byte)) = timeouts {
            client.set_connect_timeout(Duration::from_millis(connect));
            client.set_first_byte_timeout(Duration::from_millis(first_byte));
        }
        let mut url = url.to_owned();
        for _ in 0..5 {
            let request = Request::get(url.as_str()).body(Body::empty())?;
            let response = client.send(request).await.map_err(|e| format!("GET {url}: {e:?}"))?;
            let status = response.status();
            println!("GET {url} -> {}", status.as_u16());
            if status.is_redirection() {
                let location = response.headers().get("location").ok_or("a redirect with no Location")?;
                url = location.to_str()?.to_owned();
                continue;
            }
            let mut body = response.into_body();
            print!("{}", body.str_contents().await.map_err(|e| format!("reading {url}: {e:?}"))?);
            return Ok(());
        }
        Err("more than 5 redirects".into())
    }

    pub async fn repeat(times: usize, url: &str) -> Result<(), Error> {
        let client = Client::new();
        for _ in 0..times {
            let request = Request::get(url).body(Body::empty())?;
            let response = client.send(request).await.map_err(|e| format!("GET {url}: {e:?}"))?;
            if response.status() != 200 {
                return Err(format!("GET {url} answered {}", response.status()).into());
            }
            response.into_body().contents().await.map_err(|e| format!("reading {url}: {e:?}"))?;
        }
        Ok(())
    }
}
