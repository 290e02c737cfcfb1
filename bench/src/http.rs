//! The `trigger` section's HTTP load, and its floor.
//!
//! The client is hyper's connection-level HTTP/1.1 client, with no pool
//! or retry logic of its own: each connection is one keep-alive TCP
//! stream, opened and served once before any clock starts, then reused
//! for every request, so what a load measures is the server's work per
//! request, not connection set-up or a client library's bookkeeping.
//! Two loads: [`closed_loop`] (each of N connections sends as soon as its
//! last answer came: the most a server accepts) and [`paced`] (open loop:
//! one request per slot at a fixed rate, whether or not earlier ones were
//! answered), and [`burst`] (a closed loop of a fixed number of
//! triggers, spread over several hosts).
//!
//! [`Floor`] is the peer: a bare axum handler answering `202` and doing
//! nothing else, served as `wasmcron run` serves its API (`axum::serve` on
//! a multi-thread runtime of its own): the least an HTTP trigger can cost
//! on this stack and this machine.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The thread name of the floor's runtime (`/proc` shows 15 bytes of it).
pub const FLOOR_THREAD: &str = "bench-floor";

/// Where triggers go: one endpoint, with its credentials.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The request path, such as `/api/v1/jobs/trivial/trigger`.
    pub path: String,
    /// The `Authorization` header's value.
    pub authorization: HeaderValue,
}

impl Target {
    pub fn new(addr: SocketAddr, job: &str, token: &str) -> anyhow::Result<Target> {
        Ok(Target {
            addr,
            path: format!("/api/v1/jobs/{job}/trigger"),
            authorization: HeaderValue::try_from(format!("Bearer {token}"))
                .context("the token is not a header value")?,
        })
    }
}

pub(crate) type Connection = SendRequest<Empty<Bytes>>;

/// Opens a keep-alive connection to `addr`; it closes when dropped.
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Connection> {
    let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(send)
}

/// Sends one trigger (an empty payload) on `connection`: the answer's
/// status and body.
pub(crate) async fn trigger(connection: &mut Connection, target: &Target) -> anyhow::Result<(StatusCode, Bytes)> {
    connection.ready().await.context("the connection closed")?;
    let request = Request::post(target.path.as_str())
        .header(header::HOST, "127.0.0.1")
        .header(header::AUTHORIZATION, target.authorization.clone())
        .header(header::CONTENT_LENGTH, 0)
        .body(Empty::new())?;
    let response = connection.send_request(request).await.context("sending a trigger")?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// `trigger`, which must be answered `202`: its body.
async fn accepted(connection: &mut Connection, target: &Target) -> anyhow::Result<Bytes> {
    let (status, body) = trigger(connection, target).await?;
    ensure!(
        status == StatusCode::ACCEPTED,
        "POST {} was answered {status}, not 202: {}",
        target.path,
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

/// Opens `count` connections and sends one trigger on each (not counted).
async fn warm(target: &Target, count: usize) -> anyhow::Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let mut connection = connect(target.addr).await?;
        accepted(&mut connection, target).await?;
        connections.push(connection);
    }
    Ok(connections)
}

/// Triggers accepted by a closed-loop load, and the time they took.
#[derive(Debug)]
pub struct Closed {
    pub accepted: u64,
    pub took: Duration,
}

/// `connections` keep-alive connections, each sending a trigger as soon as
/// its last one was answered, for `duration`. Every answer must be `202`.
pub async fn closed_loop(target: &Target, connections: usize, duration: Duration) -> anyhow::Result<Closed> {
    let connections = warm(target, connections).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let senders: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    accepted(&mut connection, &target).await?;
                    count += 1;
                }
                anyhow::Ok(count)
            })
        })
        .collect();
    let mut accepted = 0;
    for sender in senders {
        accepted += sender.await.context("a sender panicked")??;
    }
    // The requests in flight at the deadline are counted, and so is the time they took.
    Ok(Closed { accepted, took: started.elapsed() })
}

/// A burst: when its first trigger was sent, and how long until every
/// one was answered.
#[derive(Debug)]
pub struct Burst {
    /// The client's wall clock just before the first request was written.
    pub started: DateTime<Utc>,
    pub answered: Duration,
}

