//! `wasmcron backup FILE`: an online copy of the SQLite store, taken while
//! the host runs (or not), with SQLite's backup API (see
//! `store::sqlite::backup`). Exits 0 with the copy in place, 1 if the copy
//! failed (FILE untouched), 2 if it was asked for wrongly.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{FAILED, Globals};
use crate::store::StoreUrl;
use crate::store::sqlite;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the copy: a new file, or an old one with --force.
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let url = globals.store_url()?;
    let source = match &url {
        StoreUrl::Sqlite(source) => source,
        StoreUrl::Postgres(_) => anyhow::bail!(
            "--store {url}: `wasmcron backup` copies a SQLite store; back up a PostgreSQL store with pg_dump \
             (e.g. pg_dump --format=custom --file=FILE DATABASE_URL)"
        ),
    };
    match sqlite::backup(source, &args.file, args.force) {
        Ok(report) => {
            let newest = report.newest_run.map_or("no runs".to_owned(), |id| format!("runs up to id {id}"));
            println!(
                "backed up {url} to {}: {} pages, {} bytes, {newest}",
                args.file.display(),
                report.pages,
                report.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.is_usage() => Err(error.into()),
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(FAILED))
        }
    }
}
