//! The shared wasmtime engines.
//!
//! Fuel metering changes the generated code, so a metered job and an
//! unmetered one cannot share an engine: there are two, identical but for
//! `consume_fuel`, and a job is compiled on the one it needs — unmetered
//! jobs never pay for fuel checks. Both use the pooling allocator (instances
//! and memories reused from pre-reserved slots, copy-on-write memory images)
//! and epoch interruption, driven by the `ticker` while a guest runs.

use anyhow::{Context, Result};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::MAX_MEMORY;

/// Slots in each engine's pool: the most guest instances that can be alive
/// at once per engine. Each memory slot reserves address space, not RAM.
const POOL_SLOTS: u32 = 512;

/// Linear memory (and table) a freed slot keeps resident for the next
/// instance, reset in place rather than handed back to the kernel. Without
/// it every run ends in an `madvise` whose TLB shootdown interrupts the
/// other cores; with `PAGEMAP_SCAN` (Linux 6.7+) only the pages the guest
/// touched are reset. Costs at most this much RSS per warm slot.
const KEEP_RESIDENT: usize = 256 << 10;

/// The pooling allocator as wasmcron tunes it (see `KEEP_RESIDENT`). The
/// benchmark's bare loop (`bench/src/floor.rs`) mirrors it: change both.
fn tuned_pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.linear_memory_keep_resident(KEEP_RESIDENT).table_keep_resident(KEEP_RESIDENT).pagemap_scan(Enabled::Auto);
    pool
}

pub(crate) fn build_engine(metered: bool) -> Result<Engine> {
    let mut pool = tuned_pool();
    pool.total_memories(POOL_SLOTS)
        .total_tables(POOL_SLOTS)
        .total_stacks(POOL_SLOTS)
        .total_core_instances(POOL_SLOTS)
        .total_component_instances(POOL_SLOTS)
        .max_memory_size(MAX_MEMORY as usize);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(metered)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")
}
