//! `outbound`: the cost of one HTTP request from a guest (`wasi:http`,
//! through the host's grant check, its own name-free connect to a checked
//! loopback address and hyper), beside the same request made natively by
//! the host process: a fresh TCP connection, an HTTP/1.1 handshake, `GET`,
//! the body read — which is what the host does for each guest request.
//!
//! The guest is the test probe (`tests/guests`, wasm32-wasip2) doing
//! `http-repeat N URL`; a run with N = 0 is taken off, so instantiation
//! is not counted. Rounds alternate native and guest, each keeps its best.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use wasmcron::config::JobSpec;
use wasmcron::runtime::{RunContext, RunControl, Runtime};

use crate::report::Figure;
use crate::suite::Sizes;

const ROUNDS: usize = 3;

pub(crate) fn compare(runtime: &Arc<Runtime>, sizes: &Sizes, probe: &Path) -> anyhow::Result<Vec<Figure>> {
    let bytes = std::fs::read(probe).with_context(|| {
        format!(
            "reading the probe component {}: build it with `cargo build --release --target wasm32-wasip2 \
             --manifest-path tests/guests/Cargo.toml`",
            probe.display()
        )
    })?;
    let requests = sizes.outbound_requests;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let addr = tokio.block_on(serve())?;
    let url = format!("http://{addr}/");
    let compiled = runtime.compile(&bytes, false)?;
    let job = |times: usize| -> anyhow::Result<JobSpec> {
        let text = format!(
            "args = [\"http-repeat\", \"{times}\", \"{url}\"]\n[network]\nallow = [\"http://{addr}\"]\nprivate = [\"127.0.0.0/8\"]\n"
        );
        let raw = wasmcron::config::parse_toml(Path::new("outbound.toml"), &text)?;
        let mut spec = JobSpec::from_raw("outbound".into(), Path::new("outbound.toml"), raw)?;
        spec.limits.timeout = Duration::from_secs(300);
        Ok(spec)
    };
    let (empty, full) = (job(0)?, job(requests)?);
    let in_guest = |spec: &JobSpec| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let context = RunContext::manual(0, Vec::new());
        let report = tokio.block_on(runtime.run(&compiled, spec, &context, &RunControl::new(spec.limits.timeout)));
        let took = started.elapsed();
        ensure!(
            report.outcome.is_success(),
            "the probe failed: {:?}\n{}",
            report.outcome,
            String::from_utf8_lossy(&report.stderr)
        );
        Ok(took)
    };
    let (mut native, mut guest, mut floor) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        tokio.block_on(native_requests(addr, requests))?;
        native = native.min(started.elapsed());
        floor = floor.min(in_guest(&empty)?);
        guest = guest.min(in_guest(&full)?);
    }
    let per_native = native.as_secs_f64() / requests as f64;
    let per_guest = guest.saturating_sub(floor).as_secs_f64() / requests as f64;
    let us = |seconds: f64| seconds * 1e6;
    Ok(vec![
        Figure::new("outbound.native", "one HTTP GET made natively by the host, on loopback", us(per_native), "µs"),
        Figure::new(
            "outbound.guest",
            "the same GET from a guest over wasi:http, grant-checked by the host",
            us(per_guest),
            "µs",
        )
        .detail(format!(
            "{requests} requests a run; a run making none ({:.1} ms) taken off",
            floor.as_secs_f64() * 1e3
        )),
        Figure::new("outbound.ratio", "guest GET ÷ native GET", per_guest / per_native, "×").at_most(3.0),
    ])
}

/// A loopback server answering every request `200 ok`.
async fn serve() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// `times` GETs, each on a new connection, as the host makes them.
async fn native_requests(addr: SocketAddr, times: usize) -> anyhow::Result<()> {
    for _ in 0..times {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/").header("host", addr.to_string()).body(Empty::<Bytes>::new())?;
        let response = send.send_request(request).await?;
        ensure!(response.status() == 200, "the server answered {}", response.status());
        response.into_body().collect().await?;
    }
    Ok(())
}
