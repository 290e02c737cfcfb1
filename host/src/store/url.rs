//! Which store to open: `--store sqlite:PATH` (the embedded default,
//! `sqlite:STATE/wasmcron.db`), or `--store postgres://USER@HOST/DB` (also
//! `postgresql://`), one database several hosts share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DATABASE_FILE, Result, Store, StoreError};

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file (created, with its folder, if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL as given (it may hold a password:
    /// shown without it).
    Postgres(String),
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
            if let Err(error) = text.parse::<tokio_postgres::Config>() {
                return Err(StoreError::BadUrl {
                    url: super::postgres::without_password(text),
                    reason: format!(
                        "not a PostgreSQL URL ({error}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                    ),
                });
            }
            return Ok(StoreUrl::Postgres(text.to_owned()));
        }
        Err(bad(
            "not a store URL; write sqlite:PATH (e.g. sqlite:.wasmcron/wasmcron.db) or postgres://USER@HOST/DATABASE",
        ))
    }

    /// Whether the store already exists (a file for SQLite; a database
    /// server is asked only when opened). Read-only commands refuse to
    /// create one where none is.
    pub fn exists(&self) -> bool {
        match self {
            StoreUrl::Sqlite(path) => path.is_file(),
            StoreUrl::Postgres(_) => true,
        }
    }

    /// Opens the store, creating it if needed, and migrates its schema.
    /// Needs a tokio runtime: the store's work runs on its blocking pool.
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) => Ok(Arc::new(super::sqlite::SqliteStore::open(path).await?)),
            StoreUrl::Postgres(url) => Ok(Arc::new(super::postgres::PgStore::open(url).await?)),
        }
    }

    /// Opens a store that must exist already.
    pub async fn open_existing(&self) -> Result<Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) if !path.is_file() => Err(StoreError::Missing { path: path.clone() }),
            StoreUrl::Postgres(url) => Ok(Arc::new(super::postgres::PgStore::open_existing(url).await?)),
            StoreUrl::Sqlite(_) => self.open().await,
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Postgres(url) => f.write_str(&super::postgres::without_password(url)),
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
        let url = "postgres://wasmcron:s3cret@db:5433/wasmcron?application_name=a";
        assert_eq!(StoreUrl::parse(url).unwrap(), StoreUrl::Postgres(url.into()));
        let shown = StoreUrl::parse(url).unwrap().to_string();
        assert_eq!(shown, "postgres://wasmcron@db:5433/wasmcron?application_name=a", "no password");
        let in_query = StoreUrl::parse("postgresql://w@db/x?password=s3cret&sslmode=disable").unwrap();
        assert_eq!(in_query.to_string(), "postgresql://w@db/x?sslmode=disable");
        assert!(in_query.exists());
        for (text, says) in [
            ("sqlite:", "no database file"),
            ("postgres://w@db/x?port=notaport", "not a PostgreSQL URL"),
            ("mysql://x", "not a store URL; write sqlite:PATH"),
        ] {
            let error = StoreUrl::parse(text).unwrap_err().to_string();
            assert!(error.starts_with(&format!("--store {text:?}: ")) && error.contains(says), "{error}");
        }
    }
}
