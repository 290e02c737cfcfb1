//! The compile cache: compiled code in `STATE/cache/`, so a restart with
//! hundreds of modules does not compile them again.
//!
//! An entry is named by the module's SHA-256 and a digest of the engine's
//! compilation settings (wasmtime's `precompile_compatibility_hash`), so a
//! changed module, a metered/unmetered switch or a new wasmtime never finds
//! a stale entry. Entries are written to a temporary file and renamed into
//! place, so a reader never sees half of one. Wasmtime checks every entry
//! again when loading it; one that fails is compiled afresh and replaced.
//!
//! Trust: loading compiled code skips validation, so the cache folder must
//! be as private as the state folder it lives in (created 0700).

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use super::compile::hex;

pub struct CompileCache {
    dir: PathBuf,
}

/// Where a compiled job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    Compiled,
    Cached,
}

impl CompileCache {
    /// Uses (creating if needed) `dir` for cached code.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(CompileCache { dir: dir.to_owned() })
    }

    fn entry(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `bytes` as the entry at `path`, atomically. Failures are
    /// logged, never fatal: the cache only saves time.
    fn store(&self, path: &Path, bytes: &[u8]) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temporary = self.dir.join(format!(".tmp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::File::create(&temporary)
            .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_data()))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            tracing::warn!(path = %path.display(), %error, "could not write a compile cache entry");
        }
    }
}

/// The entry's file name: what it was compiled from, for which engine, as what.
pub(crate) fn entry_name(module_sha256: &str, engine_key: &str, kind: &str) -> String {
    format!("{module_sha256}-{engine_key}-{kind}.cwasm")
}

/// Takes compiled code from the cache entry `name` through `load`, or
/// builds it with `compile` and caches what `serialize` makes of it.
pub(crate) fn load_or_compile<T, E>(
    cache: Option<&CompileCache>,
    name: &str,
    load: impl FnOnce(&Path) -> Option<T>,
    compile: impl FnOnce() -> Result<T, E>,
    serialize: impl FnOnce(&T) -> wasmtime::Result<Vec<u8>>,
) -> Result<(T, Provenance), E> {
    let Some(cache) = cache else { return Ok((compile()?, Provenance::Compiled)) };
    let path = cache.entry(name);
    if let Some(code) = path.exists().then(|| load(&path)).flatten() {
        return Ok((code, Provenance::Cached));
    }
    let code = compile()?;
    match serialize(&code) {
        Ok(bytes) => cache.store(&path, &bytes),
        Err(error) => tracing::warn!(%error, "could not serialize compiled code for the cache"),
    }
    Ok((code, Provenance::Compiled))
}

/// A short digest of what makes `engine`'s code incompatible with another's.
pub(crate) fn engine_key(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0 // unused: the digest is read from the inner state
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex(&hasher.0.finalize())[..16].to_owned()
}
