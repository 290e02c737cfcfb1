//! The scheduler's handle in virtual time: triggers now and later,
//! cancels, retries, pauses, idempotency keys and the bounded queue, the
//! jobs view it publishes, and the lifecycle events it emits — each
//! checked against the records the real store keeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmcron::events::{Observer, RunEvent, Stage};
use wasmcron::record::{RunStatus::*, Trigger};
use wasmcron::scheduler::{CommandError, TriggerRequest};

use crate::scheduler::{FAIL, ORIGIN, World, at};
use crate::support::{ECHO, sleeper};

fn request(job: &str, payload: &[u8]) -> TriggerRequest {
    TriggerRequest { job: job.into(), payload: payload.to_vec(), ..TriggerRequest::default() }
}

#[tokio::test(start_paused = true)]
async fn a_trigger_runs_now_or_at_its_time_with_its_payload() {
    let world = World::new();
    world.job("echo", ECHO, "");
    let store = world.store().await;
    let (now, later) = world
        .drive(ORIGIN, Duration::from_secs(120), store, Vec::new(), async |handle| {
            let now = handle.trigger(request("echo", b"hello")).await.unwrap();
            let at = Some(at("2026-11-24T00:01:00Z"));
            let later = handle.trigger(TriggerRequest { at, ..request("echo", b"later") }).await.unwrap();
            assert!(now.created && later.created);
            (now.run_id, later.run_id)
        })
        .await;
    let runs = world.runs("echo").await;
    let run = |id| runs.iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        (run(now).status, run(now).trigger, run(now).stdout.as_slice()),
        (Succeeded, Trigger::Manual, &b"hello"[..])
    );
    assert_eq!(run(later).stdout, b"later");
    assert_eq!(run(later).started_at, Some(at("2026-11-24T00:01:00Z")), "started on time, from the timer heap");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_running_run_and_a_delayed_one_never_starts() {
    let world = World::new();
    world.job("long", &sleeper(3600), "");
    let store = world.store().await;
    let (running, delayed) = world
        .drive(ORIGIN, Duration::from_secs(60), store, Vec::new(), async |handle| {
            let running = handle.trigger(request("long", b"")).await.unwrap().run_id;
            let at = Some(at("2026-11-24T00:10:00Z"));
            let delayed = handle.trigger(TriggerRequest { at, ..request("long", b"") }).await.unwrap().run_id;
            tokio::time::sleep(Duration::from_secs(30)).await;
            handle.cancel(running).await.unwrap();
            handle.cancel(delayed).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ended = handle.cancel(running).await.unwrap_err();
            assert_eq!(ended, CommandError::RunEnded { id: running, status: Cancelled });
            assert_eq!(handle.cancel(999_999).await.unwrap_err(), CommandError::NoSuchRun(999_999));
            let unknown = handle.trigger(request("nope", b"")).await.unwrap_err();
            assert_eq!(unknown, CommandError::UnknownJob("nope".into()));
            (running, delayed)
        })
        .await;
    let runs = world.runs("long").await;
    let run = |id| runs.iter().find(|r| r.id == id).unwrap();
    assert_eq!((run(running).status, run(running).ended_at), (Cancelled, Some(at("2026-11-24T00:00:30Z"))));
    assert_eq!((run(delayed).status, run(delayed).started_at), (Cancelled, None), "never started");
    assert_eq!(runs.len(), 2, "the delayed run did not start at 00:10 either: {runs:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_starts_a_new_run_of_an_ended_one_with_its_payload() {
    let world = World::new();
    world.job("fails", FAIL, "");
    world.job("echo", ECHO, "");
    let store = world.store().await;
    let (first, retry, echo, echo_retry) = world
        .drive(ORIGIN, Duration::from_secs(30), store, Vec::new(), async |handle| {
            let first = handle.trigger(request("fails", b"")).await.unwrap().run_id;
            let echo = handle.trigger(request("echo", b"again")).await.unwrap().run_id;
            let at = Some(at("2026-11-24T01:00:00Z"));
            let pending = handle.trigger(TriggerRequest { at, ..request("echo", b"") }).await.unwrap().run_id;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let retry = handle.retry(first).await.unwrap();
            let echo_retry = handle.retry(echo).await.unwrap();
            let not_ended = handle.retry(pending).await.unwrap_err();
            assert_eq!(not_ended, CommandError::RunNotEnded { id: pending, status: Pending });
            (first, retry, echo, echo_retry)
        })
        .await;
    let runs = world.runs("fails").await;
    let retried = runs.iter().find(|r| r.id == retry).unwrap();
    assert_eq!(
        (retried.status, retried.attempt, retried.trigger, retried.parent_run),
        (Failed, 1, Trigger::Manual, Some(first))
    );
    let echoes = world.runs("echo").await;
    let again = echoes.iter().find(|r| r.id == echo_retry).unwrap();
    assert_eq!((again.stdout.as_slice(), again.parent_run), (&b"again"[..], Some(echo)), "the same payload");
}

#[tokio::test(start_paused = true)]
async fn keys_make_triggers_idempotent_and_a_full_queue_refuses_without_losing_any() {
    let mut world = World::new();
    world.config.max_queued = 2;
    world.job("echo", ECHO, "");
    let store = world.store().await;
    let later = Some(at("2026-11-24T01:00:00Z"));
    let accepted = world
        .drive(ORIGIN, Duration::from_secs(10), store, Vec::new(), async |handle| {
            let keyed = TriggerRequest { key: Some("order-17".into()), at: later, ..request("echo", b"a") };
            let first = handle.trigger(keyed.clone()).await.unwrap();
            let again = handle.trigger(keyed).await.unwrap();
            assert_eq!((again.run_id, again.created), (first.run_id, false), "the same key, the same run");
            let second = handle.trigger(TriggerRequest { at: later, ..request("echo", b"b") }).await.unwrap();
            let full = handle.trigger(TriggerRequest { at: later, ..request("echo", b"c") }).await.unwrap_err();
            assert_eq!(full, CommandError::QueueFull { queued: 2 });
            handle.cancel(second.run_id).await.unwrap();
            let third = handle.trigger(TriggerRequest { at: later, ..request("echo", b"d") }).await.unwrap();
            vec![first.run_id, second.run_id, third.run_id]
        })
        .await;
    let runs = world.runs("echo").await;
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        accepted,
        "one row per accepted trigger, none for the refused"
    );
    assert_eq!(runs.iter().map(|r| r.status).collect::<Vec<_>>(), [Pending, Cancelled, Pending]);
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_through_the_handle_show_in_the_view() {
    let world = World::new();
    world.job("tick", &sleeper(1), "schedule = \"@every 60s\"");
    let store = world.store().await;
    world
        .drive(ORIGIN, Duration::from_secs(250), store, Vec::new(), async |handle| {
            handle.pause("tick", true, None).await.unwrap();
            tokio::time::sleep(Duration::from_secs(130)).await;
            let view = handle.jobs().borrow().clone();
            let tick = &view.jobs[0];
            assert!(tick.paused && tick.next_fire.is_none(), "{tick:?}");
            assert!(view.store.failing.is_none() && view.store.starting_runs);
            handle.pause("tick", false, None).await.unwrap();
        })
        .await;
    let times: Vec<String> =
        world.runs("tick").await.iter().map(|r| r.scheduled_for.format("%H:%M").to_string()).collect();
    assert_eq!(times, ["00:03", "00:04"], "no fires while paused (00:01, 00:02), fires again once resumed");
}

#[tokio::test(start_paused = true)]
async fn the_view_shows_runs_in_flight_what_waits_and_the_last_outcome() {
    let mut world = World::new();
    world.config.max_running = 1;
    world.job("long", &sleeper(20), "schedule = \"0 0 * * *\"\ntimezone = \"Europe/London\"");
    let store = world.store().await;
    world
        .drive(ORIGIN, Duration::from_secs(60), store, Vec::new(), async |handle| {
            let id = handle.trigger(request("long", b"")).await.unwrap().run_id;
            let waiting = handle.trigger(request("long", b"")).await.unwrap().run_id;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let view = handle.jobs().borrow().clone();
            let long = &view.jobs[0];
            assert_eq!((long.name.as_str(), long.in_flight.as_slice()), ("long", &[id][..]));
            assert_eq!(long.queued, 1, "the second run waits for the one slot");
            handle.cancel(waiting).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(handle.jobs().borrow().jobs[0].queued, 0, "a cancelled run no longer waits");
            assert_eq!((long.schedule.as_deref(), long.timezone.as_str()), (Some("0 0 * * *"), "Europe/London"));
            assert_eq!(long.next_fire, Some(at("2026-11-25T00:00:00Z")));
            tokio::time::sleep(Duration::from_secs(25)).await;
            let view = handle.jobs().borrow().clone();
            let last = view.jobs[0].last_run.clone().unwrap();
            assert_eq!((last.id, last.status, view.jobs[0].in_flight.len()), (id, Succeeded, 0));
        })
        .await;
}

/// While the host drains, the view says not ready and shows each run as
/// it ends (a dashboard watches shutdown too).
#[tokio::test(start_paused = true)]
async fn the_view_follows_runs_ending_while_the_host_drains() {
    let world = World::new();
    world.job("short", &sleeper(3), "");
    world.job("long", &sleeper(30), "");
    let store = world.store().await;
    world
        .drive(ORIGIN, Duration::from_secs(2), store, Vec::new(), async |handle| {
            let short = handle.trigger(request("short", b"")).await.unwrap().run_id;
            let long = handle.trigger(request("long", b"")).await.unwrap().run_id;
            let in_flight = |view: &wasmcron::scheduler::JobsView| -> Vec<i64> {
                view.jobs.iter().flat_map(|job| job.in_flight.clone()).collect()
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
            let view = handle.jobs().borrow().clone();
            assert!(view.ready);
            assert_eq!(in_flight(&view), [long, short]);
            // Shut down at 2 s; the short run ends at 3 s, inside the grace period.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let view = handle.jobs().borrow().clone();
            assert!(!view.ready, "a draining host is not ready");
            assert_eq!(in_flight(&view), [long], "the short run has ended");
            assert_eq!(view.jobs.iter().find(|j| j.name == "short").unwrap().last_run.as_ref().unwrap().id, short);
        })
        .await;
}

/// Collects every event, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<RunEvent>>);

impl Observer for Recorder {
    fn observe(&self, event: &RunEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test(start_paused = true)]
async fn observers_see_each_stage_of_a_fire_in_order() {
    let world = World::new();
    world.job("tick", &sleeper(1), "schedule = \"@every 60s\"");
    let recorder = Arc::new(Recorder::default());
    let store = world.store().await;
    world.drive(ORIGIN, Duration::from_secs(70), store, vec![recorder.clone()], async |_| {}).await;
    let events = recorder.0.lock().unwrap().clone();
    let stages: Vec<(Stage, Option<wasmcron::record::RunStatus>)> =
        events.iter().map(|e| (e.stage, e.status)).collect();
    assert_eq!(
        stages,
        [
            (Stage::Fired, None),
            (Stage::Recorded, Some(Pending)),
            (Stage::Started, Some(Running)),
            (Stage::Ended, Some(Succeeded))
        ]
    );
    let run_id = events[1].run_id;
    assert!(run_id.is_some() && events[1..].iter().all(|e| e.run_id == run_id && e.job == "tick"));
    assert!(events.iter().all(|e| e.scheduled_for == at("2026-11-24T00:01:00Z") && e.trigger == Trigger::Schedule));
    assert_eq!(events[3].at, at("2026-11-24T00:01:01Z"), "ended after its one-second sleep");
}

#[tokio::test(start_paused = true)]
async fn a_draining_host_refuses_commands_at_once() {
    let world = World::new();
    world.job("long", &sleeper(3600), "");
    let store = world.store().await;
    world
        .drive(ORIGIN, Duration::from_secs(10), store, Vec::new(), async |handle| {
            handle.trigger(request("long", b"")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(12)).await; // shut down at 10 s; 15 s of grace
            let refused = handle.trigger(request("long", b"")).await.unwrap_err();
            assert_eq!(refused, CommandError::ShuttingDown);
            let asked = tokio::time::Instant::now();
            assert_eq!(handle.cancel(1).await.unwrap_err(), CommandError::ShuttingDown);
            assert_eq!(asked.elapsed(), Duration::ZERO, "answered without waiting out the grace");
        })
        .await;
    assert_eq!(world.runs("long").await.len(), 1, "nothing accepted while draining");
}
