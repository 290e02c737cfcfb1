//! Example job: an alert check with a threshold.
//!
//! Reads latency samples in milliseconds, one per line, from the trigger's
//! payload or, when there is none, from `SAMPLES` (default
//! `/metrics/latency.txt`, a preopened file). Computes the 95th percentile
//! and fails — so the host records a failure and retries per `[retry]` —
//! when it is above `THRESHOLD_MS` (default 250).

fn main() {
    wasmcron_sdk::run(|_ctx, payload| {
        let threshold: f64 = match std::env::var("THRESHOLD_MS") {
            Ok(text) => text.parse().map_err(|_| format!("THRESHOLD_MS={text:?} is not a number"))?,
            Err(_) => 250.0,
        };
        let text = if payload.is_empty() {
            let path = std::env::var("SAMPLES").unwrap_or_else(|_| "/metrics/latency.txt".into());
            std::fs::read_to_string(&path).map_err(|e| format!("no payload, and cannot read {path}: {e}"))?
        } else {
            String::from_utf8(payload.to_vec()).map_err(|_| "the payload is not UTF-8 text")?
        };
        let mut samples = Vec::new();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let value: f64 =
                line.trim().parse().map_err(|_| format!("line {}: {line:?} is not a number", number + 1))?;
            samples.push(value);
        }
        if samples.is_empty() {
            return Err("no samples to check".into());
        }
        samples.sort_by(f64::total_cmp);
        let p95 = samples[((samples.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)];
        println!("p95 latency {p95:.1} ms over {} samples (threshold {threshold:.1} ms)", samples.len());
        if p95 > threshold {
            return Err(format!("ALERT: p95 latency {p95:.1} ms is above {threshold:.1} ms").into());
        }
        Ok(())
    })
}