/// Exactly `count` triggers over `connections` keep-alive connections,
/// dealt in turn to `targets` (each its own host, say), each connection
/// sending as soon as its last answer came. Every answer must be `202`.
/// The connections are opened before the clock starts.
pub async fn burst(targets: &[Target], connections: usize, count: usize) -> anyhow::Result<Burst> {
    let mut opened = Vec::with_capacity(connections);
    for target in targets.iter().cycle().take(connections) {
        opened.push((connect(target.addr).await?, target.clone()));
    }
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(count));
    let (started, clock) = (Utc::now(), Instant::now());
    let senders: Vec<_> = opened
        .into_iter()
        .map(|(mut connection, target)| {
            let left = left.clone();
            tokio::spawn(async move {
                // Takes one of the triggers left, if any are.
                let take = || left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
                while take() {
                    accepted(&mut connection, &target).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.await.context("a sender panicked")??;
    }
    Ok(Burst { started, answered: clock.elapsed() })
}

/// One trigger of a paced load.
#[derive(Debug)]
pub struct Sent {
    /// The client's wall clock just before the request was written.
    pub at: DateTime<Utc>,
    /// How long after its slot it was sent.
    pub behind: Duration,
    /// From sending it to its answer, all read.
    pub answered: Duration,
    /// The answer's body.
    pub body: Bytes,
}

/// What a paced load sent, and how many connections it needed.
#[derive(Debug)]
pub struct Paced {
    pub sent: Vec<Sent>,
    pub connections: usize,
}

/// Connections opened in advance for a paced load; it opens more when
/// every one is waiting for an answer.
const PACED_CONNECTIONS: usize = 8;

/// Open loop: `rate` triggers a second for `duration`, each sent at its own
/// slot whether or not earlier ones were answered, on an idle connection
/// (a new one when none is idle). Every answer must be `202`.
pub async fn paced(target: &Target, rate: u32, duration: Duration) -> anyhow::Result<Paced> {
    let idle = Arc::new(Mutex::new(warm(target, PACED_CONNECTIONS).await?));
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(PACED_CONNECTIONS));
    let count = (f64::from(rate) * duration.as_secs_f64()).round() as u32;
    let interval = Duration::from_secs(1) / rate;
    let first = Instant::now() + Duration::from_millis(10);
    let mut senders = Vec::with_capacity(count as usize);
    for slot in (0..count).map(|i| first + interval * i) {
        tokio::time::sleep_until(slot.into()).await;
        let (idle, opened, target) = (idle.clone(), opened.clone(), target.clone());
        senders.push(tokio::spawn(async move {
            let taken = idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
            let mut connection = match taken {
                Some(connection) => connection,
                None => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    connect(target.addr).await?
                }
            };
            let (at, sent) = (Utc::now(), Instant::now());
            let body = accepted(&mut connection, &target).await?;
            let answered = sent.elapsed();
            idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(connection);
            anyhow::Ok(Sent { at, behind: sent.saturating_duration_since(slot), answered, body })
        }));
    }
    let mut sent = Vec::with_capacity(senders.len());
    for sender in senders {
        sent.push(sender.await.context("a sender panicked")??);
    }
    Ok(Paced { sent, connections: opened.load(Ordering::Relaxed) })
}

/// The HTTP floor: a bare axum handler answering `202` to any trigger, on
/// a runtime of its own. Dropping it stops the server.
pub struct Floor {
    pub addr: SocketAddr,
    // Dropped last: its threads serve `addr`.
    _runtime: tokio::runtime::Runtime,
}

impl Floor {
    pub fn start() -> anyhow::Result<Floor> {
        // As `wasmcron run` builds its runtime: a worker per core.
        let runtime = tokio::runtime::Builder::new_multi_thread().thread_name(FLOOR_THREAD).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/api/v1/jobs/{job}/trigger", axum::routing::post(|| async { StatusCode::ACCEPTED }));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Ok(Floor { addr, _runtime: runtime })
    }

    pub fn target(&self) -> anyhow::Result<Target> {
        Target::new(self.addr, "floor", "no-token-is-checked")
    }
}

/// Whether the server at `addr` answers `GET /readyz` with `200` (false
/// while nothing listens there yet).
pub async fn ready(addr: SocketAddr) -> anyhow::Result<bool> {
    let Ok(mut connection) = connect(addr).await else { return Ok(false) };
    connection.ready().await?;
    let request = Request::get("/readyz").header(header::HOST, "127.0.0.1").body(Empty::new())?;
    let response = connection.send_request(request).await?;
    Ok(response.status() == StatusCode::OK)
}

/// One keep-alive connection sending `GET`s with a bearer token.
pub struct Getter {
    connection: Connection,
    authorization: HeaderValue,
}

impl Getter {
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Getter> {
        let authorization =
            HeaderValue::try_from(format!("Bearer {token}")).context("the token is not a header value")?;
        Ok(Getter { connection: connect(addr).await?, authorization })
    }

    /// `GET path`, which must be answered 200: the body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Bytes> {
        self.connection.ready().await.context("the connection closed")?;
        let request = Request::get(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::AUTHORIZATION, self.authorization.clone())
            .body(Empty::new())?;
        let response = self.connection.send_request(request).await.with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        ensure!(status == StatusCode::OK, "GET {path} was answered {status}: {}", String::from_utf8_lossy(&body));
        Ok(body)
    }
}
