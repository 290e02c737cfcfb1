//! The gauges that mirror the jobs view, read at each scrape from the
//! view the scheduler last published (in memory; no store query): the
//! queue of triggered runs, and per loaded job its next fire, its pause
//! and its last success. A job removed from the view leaves these gauges
//! with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Unit;
use tokio::sync::watch;

use super::{FloatGauge, JobLabel, timestamp};
use crate::record::RunStatus;
use crate::scheduler::JobsView;

pub(super) struct FromView {
    view: watch::Receiver<JobsView>,
    /// Successes the observer saw; the view itself knows only each job's
    /// newest outcome (also the one recorded before this host started).
    last_success: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

impl FromView {
    pub fn new(view: watch::Receiver<JobsView>, last_success: Arc<Mutex<HashMap<String, DateTime<Utc>>>>) -> Self {
        FromView { view, last_success }
    }
}

impl std::fmt::Debug for FromView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromView")
    }
}

impl Collector for FromView {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A copy: the scheduler's next publish does not wait for the encoding.
        let view = self.view.borrow().clone();
        if let Some(queue) = view.queue {
            let help = "Triggered runs accepted and waiting to start.";
            gauge(&mut encoder, "queue_depth", help, None, &ConstGauge::new(queue.waiting as i64))?;
            let help = "Triggered runs that may wait at most (--max-queued); beyond it a trigger gets 429.";
            gauge(&mut encoder, "queue_capacity", help, None, &ConstGauge::new(queue.capacity as i64))?;
        }
        let help = "1 while the store does not take writes (the host holds them and retries), else 0.";
        gauge(&mut encoder, "store_failing", help, None, &ConstGauge::new(i64::from(view.store.failing.is_some())))?;
        let help = "Outcomes of ended runs held in memory until the store takes them.";
        gauge(&mut encoder, "store_held_outcomes", help, None, &ConstGauge::new(view.store.held_outcomes as i64))?;
        let (next_fire, last_success) =
            (Family::<JobLabel, FloatGauge>::default(), Family::<JobLabel, FloatGauge>::default());
        let paused = Family::<JobLabel, Gauge>::default();
        let seen = self.last_success.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for job in view.jobs.iter().filter(|job| job.module_sha256.is_some()) {
            let label = JobLabel::of(&job.name);
            if let Some(at) = job.next_fire {
                next_fire.get_or_create(&label).set(timestamp(at));
            }
            let recorded =
                job.last_run.as_ref().filter(|run| run.status == RunStatus::Succeeded).and_then(|run| run.ended_at);
            if let Some(at) = seen.get(&job.name).copied().max(recorded) {
                last_success.get_or_create(&label).set(timestamp(at));
            }
            paused.get_or_create(&label).set(i64::from(job.paused));
        }
        let help = "When each job fires next, in seconds since the Unix epoch (none while it is paused, or for a job \
            that only runs when triggered).";
        gauge(&mut encoder, "job_next_fire_timestamp", help, Some(&Unit::Seconds), &next_fire)?;
        let help = "When each job last succeeded, in seconds since the Unix epoch (as far as this host has seen).";
        gauge(&mut encoder, "job_last_success_timestamp", help, Some(&Unit::Seconds), &last_success)?;
        gauge(&mut encoder, "job_paused", "1 while the job is paused, else 0.", None, &paused)?;
        Ok(())
    }
}

/// Encodes one gauge metric (or family of them), unless it has no values.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &dyn EncodeMetric,
) -> Result<(), std::fmt::Error> {
    if metric.is_empty() {
        return Ok(());
    }
    let metric_encoder = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(metric_encoder)
}
