//! Which store to open: `--store sqlite:PATH` (the embedded default,
//! `sqlite:STATE/wasmcron.db`), and room for other backends beside it
//! (`postgres://…` is the cluster backend DESIGN.md plans).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DATABASE_FILE, Result, Store, StoreError};

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file (created, with its folder, if missing).
    Sqlite(PathBuf),
}

impl StoreUrl {
    /// `--store` as given, or the default in the state folder.
    pub fn resolve(given: Option<&str>, state_dir: &Path) -> Result<StoreUrl> {
        match given {
            Some(text) => StoreUrl::parse(text),
            None => Ok(StoreUrl::Sqlite(state_dir.join(DATABASE_FILE))),
        }
    }

    pub fn parse(text: &str) -> Result<StoreUrl> {
        let bad = |reason: &str| StoreError::BadUrl { url: text.to_owned(), reason: reason.to_owned() };
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("no database file; write sqlite:PATH, e.g. sqlite:.wasmcron/wasmcron.db"));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Err(bad(
                "the PostgreSQL backend is not built into this wasmcron yet; use sqlite:PATH (the default is sqlite:STATE/wasmcron.db)",
            ));
        }
        Err(bad("not a store URL; write sqlite:PATH (e.g. sqlite:.wasmcron/wasmcron.db)"))
    }

    /// Whether the store already exists (a file for SQLite). Read-only
    /// commands refuse to create one where none is.
    pub fn exists(&self) -> bool {
        match self {
            StoreUrl::Sqlite(path) => path.is_file(),
        }
    }

    /// Opens the store, creating it if needed, and migrates its schema.
    /// Needs a tokio runtime: the store's work runs on its blocking pool.
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) => Ok(Arc::new(super::sqlite::SqliteStore::open(path).await?)),
        }
    }

    /// Opens a store that must exist already.
    pub async fn open_existing(&self) -> Result<Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) if !path.is_file() => Err(StoreError::Missing { path: path.clone() }),
            _ => self.open().await,
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_what_to_write() {
        let state = Path::new("/var/lib/wasmcron");
        assert_eq!(StoreUrl::resolve(None, state).unwrap(), StoreUrl::Sqlite(state.join("wasmcron.db")));
        assert_eq!(StoreUrl::parse("sqlite:runs.db").unwrap(), StoreUrl::Sqlite("runs.db".into()));
        assert_eq!(StoreUrl::parse("sqlite:///tmp/x.db").unwrap(), StoreUrl::Sqlite("/tmp/x.db".into()));
        for (text, says) in [
            ("sqlite:", "no database file"),
            ("postgres://wasmcron@db/wasmcron", "not built into this wasmcron yet"),
            ("mysql://x", "not a store URL; write sqlite:PATH"),
        ] {
            let error = StoreUrl::parse(text).unwrap_err().to_string();
            assert!(error.starts_with(&format!("--store {text:?}: ")) && error.contains(says), "{error}");
        }
    }
}
