//! `[network]`: outbound HTTP (wasi:http) and TCP (wasi:sockets) from the
//! probe component, against real servers on loopback — granted through
//! `private = ["127.0.0.0/8"]`, as loopback is not public. Each refusal
//! must reach the guest as an error (not a trap), and the run's record
//! must name the refused `scheme://host:port`, never a path.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Sandbox, guests, text, toml_path};

/// A loopback HTTP/1.1 server: `respond` maps a request's path to a reply
/// (status line and headers after `HTTP/1.1 `, then the body), or to
/// `None` to accept the request and never answer. It records each request
/// line it got.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(respond: impl Fn(&str) -> Option<(String, String)> + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (respond, log) = (respond.clone(), log.clone());
                std::thread::spawn(move || serve(stream.unwrap(), &*respond, &log));
            }
        });
        Server { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves requests on one connection, kept alive as HTTP/1.1 has it, until
/// the client closes it. Replies come as soon as the head is read: a
/// server may answer before it reads a request's body.
fn serve(stream: TcpStream, respond: &dyn Fn(&str) -> Option<(String, String)>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let request_line = request_line.trim_end().to_owned();
        log.lock().unwrap().push(request_line.clone());
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
        match respond(&path) {
            Some((head, body)) => {
                let reply = format!("HTTP/1.1 {head}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if (&stream).write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            // Hold the connection open, answering nothing.
            None => std::thread::sleep(Duration::from_secs(120)),
        }
    }
}

/// A loopback line server: answers each line with `echo: LINE`.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut line = String::new();
                BufReader::new(stream.try_clone().unwrap()).read_line(&mut line).unwrap();
                (&stream).write_all(format!("echo: {line}").as_bytes()).unwrap();
            });
        }
    });
    port
}

/// Declares the probe component as `name`, doing `args`, with `extra`
/// TOML (a `[network]` table, usually) after.
fn probe(sandbox: &Sandbox, name: &str, args: &[&str], extra: &str) {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    sandbox.declare(
        name,
        &format!(
            "module = {}\nargs = [{}]\n[limits]\ntimeout = \"30s\"\n{extra}",
            toml_path(&guests().probe_p2),
            args.join(", ")
        ),
    );
}

fn loopback(allow: &[String]) -> String {
    let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    format!("[network]\nallow = [{}]\nprivate = [\"127.0.0.0/8\"]\n", allow.join(", "))
}

/// The run's record, and its stdout + stderr + error as one text.
fn run(sandbox: &Sandbox, job: &str) -> (Value, String) {
    let (record, _) = sandbox.once_json(job);
    let all = format!(
        "{}\n{}\n{}",
        record["stdout"].as_str().unwrap_or(""),
        record["stderr"].as_str().unwrap_or(""),
        record["error"].as_str().unwrap_or("")
    );
    (record, all)
}

/// Asserts the run failed because `destination` was denied: the guest saw
/// `HttpRequestDenied` (no trap), and stderr and the error both name it.
fn assert_denied(record: &Value, all: &str, destination: &str) {
    assert_eq!(record["status"], "failed", "{all}");
    assert_eq!(record["exit_code"], 1, "the guest got an error and exited, it did not trap: {all}");
    let stderr = record["stderr"].as_str().unwrap();
    assert!(stderr.contains(&format!("[wasmcron] network: denied {destination}:")), "{all}");
    assert!(record["error"].as_str().unwrap().contains(&format!("network: denied {destination}")), "{all}");
}

