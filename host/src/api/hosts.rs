//! `/api/v1/hosts`: the hosts sharing this host's store, what each serves,
//! and where they disagree. On a store one host owns (SQLite) the list is
//! empty and `shared` false.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{NoParams, QueryArgs};
use super::{ApiError, ApiState};
use crate::record::format_time;
use crate::store::HostRecord;

#[derive(Serialize)]
struct Hosts {
    /// Several hosts may share this store (PostgreSQL).
    shared: bool,
    /// This host's id among them (null when not shared).
    this_host: Option<String>,
    hosts: Vec<HostView>,
    /// Jobs that the live hosts serve at different module versions or
    /// with different declarations.
    disagreements: Vec<Disagreement>,
}

#[derive(Serialize)]
struct HostView {
    id: String,
    name: String,
    version: String,
    started_at: String,
    heartbeat_at: String,
    alive: bool,
    /// Job name → the module version (sha256) the host serves.
    modules: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Disagreement {
    job: String,
    /// `module` or `declaration`.
    what: &'static str,
    /// Host name → the sha256 it has.
    hosts: BTreeMap<String, String>,
}

pub async fn list(State(state): State<ApiState>, _: QueryArgs<NoParams>) -> Result<Response, ApiError> {
    let Some(cluster) = state.store.cluster() else {
        let alone = Hosts { shared: false, this_host: None, hosts: Vec::new(), disagreements: Vec::new() };
        return Ok(Json(alone).into_response());
    };
    let hosts = cluster.hosts().await.map_err(|error| ApiError::store(&error))?;
    let disagreements = disagreements(&hosts);
    let hosts = hosts
        .into_iter()
        .map(|host| HostView {
            id: host.id,
            name: host.info.name,
            version: host.info.version,
            started_at: format_time(host.started_at),
            heartbeat_at: format_time(host.heartbeat_at),
            alive: host.alive,
            modules: host.info.modules,
        })
        .collect();
    let this_host = Some(cluster.host_id().to_owned());
    Ok(Json(Hosts { shared: true, this_host, hosts, disagreements }).into_response())
}

/// Where the live hosts differ on a job they both serve.
fn disagreements(hosts: &[HostRecord]) -> Vec<Disagreement> {
    let alive: Vec<&HostRecord> = hosts.iter().filter(|host| host.alive).collect();
    let jobs: BTreeSet<&String> = alive.iter().flat_map(|host| host.info.modules.keys()).collect();
    let mut found = Vec::new();
    for job in jobs {
        for what in ["module", "declaration"] {
            let held: BTreeMap<String, String> = alive
                .iter()
                .filter_map(|host| {
                    let map = if what == "module" { &host.info.modules } else { &host.info.declarations };
                    map.get(job).map(|sha| (format!("{} ({})", host.info.name, host.id), sha.clone()))
                })
                .collect();
            if held.values().collect::<BTreeSet<_>>().len() > 1 {
                found.push(Disagreement { job: job.clone(), what, hosts: held });
            }
        }
    }
    found
}
