//! The scheduler as one of several hosts on a shared store (PostgreSQL).
//!
//! Fires are decided and recorded exactly as on one host, except that the
//! store, not this host's memory, says whether another run is going
//! (`SharedOverlap`), and a fire another host recorded first is simply
//! theirs. Runs are never started from memory: every pending run lives
//! in the store, and each host claims due ones (`Cluster::claim`) when a
//! fire, a trigger, a timer or a notification says there may be some, and
//! at least once a second (`POLL`), which stays the source of truth.
//! Each tick also renews this host's heartbeat and rescues runs whose
//! lease lapsed on a host that went quiet. A claimed run keeps its lease
//! alive from its own task (see `task`); once it cannot, its guest stops.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::timer::TimerKind;
use super::{JobSlot, Scheduler};
use crate::clock::Clock;
use crate::config::{JobSpec, Overlap};
use crate::store::{Claimable, Cluster, HostInfo, SharedOverlap};

/// How often each host claims, rescues and beats without being woken.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// The least time between two claims of one host. An idle host claims at
/// once when woken; under a burst of triggers (each one notifies every
/// host) claims are spaced by this, so that each takes many runs rather
/// than every host paying a claim for each run.
const CLAIM_GAP: Duration = Duration::from_millis(10);

/// How long after start-up fires are left to the timer rather than the
/// catch-up: a host joining a live cluster would otherwise record as
/// missed a fire the others are about to record on time.
pub(super) const SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// This host's membership of a cluster.
pub(super) struct Member {
    pub cluster: Arc<dyn Cluster>,
    /// How long a claim holds without renewal (`--lease`).
    pub lease: Duration,
    name: String,
    wakeups: watch::Receiver<u64>,
    /// Claim at the loop's next turn: something may be due.
    pub wanted: bool,
    /// A heartbeat is being written (one at a time).
    beating: Option<tokio::task::JoinHandle<()>>,
    /// Ticks so far (see `SYNC_EVERY`).
    ticks: u32,
    /// When this host last claimed (see `CLAIM_GAP`).
    claimed_at: Option<tokio::time::Instant>,
    /// A `TimerKind::Claim` is in the heap.
    claim_timer: bool,
    /// The last claim filled the room there was: more runs may be due.
    full: bool,
}

impl Member {
    pub fn new(cluster: Arc<dyn Cluster>, lease: Duration, name: String) -> Self {
        let wakeups = cluster.wakeups();
        Member {
            cluster,
            lease,
            name,
            wakeups,
            wanted: true,
            beating: None,
            ticks: 0,
            claimed_at: None,
            claim_timer: false,
            full: false,
        }
    }
}

/// Resolves when another host says runs may be waiting; never without a cluster.
pub(super) async fn woken(member: &mut Option<Member>) {
    match member {
        Some(member) => {
            if member.wakeups.changed().await.is_err() {
                std::future::pending::<()>().await; // the listener is gone: polling remains
            }
        }
        None => std::future::pending().await,
    }
}

/// How a fire of a job with this overlap policy meets runs on other hosts.
pub(super) fn shared_overlap(overlap: Overlap) -> SharedOverlap {
    match overlap {
        Overlap::Allow => SharedOverlap::Allow,
        Overlap::Skip => SharedOverlap::Skip,
        // A host cannot cancel another's guest: `replace` waits its turn.
        Overlap::Queue | Overlap::Replace => SharedOverlap::Queue,
    }
}