/// What the host noted about the network in a run's record: its stderr
/// lines and the note ending its error (the guest's own output aside).
fn host_notes(record: &Value) -> Vec<String> {
    let stderr = record["stderr"].as_str().unwrap_or("");
    let error = record["error"].as_str().unwrap_or("");
    stderr
        .lines()
        .filter(|line| line.starts_with("[wasmcron] network:"))
        .chain(error.lines().filter(|line| line.starts_with("(network:")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_granted_request_succeeds() {
    let server = Server::start(|path| Some(("200 OK".into(), format!("hello from {path}\n"))));
    let sandbox = Sandbox::new();
    let url = format!("http://127.0.0.1:{}/status?x=1", server.port);
    probe(&sandbox, "get", &["http", &url], &loopback(&[format!("http://127.0.0.1:{}", server.port)]));
    let (record, all) = run(&sandbox, "get");
    assert_eq!(record["status"], "succeeded", "{all}");
    assert!(all.contains("-> 200") && all.contains("hello from /status?x=1"), "{all}");
    assert_eq!(server.seen(), ["GET /status?x=1 HTTP/1.1"], "the request line carries the path only");
    assert!(!all.contains("denied"), "{all}");
}

#[test]
fn many_requests_in_a_run_each_get_their_answer() {
    // The server answers each request as soon as its head is read; the
    // guest (wstd) finishes the empty body after that. Every one of them
    // must still reach the guest as a response, not a reset body stream.
    let server = Server::start(|_| Some(("200 OK".into(), "ok".into())));
    let sandbox = Sandbox::new();
    let url = format!("http://127.0.0.1:{}/", server.port);
    probe(&sandbox, "repeat", &["http-repeat", "50", &url], &loopback(&[format!("http://127.0.0.1:{}", server.port)]));
    let (record, all) = run(&sandbox, "repeat");
    assert_eq!(record["status"], "succeeded", "{all}");
    assert!(all.contains("50 ok"), "{all}");
    assert_eq!(server.seen().len(), 50);
}

#[test]
fn no_network_table_means_every_request_is_denied() {
    let server = Server::start(|_| Some(("200 OK".into(), "no".into())));
    let sandbox = Sandbox::new();
    probe(&sandbox, "get", &["http", &format!("http://127.0.0.1:{}/secret/path?token=abc", server.port)], "");
    let (record, all) = run(&sandbox, "get");
    assert_denied(&record, &all, &format!("http://127.0.0.1:{}", server.port));
    assert!(all.contains("HttpRequestDenied"), "the guest saw http-request-denied: {all}");
    let notes = host_notes(&record);
    assert!(!notes.is_empty(), "{all}");
    for note in notes {
        assert!(!note.contains("token=abc") && !note.contains("/secret"), "no path or query in {note:?}");
    }
    assert!(server.seen().is_empty(), "nothing reached the server");
}

#[test]
fn a_host_not_granted_is_denied() {
    let server = Server::start(|_| Some(("200 OK".into(), "no".into())));
    let sandbox = Sandbox::new();
    // 127.0.0.1 is granted on another port, and `localhost` not at all.
    let granted = format!("http://127.0.0.1:{}", server.port + 1);
    probe(
        &sandbox,
        "port",
        &["http", &format!("http://127.0.0.1:{}/", server.port)],
        &loopback(std::slice::from_ref(&granted)),
    );
    probe(&sandbox, "name", &["http", &format!("http://localhost:{}/", server.port)], &loopback(&[granted]));
    let (record, all) = run(&sandbox, "port");
    assert_denied(&record, &all, &format!("http://127.0.0.1:{}", server.port));
    assert!(all.contains("not granted"), "{all}");
    let (record, all) = run(&sandbox, "name");
    assert_denied(&record, &all, &format!("http://localhost:{}", server.port));
    assert!(server.seen().is_empty());
}

#[test]
fn a_redirect_to_a_host_not_granted_is_denied() {
    let elsewhere = Server::start(|_| Some(("200 OK".into(), "you should not see this".into())));
    let target = format!("http://localhost:{}/landing?session=xyz", elsewhere.port);
    let first = Server::start(move |_| Some((format!("302 Found\r\nLocation: {target}"), String::new())));
    let sandbox = Sandbox::new();
    probe(
        &sandbox,
        "hop",
        &["http", &format!("http://127.0.0.1:{}/start", first.port)],
        &loopback(&[format!("http://127.0.0.1:{}", first.port)]),
    );
    let (record, all) = run(&sandbox, "hop");
    assert!(all.contains("-> 302"), "the first hop was granted and answered: {all}");
    assert_denied(&record, &all, &format!("http://localhost:{}", elsewhere.port));
    for note in host_notes(&record) {
        assert!(!note.contains("session=xyz") && !note.contains("/landing"), "no path or query in {note:?}");
    }
    assert!(elsewhere.seen().is_empty(), "the redirect target got nothing");
    assert_eq!(first.seen(), ["GET /start HTTP/1.1"]);
}

#[test]
fn a_name_resolving_to_a_private_address_is_denied_unless_listed() {
    let server = Server::start(|_| Some(("200 OK".into(), "reached\n".into())));
    let sandbox = Sandbox::new();
    let url = format!("http://localhost:{}/", server.port);
    let grant = format!("http://localhost:{}", server.port);
    // Granted by name, but `localhost` resolves to loopback, which is not public.
    probe(&sandbox, "refused", &["http", &url], &format!("[network]\nallow = [{grant:?}]\n"));
    let (record, all) = run(&sandbox, "refused");
    assert_denied(&record, &all, &grant);
    assert!(all.contains("resolves to") && all.contains("[network] private"), "{all}");
    assert!(server.seen().is_empty());

    probe(&sandbox, "listed", &["http", &url], &loopback(&[grant]));
    let (record, all) = run(&sandbox, "listed");
    assert_eq!(record["status"], "succeeded", "{all}");
    assert!(all.contains("reached"), "{all}");
}

#[test]
fn the_cloud_metadata_address_is_denied_even_when_granted() {
    let sandbox = Sandbox::new();
    probe(
        &sandbox,
        "metadata",
        &["http", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"],
        &loopback(&["http://169.254.169.254".into()]),
    );
    let (record, all) = run(&sandbox, "metadata");
    assert_denied(&record, &all, "http://169.254.169.254:80");
    assert!(all.contains("169.254.169.254 is not a public address"), "{all}");
    for note in host_notes(&record) {
        assert!(!note.contains("security-credentials"), "no path in {note:?}");
    }
}

#[test]
fn timeouts_are_capped_by_the_declaration() {
    // The server takes the request and never answers.
    let server = Server::start(|_| None);
    let sandbox = Sandbox::new();
    let url = format!("http://127.0.0.1:{}/slow", server.port);
    let grant = format!("http://127.0.0.1:{}", server.port);
    // The guest asks for 60 s to the first byte; the declaration caps it at
    // 1 s, well inside the run's 30 s timeout: the request fails, the run
    // does not time out.
    probe(
        &sandbox,
        "capped",
        &["http", &url, "60000", "60000"],
        &format!("{}timeouts = {{ first_byte = \"1s\" }}\n", loopback(std::slice::from_ref(&grant))),
    );
    let (record, all) = run(&sandbox, "capped");
    assert_eq!(record["status"], "failed", "{all}");
    assert!(all.contains("ConnectionReadTimeout"), "the request ended at the cap: {all}");

    // A generous cap leaves the run's own timeout in charge.
    sandbox.declare(
        "bounded",
        &format!(
            "module = {}\nargs = [\"http\", {url:?}]\n[limits]\ntimeout = \"2s\"\n{}timeouts = {{ first_byte = \"10m\" }}\n",
            toml_path(&guests().probe_p2),
            loopback(&[grant])
        ),
    );
    let (record, all) = run(&sandbox, "bounded");
    assert_eq!(record["status"], "timed_out", "{all}");
}

#[test]
fn tcp_reaches_granted_pairs_only() {
    let port = echo_server();
    let other = echo_server();
    let sandbox = Sandbox::new();
    let network = loopback(&[format!("tcp://127.0.0.1:{port}"), format!("tcp://localhost:{port}")]);
    probe(&sandbox, "granted", &["tcp", "127.0.0.1", &port.to_string(), "HELO"], &network);
    probe(&sandbox, "by-name", &["tcp", "localhost", &port.to_string(), "EHLO"], &network);
    probe(&sandbox, "port", &["tcp", "127.0.0.1", &other.to_string(), "HELO"], &network);
    probe(&sandbox, "lookup", &["tcp", "example.com", "25", "HELO"], &network);
    probe(&sandbox, "none", &["tcp", "127.0.0.1", &port.to_string(), "HELO"], "");

    let (record, all) = run(&sandbox, "granted");
    assert_eq!(record["status"], "succeeded", "{all}");
    assert!(all.contains("reply: echo: HELO"), "{all}");

    let (record, all) = run(&sandbox, "by-name");
    assert_eq!(record["status"], "succeeded", "a granted name is looked up and its address reached: {all}");
    assert!(all.contains("reply: echo: EHLO"), "{all}");

    let (record, all) = run(&sandbox, "port");
    assert_denied(&record, &all, &format!("tcp://127.0.0.1:{other}"));

    let (record, all) = run(&sandbox, "lookup");
    assert_denied(&record, &all, "tcp://example.com");
    assert!(all.contains("name lookup"), "{all}");

    let (record, all) = run(&sandbox, "none");
    assert_denied(&record, &all, &format!("tcp://127.0.0.1:{port}"));
}

#[test]
fn https_trusts_the_web_roots_and_the_jobs_ca() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("tls");
    std::fs::create_dir(&dir).unwrap();
    // An internal CA, and a server certificate it signed for `localhost`.
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl");
        assert!(made.status.success(), "openssl {args:?}: {}", text(&made.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=wasmcron test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);
    let (cert, key, ca) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    let port = tls_server(&cert, &key);
    let url = format!("https://localhost:{port}/");
    let network = loopback(&[format!("https://localhost:{port}")]);

    probe(&sandbox, "untrusted", &["http", &url], &network);
    let (record, all) = run(&sandbox, "untrusted");
    assert_eq!(record["status"], "failed", "a self-signed certificate is not trusted by the web roots: {all}");
    assert!(all.contains("Tls") || all.contains("tls"), "{all}");

    probe(&sandbox, "trusted", &["http", &url], &format!("{network}ca = {}\n", toml_path(&ca)));
    let (record, all) = run(&sandbox, "trusted");
    assert_eq!(record["status"], "succeeded", "{all}");
    assert!(all.contains("over tls"), "{all}");
}

/// A loopback HTTPS server (Python's ssl module) with `cert` and `key`.
fn tls_server(cert: &std::path::Path, key: &std::path::Path) -> u16 {
    let script = format!(
        r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"over tls\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain({cert:?}, {key:?})
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#,
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // The server lives as long as the test process; it is killed with it.
    std::mem::forget(child);
    line.trim().parse().unwrap_or_else(|_| panic!("the TLS server printed {line:?}"))
}

#[test]
fn check_reports_bad_grants_and_warns_about_ungranted_imports() {
    let sandbox = Sandbox::new();
    probe(&sandbox, "bad", &["env"], "[network]\nallow = [\"https://example.com/hooks/1\"]\n");
    probe(&sandbox, "ungranted", &["env"], "");
    probe(&sandbox, "granted", &["env"], "[network]\nallow = [\"https://example.com\", \"tcp://db.internal:5432\"]\n");
    let output = sandbox.wasmcron(&["check"]).output().unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("network.allow[0]") && stderr.contains("has a path"),
        "{stderr}"
    );
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("warn")).collect();
    assert!(
        warnings.iter().any(|w| w.contains("ungranted") && w.contains("wasi:http") && w.contains("https://HOST")),
        "{stdout}"
    );
    assert!(warnings.iter().any(|w| w.contains("ungranted") && w.contains("wasi:sockets")), "{stdout}");
    assert!(!warnings.iter().any(|w| w.contains(" granted ")), "a job granting both gets no warning: {stdout}");
}
