//! A run's way out: its `[network]` grants applied to `wasi:http` requests
//! (see `http`) and `wasi:sockets` TCP (see `sockets`).
//!
//! Every component gets both interfaces linked; what a run may reach is
//! decided per request by its [`NetGuard`], built from the declaration
//! alone. The host resolves names itself and connects only to addresses it
//! checked, so a name that changes its answer between check and connect
//! (DNS rebinding) reaches nothing new. Everything refused is noted in the
//! run's captured stderr as `scheme://host:port` — never a path or query,
//! which can carry secrets — and, if the run fails, in its error.

mod http;
mod sockets;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub(crate) use http::HttpHooks;
pub(crate) use sockets::add_name_lookup_to_linker;

use super::output::CapturedPipe;
use crate::config::{Network, Scheme};

/// The network side of one run: its grants, and what it was refused.
pub(crate) struct NetGuard {
    network: Option<Network>,
    /// Where refusals are noted as they happen: the run's stderr.
    notes: CapturedPipe,
    denied: Mutex<BTreeSet<String>>,
    /// Addresses the host's own lookup gave the guest for a granted name,
    /// with the ports of the `tcp://` grants naming it.
    resolved: Mutex<HashMap<IpAddr, BTreeSet<u16>>>,
    /// Open name lookups: the stream's resource id → the name looked up.
    lookups: Mutex<HashMap<u32, String>>,
}

impl NetGuard {
    pub fn new(network: Option<Network>, notes: CapturedPipe) -> Arc<Self> {
        Arc::new(NetGuard {
            network,
            notes,
            denied: Mutex::default(),
            resolved: Mutex::default(),
            lookups: Mutex::default(),
        })
    }

    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    /// Notes that `destination` (`scheme://host:port`) was refused, and why.
    fn deny(&self, destination: String, reason: &str) {
        let line = format!("[wasmcron] network: denied {destination}: {reason}\n");
        tracing::info!("{}", line.trim_end());
        self.notes.write_line(line.as_bytes());
        self.denied.lock().unwrap().insert(destination);
    }

    /// Every destination refused so far, sorted.
    pub fn denied(&self) -> Vec<String> {
        self.denied.lock().unwrap().iter().cloned().collect()
    }

    /// Why `scheme` may not reach `host:port`, if it may not: no
    /// `[network]`, or no grant for it.
    fn refusal(&self, scheme: Scheme, host: &str, port: u16) -> Option<String> {
        match &self.network {
            None => Some(format!(
                "the job has no [network] table; add [network] allow = [\"{}://{host}:{port}\"]",
                scheme.as_str()
            )),
            Some(network) if network.grant_for(scheme, host, port).is_none() => {
                Some(format!("not granted; add \"{}://{host}:{port}\" to [network] allow", scheme.as_str()))
            }
            Some(_) => None,
        }
    }
}

/// `ip` as it appears in a URL authority.
fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// The reason a resolved address list was refused as a whole.
fn unreachable_reason(host: &str, refused: &[IpAddr]) -> String {
    let list: Vec<String> = refused.iter().map(|ip| ip.to_string()).collect();
    format!(
        "{host} resolves to {}, which is not a public address; if this job should reach it, add its range to [network] private",
        list.join(", ")
    )
}
