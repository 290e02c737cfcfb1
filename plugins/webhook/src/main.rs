//! Example job: the alert check, grown up. Instead of failing the run when
//! latency is high, it tells someone: a JSON alert POSTed to a webhook.
//!
//! Reads latency samples in milliseconds, one per line, from the trigger's
//! payload or, when there is none, from `SAMPLES` (default
//! `/metrics/latency.txt`, a preopened file). When their 95th percentile is
//! above `THRESHOLD_MS` (default 250) it POSTs
//! `{"text", "job", "run_id", "p95_ms", "threshold_ms", "samples"}` to the
//! URL in `ALERT_WEBHOOK` (Slack-style webhooks show `text`).
//!
//! The run succeeds when there was nothing to report or the webhook took
//! the alert (2xx); it fails — so the host retries per `[retry]` — when the
//! webhook could not be reached or refused it. The URL is never printed: a
//! webhook URL is a credential.
//!
//! HTTP goes through `wasi:http` with `wstd`, so this is a wasm32-wasip2
//! component, and the declaration must grant the webhook's origin in
//! `[network] allow`.

use wasmcron_sdk::{Context, Error};
use wstd::http::{Body, Client, ErrorCode, Method, Request};

fn main() {
    wasmcron_sdk::run(|context, payload| {
        let threshold: f64 = match std::env::var("THRESHOLD_MS") {
            Ok(text) => text.parse().map_err(|_| format!("THRESHOLD_MS={text:?} is not a number"))?,
            Err(_) => 250.0,
        };
        let samples = samples(payload)?;
        let p95 = samples[((samples.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)];
        println!("p95 latency {p95:.1} ms over {} samples (threshold {threshold:.1} ms)", samples.len());
        if p95 <= threshold {
            return Ok(());
        }
        let webhook = std::env::var("ALERT_WEBHOOK")
            .map_err(|_| "ALERT_WEBHOOK is not set: declare the webhook's URL in the job's [secrets]")?;
        let alert = serde_json::json!({
            "text": format!("{}: p95 latency {p95:.1} ms is above {threshold:.1} ms", context.job),
            "job": context.job,
            "run_id": context.run_id,
            "p95_ms": p95,
            "threshold_ms": threshold,
            "samples": samples.len(),
        });
        let status = wstd::runtime::block_on(post(&webhook, &alert, context))?;
        println!("alert posted to the webhook (HTTP {status})");
        Ok(())
    })
}

/// The samples, sorted, from the payload or the `SAMPLES` file.
fn samples(payload: &[u8]) -> Result<Vec<f64>, Error> {
    let text = if payload.is_empty() {
        let path = std::env::var("SAMPLES").unwrap_or_else(|_| "/metrics/latency.txt".into());
        std::fs::read_to_string(&path).map_err(|e| format!("no payload, and cannot read {path}: {e}"))?
    } else {
        String::from_utf8(payload.to_vec()).map_err(|_| "the payload is not UTF-8 text")?
    };
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: f64 = line.trim().parse().map_err(|_| format!("line {}: {line:?} is not a number", number + 1))?;
        samples.push(value);
    }
    if samples.is_empty() {
        return Err("no samples to check".into());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// POSTs `alert` to `webhook`; the response's status when it is a success.
async fn post(webhook: &str, alert: &serde_json::Value, context: &Context) -> Result<u16, Error> {
    // With its length declared, the body is not sent chunked: some webhook endpoints refuse that.
    let body = serde_json::to_vec(alert)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(webhook)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("user-agent", format!("wasmcron-webhook ({} run {})", context.job, context.run_id))
        .body(Body::from(body))
        .map_err(|e| format!("ALERT_WEBHOOK is not a usable URL: {e}"))?;
    let mut response = Client::new().send(request).await.map_err(|error| {
        if let Some(ErrorCode::HttpRequestDenied) = error.downcast_ref() {
            return "the host denied the request to ALERT_WEBHOOK: grant its scheme://host:port in [network] allow"
                .to_owned();
        }
        // wstd writes the body before it awaits the answer: when the host refuses the request,
        // the write may fail first, as a closed stream, and the refusal's code is not seen.
        let reset = error.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        if reset == Some(std::io::ErrorKind::ConnectionReset) {
            return "the request to ALERT_WEBHOOK was closed while the alert was sent \
                    (if the host refused it, its note above names the grant to add)"
                .to_owned();
        }
        format!("posting the alert to ALERT_WEBHOOK failed: {error:#}")
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.body_mut().str_contents().await.unwrap_or("").trim().to_owned();
        return Err(format!("the webhook refused the alert: HTTP {status}: {body:.200}").into());
    }
    Ok(status.as_u16())
}
