//! The other systems the network examples reach, run by the test on
//! loopback port 0: an HTTP server (axum) that records every request and
//! answers as the test says, and a minimal SMTP server that records each
//! transaction and can be told to refuse a recipient.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// One request the HTTP server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer: status, headers and body.
pub type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

type Respond = dyn Fn(&Received) -> Answer + Send + Sync;

struct Shared {
    received: Mutex<Vec<Received>>,
    respond: Box<Respond>,
}

/// An HTTP/1.1 server on `127.0.0.1:0`, on a runtime of its own, until dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl HttpServer {
    pub fn start(respond: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> HttpServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let shared = Arc::new(Shared { received: Mutex::new(Vec::new()), respond: Box::new(respond) });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(record).with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        HttpServer { addr, shared, _runtime: runtime }
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn record(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap().to_vec();
    let received = Received {
        method: parts.method.to_string(),
        target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let (status, headers, body) = (shared.respond)(&received);
    shared.received.lock().unwrap().push(received);
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Body::from(body)).unwrap()
}

/// One mail transaction as the SMTP server saw it.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub ehlo: String,
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent between DATA and the final ".", dot-stuffing undone.
    pub data: String,
    pub quit: bool,
}

/// An SMTP server on `127.0.0.1:0` that serves connections one at a time
/// on a thread of its own. `refuse` is a recipient it answers 550.
pub struct SmtpServer {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub fn start(refuse: Option<&str>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let (record, refuse) = (mails.clone(), refuse.map(str::to_owned));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mail = serve(stream, refuse.as_deref()).unwrap_or_default();
                record.lock().unwrap().push(mail);
            }
        });
        SmtpServer { addr, mails }
    }

    /// The transactions of the connections that have ended, in order.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn serve(stream: std::net::TcpStream, refuse: Option<&str>) -> std::io::Result<Mail> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut mail = Mail::default();
    writer.write_all(b"220 test.invalid ESMTP ready\r\n")?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        let command = line.trim_end().to_owned();
        line.clear();
        let upper = command.to_ascii_uppercase();
        let address = || command.split_once(':').map(|(_, a)| a.trim().trim_matches(['<', '>']).to_owned());
        let reply: &str = if upper.starts_with("EHLO ") {
            mail.ehlo = command[5..].to_owned();
            "250-test.invalid\r\n250 8BITMIME"
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = address().unwrap_or_default();
            "250 sender ok"
        } else if upper.starts_with("RCPT TO:") {
            let to = address().unwrap_or_default();
            if Some(to.as_str()) == refuse {
                "550 no such mailbox here"
            } else {
                mail.to.push(to);
                "250 recipient ok"
            }
        } else if upper == "DATA" {
            writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            loop {
                let mut data = String::new();
                if reader.read_line(&mut data)? == 0 || data == ".\r\n" {
                    break;
                }
                mail.data.push_str(data.strip_prefix('.').unwrap_or(&data));
            }
            "250 queued"
        } else if upper == "QUIT" {
            mail.quit = true;
            writer.write_all(b"221 bye\r\n")?;
            break;
        } else {
            "502 command not implemented"
        };
        writer.write_all(format!("{reply}\r\n").as_bytes())?;
    }
    Ok(mail)
}
