//! Example job: the nightly digest mail, sent over SMTP — a line protocol
//! spoken on a plain `std::net::TcpStream`, which on wasm32-wasip2 is
//! `wasi:sockets` TCP, checked by the host against the job's
//! `[network] allow` (`tcp://HOST:PORT`).
//!
//! The digest is the trigger's payload or, when there is none, a listing of
//! the files in `DIGEST_DIR` (default `/reports`, a preopened folder) with
//! their sizes and line counts. It goes from `MAIL_FROM` to each address in
//! `MAIL_TO` (comma-separated) through `SMTP_SERVER` (`host:port`), as
//! EHLO, MAIL FROM, RCPT TO, DATA, QUIT. Any reply but the one expected
//! fails the run, naming the command and quoting the server.
//!
//! Plain SMTP with no TLS or AUTH: the example is for a relay on a trusted
//! network (a local MTA, a mail sink in tests).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use wasmcron_sdk::{Context, Error};

fn main() {
    wasmcron_sdk::run(|context, payload| {
        let var =
            |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set: declare it in the job's env"));
        let server = var("SMTP_SERVER")?;
        let from = var("MAIL_FROM")?;
        let to: Vec<String> =
            var("MAIL_TO")?.split(',').map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
        if to.is_empty() {
            return Err("MAIL_TO names no address".into());
        }
        let digest = if payload.is_empty() {
            listing(&std::env::var("DIGEST_DIR").unwrap_or_else(|_| "/reports".into()))?
        } else {
            String::from_utf8(payload.to_vec()).map_err(|_| "the payload is not UTF-8 text")?
        };
        let stream = TcpStream::connect(&server).map_err(|e| format!("connecting to SMTP_SERVER {server}: {e}"))?;
        // One stream for both directions: wasip2 sockets cannot be cloned.
        let mut session = Session { stream: BufReader::new(stream) };
        send(&mut session, context, &from, &to, &digest)?;
        println!(
            "{}: digest of {} lines sent to {} through {server}",
            context.job,
            digest.lines().count(),
            to.join(", ")
        );
        Ok(())
    })
}

/// One message, from greeting to QUIT.
fn send(session: &mut Session, context: &Context, from: &str, to: &[String], digest: &str) -> Result<(), Error> {
    session.expect("the greeting", 220)?;
    session.command("EHLO wasmcron", 250)?;
    session.command(&format!("MAIL FROM:<{from}>"), 250)?;
    for address in to {
        session.command(&format!("RCPT TO:<{address}>"), 250)?;
    }
    session.command("DATA", 354)?;
    let day = context.scheduled_at.get(..10).unwrap_or("today");
    let mut message = format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: Nightly digest for {day}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nX-Wasmcron-Run: {} {}\r\n\r\n",
        to.iter().map(|a| format!("<{a}>")).collect::<Vec<_>>().join(", "),
        context.job,
        context.run_id,
    );
    for line in digest.lines() {
        // Dot-stuffing (RFC 5321 §4.5.2): a line that starts with "." gets another.
        if line.starts_with('.') {
            message.push('.');
        }
        message.push_str(line);
        message.push_str("\r\n");
    }
    message.push_str(".\r\n");
    session.stream.get_mut().write_all(message.as_bytes())?;
    session.expect("the end of DATA", 250)?;
    session.command("QUIT", 221)
}

struct Session {
    stream: BufReader<TcpStream>,
}

impl Session {
    /// Sends `line` and reads the reply, which must have code `expected`.
    fn command(&mut self, line: &str, expected: u16) -> Result<(), Error> {
        self.stream.get_mut().write_all(format!("{line}\r\n").as_bytes())?;
        let verb = line.split(':').next().unwrap_or(line);
        self.expect(verb, expected)
    }

    /// Reads one reply (all its `NNN-` continuation lines) and checks its code.
    fn expect(&mut self, after: &str, expected: u16) -> Result<(), Error> {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(format!("SMTP protocol error after {after}: the server closed the connection").into());
            }
            reply.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
            reply.push_str(" / ");
        }
        match reply.get(..3).and_then(|code| code.parse::<u16>().ok()) {
            Some(code) if code == expected => Ok(()),
            Some(_) => {
                Err(format!("SMTP protocol error after {after}: expected {expected}, the server said {reply:?}").into())
            }
            None => Err(format!("SMTP protocol error after {after}: {reply:?} is not an SMTP reply").into()),
        }
    }
}

/// A digest of the folder `dir`: each file with its size and line count, and a total.
fn listing(dir: &str) -> Result<String, Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("no payload, and cannot read DIGEST_DIR {dir}: {e}"))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    let (mut text, mut files, mut bytes) = (format!("Files in {dir}:\n"), 0, 0);
    for entry in entries.iter().filter(|e| e.file_type().is_ok_and(|t| t.is_file())) {
        let content = std::fs::read(entry.path())?;
        let lines = content.iter().filter(|&&b| b == b'\n').count();
        text.push_str(&format!("  {}: {} bytes, {lines} lines\n", entry.file_name().to_string_lossy(), content.len()));
        files += 1;
        bytes += content.len();
    }
    text.push_str(&format!("{files} files, {bytes} bytes\n"));
    Ok(text)
}
