//! Outbound TCP through `wasi:sockets`: connections only to the `tcp://`
//! grants' host:port pairs, at addresses that are public or in `private`;
//! name lookup only for names a grant names; no listening, no UDP.
//!
//! A name grant (`tcp://smtp.example.com:587`) is enforced in two steps:
//! the lookup answers only for granted names, and remembers what it
//! answered; a connect is let through only to an address a granted lookup
//! gave (or one an address grant covers), on that grant's port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, HostResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView, WasiSocketsView};

use super::{NetGuard, host_of, unreachable_reason};
use crate::config::Scheme;
use crate::runtime::state::{GuestState, WasiP2};

impl NetGuard {
    /// The `socket_addr_check` of a run: whether `address` may be used so.
    pub fn check_socket(&self, address: SocketAddr, use_: SocketAddrUse) -> bool {
        let ip = address.ip().to_canonical();
        let destination = format!("tcp://{}:{}", host_of(ip), address.port());
        match use_ {
            // Connecting binds implicitly to the wildcard address first.
            SocketAddrUse::TcpBind if ip.is_unspecified() && address.port() == 0 => true,
            SocketAddrUse::TcpConnect => match self.tcp_refusal(ip, address.port()) {
                None => true,
                Some(reason) => {
                    self.deny(destination, &reason);
                    false
                }
            },
            SocketAddrUse::TcpBind | SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => {
                self.deny(destination, "jobs may connect out but not listen");
                false
            }
            SocketAddrUse::UdpBind | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                self.deny(format!("udp://{}:{}", host_of(ip), address.port()), "UDP is not offered to jobs");
                false
            }
        }
    }

    fn tcp_refusal(&self, ip: IpAddr, port: u16) -> Option<String> {
        let Some(network) = &self.network else {
            return self.refusal(Scheme::Tcp, &host_of(ip), port);
        };
        let looked_up = self.resolved.lock().unwrap().get(&ip).is_some_and(|ports| ports.contains(&port));
        if !looked_up && network.grant_for(Scheme::Tcp, &ip.to_string(), port).is_none() {
            return Some(format!(
                "not granted; add \"tcp://HOST:{port}\" to [network] allow (and connect by that name), or \"tcp://{}:{port}\"",
                host_of(ip)
            ));
        }
        if !network.reachable(ip) {
            return Some(unreachable_reason(&ip.to_string(), &[ip]));
        }
        None
    }

    /// Whether a guest may look `name` up: a `tcp://` grant names it.
    fn may_look_up(&self, name: &str) -> bool {
        self.network.as_ref().is_some_and(|network| network.tcp_ports_for_name(name).next().is_some())
    }

    /// Remembers that a lookup of `name` answered `ip`, for the ports its grants name.
    fn remember(&self, name: &str, ip: IpAddr) {
        let Some(network) = &self.network else { return };
        let ports = network.tcp_ports_for_name(name);
        self.resolved.lock().unwrap().entry(ip.to_canonical()).or_default().extend(ports);
    }
}

/// `wasi:sockets/ip-name-lookup` for wasmcron: wasmtime-wasi's, behind the
/// run's grants.
pub(crate) struct GrantedLookup<'a> {
    sockets: WasiSocketsCtxView<'a>,
    guard: Arc<NetGuard>,
}

struct GrantedLookupData;

impl HasData for GrantedLookupData {
    type Data<'a> = GrantedLookup<'a>;
}

fn granted_lookup(state: &mut GuestState<WasiP2>) -> GrantedLookup<'_> {
    let guard = state.wasi.net.clone();
    GrantedLookup { sockets: state.sockets(), guard }
}

/// Replaces the name lookup `wasmtime_wasi::p2::add_to_linker_async` added.
pub(crate) fn add_name_lookup_to_linker(linker: &mut Linker<GuestState<WasiP2>>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = ip_name_lookup::add_to_linker::<_, GrantedLookupData>(linker, granted_lookup);
    linker.allow_shadowing(false);
    added
}

// The types ip-name-lookup uses from wasi:sockets/network, unchanged.
impl network::Host for GrantedLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(&mut self, error: Resource<wasmtime::Error>) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, error)
    }
}

impl network::HostNetwork for GrantedLookup<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}

impl ip_name_lookup::Host for GrantedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ip_name_lookup::ResolveAddressStream>, SocketError> {
        if !self.guard.may_look_up(&name) {
            let reason = if self.guard.network.is_none() {
                "the job has no [network] table; add [network] allow = [\"tcp://NAME:PORT\"]".to_owned()
            } else {
                "name lookup answers only names a tcp:// grant in [network] allow names".to_owned()
            };
            self.guard.deny(format!("tcp://{name}"), &reason);
            return Err(ErrorCode::AccessDenied.into());
        }
        let stream = ip_name_lookup::Host::resolve_addresses(&mut self.sockets, network, name.clone())?;
        self.guard.lookups.lock().unwrap().insert(stream.rep(), name);
        Ok(stream)
    }
}

impl HostResolveAddressStream for GrantedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let rep = stream.rep();
        let next = self.sockets.resolve_next_address(stream)?;
        if let Some(address) = &next {
            let ip = match *address {
                IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
                IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
            };
            if let Some(name) = self.guard.lookups.lock().unwrap().get(&rep) {
                self.guard.remember(name, ip);
            }
        }
        Ok(next)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.sockets.subscribe(stream)
    }

    fn drop(&mut self, stream: Resource<ip_name_lookup::ResolveAddressStream>) -> wasmtime::Result<()> {
        self.guard.lookups.lock().unwrap().remove(&stream.rep());
        HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}
