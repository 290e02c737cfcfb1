//! `GET /api/v1/events`: run lifecycle events as Server-Sent Events.
//!
//! [`EventFeed`] is an observer on the scheduler: it hands each event to a
//! broadcast channel, or does nothing while nobody listens. Each stream
//! subscribes to it; one that falls too far behind is told how many events
//! it missed (event `lagged`, data `{"missed": N}`, of any job) and goes on
//! from the newest.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::error::QueryArgs;
use super::{ApiError, ApiState};
use crate::events::{Observer, RunEvent, Stage};
use crate::record::format_time;

/// Events held for a slow stream before it lags.
const BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct EventFeed(broadcast::Sender<RunEvent>);

impl Default for EventFeed {
    fn default() -> Self {
        EventFeed(broadcast::channel(BACKLOG).0)
    }
}

impl EventFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.0.subscribe()
    }
}

impl Observer for EventFeed {
    fn observe(&self, event: &RunEvent) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(event.clone());
        }
    }
}

/// One event as sent: the SSE event type is the stage.
#[derive(Debug, Serialize)]
struct Body<'a> {
    stage: &'static str,
    job: &'a str,
    run_id: Option<i64>,
    trigger: &'static str,
    attempt: u32,
    scheduled_for: String,
    at: String,
    status: Option<&'static str>,
}

pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Fired => "fired",
        Stage::Recorded => "recorded",
        Stage::Started => "started",
        Stage::Ended => "ended",
    }
}

fn to_sse(event: &RunEvent) -> Event {
    let body = Body {
        stage: stage_name(event.stage),
        job: &event.job,
        run_id: event.run_id,
        trigger: event.trigger.as_str(),
        attempt: event.attempt,
        scheduled_for: format_time(event.scheduled_for),
        at: format_time(event.at),
        status: event.status.map(|s| s.as_str()),
    };
    Event::default().event(body.stage).json_data(&body).expect("plain data serializes")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only events of this job.
    job: Option<String>,
}

pub async fn stream(
    State(state): State<ApiState>,
    QueryArgs(filter): QueryArgs<Filter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut closing = state.closing.clone();
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let events = BroadcastStream::new(state.events.subscribe())
        .filter_map(move |item| {
            let event = match item {
                Ok(event) if filter.job.as_ref().is_none_or(|job| *job == event.job) => Some(to_sse(&event)),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    Some(Event::default().event("lagged").data(missed.to_string()))
                }
            };
            std::future::ready(event.map(Ok))
        })
        .take_until(closed);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