/// The sha256 of a job's declaration file (of nothing for a bare module),
/// so hosts that disagree on a declaration can be told apart.
pub(super) fn declaration_digest(spec: &JobSpec) -> String {
    let text = match spec.source.extension().is_some_and(|ext| ext == "toml") {
        true => std::fs::read(&spec.source).unwrap_or_default(),
        false => Vec::new(),
    };
    let digest = Sha256::digest(&text);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every how many ticks the clock is set by the database's again.
const SYNC_EVERY: u32 = 30;

/// How far this host's clock may be from the database's before the
/// scheduler follows the database's.
const CLOCK_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::milliseconds(250);

impl Scheduler {
    /// Sets the scheduler's clock by the database's, which every host
    /// shares: a host whose own clock is wrong by minutes still fires each
    /// fire when the others do, and does not take fires still to come for
    /// ones it missed. A no-op on one host, or on a virtual clock.
    pub(super) async fn sync_clock(&mut self) -> Result<(), crate::store::StoreError> {
        let Some(member) = &self.member else { return Ok(()) };
        let current = match self.clock {
            Clock::System => chrono::TimeDelta::zero(),
            Clock::Skewed(by) => by,
            Clock::Virtual { .. } => return Ok(()),
        };
        let before = chrono::Utc::now();
        let database = member.cluster.now().await?;
        let after = chrono::Utc::now();
        let offset = database - (before + (after - before) / 2);
        if (offset - current).abs() > CLOCK_TOLERANCE {
            let offset_ms = offset.num_milliseconds();
            if offset.abs() > chrono::TimeDelta::seconds(1) {
                tracing::warn!(offset_ms, "this host's clock is off the database's; firing by the database's clock");
            } else {
                tracing::info!(offset_ms, "following the database's clock");
            }
            self.clock = Clock::Skewed(offset);
            self.view_changed = true;
        }
        Ok(())
    }

    /// One tick of cluster work: beat, rescue lapsed leases, claim.
    pub(super) async fn on_poll(&mut self) {
        self.add_timer(self.clock.now() + chrono::Duration::from_std(POLL).expect("a second"), TimerKind::Poll);
        let Some(member) = &mut self.member else { return };
        member.ticks += 1;
        if member.ticks % SYNC_EVERY == 0
            && let Err(error) = self.sync_clock().await
        {
            tracing::debug!(%error, "could not read the database's clock");
        }
        let Some(member) = &mut self.member else { return };
        if member.beating.as_ref().is_none_or(|beat| beat.is_finished()) {
            let info = HostInfo {
                name: member.name.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                modules: self.jobs.iter().map(|(name, slot)| (name.clone(), slot.compiled.sha256.clone())).collect(),
                declarations: self.jobs.iter().map(|(name, slot)| (name.clone(), slot.declaration.clone())).collect(),
            };
            let cluster = member.cluster.clone();
            member.beating = Some(tokio::spawn(async move {
                if let Err(error) = cluster.heartbeat(info).await {
                    tracing::warn!(%error, "could not renew this host's heartbeat");
                }
            }));
        }
        member.wanted = true;
        self.rescue().await;
    }

    /// Ends runs whose lease lapsed (their host went quiet) as abandoned,
    /// with retries per their jobs' `[retry]`, and reads how full the
    /// cluster's queue of triggered runs is.
    pub(super) async fn rescue(&mut self) {
        let Some(member) = &self.member else { return };
        match member.cluster.rescue(self.attempts()).await {
            Ok(rescued) => {
                let why = "run abandoned: its host's lease lapsed; retried if attempts remain";
                self.report_abandoned(&rescued.abandoned, why, self.clock.now());
                if self.triggered_waiting != rescued.triggered_waiting {
                    self.triggered_waiting = rescued.triggered_waiting;
                    self.view_changed = true;
                }
            }
            Err(error) => self.store_failed(&error, self.clock.now()),
        }
    }

    /// Claims as many due runs as there is room for, if any may be due.
    pub(super) async fn claim(&mut self) {
        let Some(member) = &mut self.member else { return };
        let room = self.config.max_running.saturating_sub(self.in_flight.len() + self.ready.len());
        if !member.wanted || room == 0 || self.draining || !self.backlog.may_start_runs() {
            return;
        }
        if let Some(wait) = member.claimed_at.and_then(|at| CLAIM_GAP.checked_sub(at.elapsed())) {
            if !member.claim_timer {
                member.claim_timer = true;
                let at = self.clock.now() + chrono::Duration::from_std(wait).expect("milliseconds");
                self.add_timer(at, TimerKind::Claim);
            }
            return;
        }
        member.wanted = false;
        member.claimed_at = Some(tokio::time::Instant::now());
        let jobs: Vec<Claimable> = self.jobs.iter().map(|(name, slot)| claimable(name, slot)).collect();
        let (cluster, lease) = (member.cluster.clone(), member.lease);
        match cluster.claim(jobs, room as u32, lease).await {
            Ok(claimed) => {
                if let Some(member) = &mut self.member {
                    member.full = claimed.len() == room;
                }
                for claim in claimed {
                    tracing::debug!(job = %claim.run.job, run_id = claim.run.id, fence = claim.fence, "run claimed");
                    match self.jobs.get_mut(&claim.run.job) {
                        Some(slot) => {
                            slot.waiting += 1;
                            self.view_changed = true;
                            self.ready.push_back(claim.run);
                        }
                        None => {
                            tracing::warn!(job = %claim.run.job, run_id = claim.run.id, "claimed a run of a job just unloaded; its lease will lapse and another host rescue it")
                        }
                    }
                }
            }
            Err(error) => self.store_failed(&error, self.clock.now()),
        }
    }

    /// A claim's spacing is over (see `CLAIM_GAP`).
    pub(super) fn on_claim_timer(&mut self) {
        if let Some(member) = &mut self.member {
            member.claim_timer = false;
        }
    }

    /// A run of this host ended: if the last claim took all the room there
    /// was, more runs may be waiting for the slot it frees.
    pub(super) fn after_run(&mut self) {
        if let Some(member) = &mut self.member
            && member.full
        {
            member.wanted = true;
        }
    }

    /// Leaves the hosts table at shutdown, so the others stop showing us.
    pub(super) async fn leave(&mut self) {
        let Some(member) = &mut self.member else { return };
        if let Some(beat) = member.beating.take() {
            let _ = beat.await;
        }
        if let Err(error) = member.cluster.leave().await {
            tracing::warn!(%error, "could not remove this host from the hosts table");
        }
    }
}

fn claimable(name: &str, slot: &JobSlot) -> Claimable {
    Claimable {
        job: name.to_owned(),
        module_sha256: slot.compiled.sha256.clone(),
        serial: slot.spec.overlap != Overlap::Allow,
    }
}
