//! What a guest's `Store` holds: its WASI context (preview 1 or 2) and the
//! limiter that caps its memory and remembers when the cap was hit.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::network::{HttpHooks, NetGuard};

pub(crate) struct GuestState<W> {
    pub wasi: W,
    pub limiter: MemoryLimiter,
}

/// WASI preview 2 state: the context and the table of its resources, the
/// run's network grants (for `wasi:http` and `wasi:sockets`), and for
/// job-world guests, their way to the host.
pub(crate) struct WasiP2 {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub hooks: HttpHooks,
    pub net: Arc<NetGuard>,
    pub api: Option<super::world::JobApi>,
}

impl WasiP2 {
    pub fn new(ctx: WasiCtx, net: Arc<NetGuard>, api: Option<super::world::JobApi>) -> Self {
        WasiP2 {
            ctx,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: HttpHooks { guard: net.clone() },
            net,
            api,
        }
    }
}

impl WasiView for GuestState<WasiP2> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi.ctx, table: &mut self.wasi.table }
    }
}

impl WasiHttpView for GuestState<WasiP2> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.wasi.http, table: &mut self.wasi.table, hooks: &mut self.wasi.hooks }
    }
}

/// Caps the total linear memory of one store at `limits.memory`: growth past
/// it fails (`memory.grow` returns -1) rather than trapping the host.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// The largest size a guest asked for beyond the limit, if it did.
    pub refused: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Self {
        MemoryLimiter { limit: usize::try_from(limit).unwrap_or(usize::MAX), refused: None }
    }
}

/// Table elements a guest may grow to; generous, but not unbounded.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired <= self.limit {
            return Ok(true);
        }
        self.refused = Some(self.refused.unwrap_or(0).max(desired));
        Ok(false)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
