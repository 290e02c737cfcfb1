//! Jobs ready to run: each valid declaration with its module read into
//! memory and compiled, and the planning of a reload when files change.
//!
//! Module bytes are read whole before compiling, so a file rewritten on disk
//! never disturbs a loaded job. A reload compares each job with what is in
//! service: an untouched declaration and module are left alone, a module
//! whose bytes hash the same is not recompiled, and anything that fails to
//! load is reported while the version in service stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{self, ConfigError, JobSpec, Scheme};
use crate::runtime::{CompileCache, CompiledJob, Provenance, Runtime, hex};
use crate::store::Load;

/// A declaration and its compiled module.
#[derive(Clone)]
pub struct LoadedJob {
    pub spec: JobSpec,
    pub compiled: Arc<CompiledJob>,
}

impl LoadedJob {
    /// What to tell an operator when the module is built to use a network
    /// its declaration does not grant: each attempt will be refused.
    pub fn network_warnings(&self) -> Vec<String> {
        let imports = self.compiled.network_imports;
        let network = self.spec.network.as_ref();
        let grants = |scheme| network.is_some_and(|n| n.grants(scheme));
        let file = self.spec.source.display();
        let mut warnings = Vec::new();
        if imports.http && !grants(Scheme::Http) && !grants(Scheme::Https) {
            warnings.push(format!(
                "imports wasi:http, but {file} grants no http:// or https:// destination, so every request will be denied; \
                 to allow one add [network] allow = [\"https://HOST\"]"
            ));
        }
        if imports.tcp && !grants(Scheme::Tcp) {
            warnings.push(format!(
                "imports wasi:sockets, but {file} grants no tcp:// destination, so every connection will be refused; \
                 to allow one add [network] allow = [\"tcp://HOST:PORT\"]"
            ));
        }
        warnings
    }
}

/// Everything a jobs folder gave: runnable jobs, every error, and how many
/// modules had to be compiled rather than taken from the cache.
#[derive(Default)]
pub struct Registry {
    pub jobs: Vec<LoadedJob>,
    pub errors: Vec<ConfigError>,
    pub compiled: usize,
    pub cached: usize,
    /// Folders holding the modules that declarations name (see [`folder_of`]).
    pub module_folders: BTreeSet<PathBuf>,
}

impl Registry {
    /// Loads and compiles every job in `dir`; broken ones are listed in
    /// `errors` and never stop the others.
    pub fn load(runtime: &Runtime, dir: &Path, cache: Option<&CompileCache>) -> anyhow::Result<Registry> {
        let loaded = load_dir(dir)?;
        let module_folders = loaded.jobs.iter().filter_map(|spec| folder_of(&spec.module)).collect();
        let mut registry = Registry { errors: loaded.errors, module_folders, ..Registry::default() };
        // Jobs declared on the same module share its compiled code: one
        // compile, one copy in memory, one set of warm instance slots.
        let mut shared: HashMap<(String, bool), Arc<CompiledJob>> = HashMap::new();
        for spec in loaded.jobs {
            let module = match read_module(&spec) {
                Ok(module) => module,
                Err(e) => {
                    registry.errors.push(e);
                    continue;
                }
            };
            let key = (module.sha256.clone(), spec.limits.fuel.is_some());
            if let Some(compiled) = shared.get(&key) {
                let job = LoadedJob { spec, compiled: compiled.clone() };
                registry.jobs.push(job);
                continue;
            }
            match compile(runtime, &spec, &module, cache) {
                Ok((job, provenance)) => {
                    match provenance {
                        Provenance::Compiled => registry.compiled += 1,
                        Provenance::Cached => registry.cached += 1,
                    }
                    shared.insert(key, job.compiled.clone());
                    registry.jobs.push(job);
                }
                Err(e) => registry.errors.push(e),
            }
        }
        registry.errors.sort_by(|a, b| a.file().cmp(b.file()));
        Ok(registry)
    }
}

impl Registry {
    /// What to record of this load: each job in service on its module,
    /// and each file that failed, by job.
    pub fn loads(&self) -> Vec<Load> {
        let loaded = self.jobs.iter().map(|job| Load::Loaded {
            job: job.spec.name.clone(),
            module_sha256: job.compiled.sha256.clone(),
            first: false,
        });
        let failed =
            self.errors.iter().map(|error| Load::Failed { job: error.job().to_owned(), error: error.to_string() });
        loaded.chain(failed).collect()
    }
}

fn load_dir(dir: &Path) -> anyhow::Result<config::Loaded> {
    config::load_dir(dir).map_err(|e| {
        anyhow::anyhow!("cannot read the jobs folder {}: {e}; create it or pass --jobs DIR", dir.display())
    })
}

/// One difference between the files and what is in service.
pub enum Change {
    /// A new job, or a new version of one (declaration, module or both).
    Loaded(Box<LoadedJob>),
    /// The job's declaration (or bare module) is gone.
    Removed(String),
    /// The job's newest files do not load; any version in service stays.
    Failed { job: String, error: ConfigError },
}

/// What a reload found: the differences, and the module folders to watch.
pub struct Reload {
    pub changes: Vec<Change>,
    pub module_folders: BTreeSet<PathBuf>,
}

/// Compares `dir` with the jobs in service (`current`, by name), given the
/// files that changed (`changed`, as [`normalize`] gives them), and returns
/// what differs. Blocking: compiles.
pub fn plan_reload(
    runtime: &Runtime,
    dir: &Path,
    cache: Option<&CompileCache>,
    current: &BTreeMap<String, LoadedJob>,
    changed: &BTreeSet<PathBuf>,
) -> anyhow::Result<Reload> {
    let loaded = load_dir(dir)?;
    let module_folders = loaded.jobs.iter().filter_map(|spec| folder_of(&spec.module)).collect();
    let mut changes = Vec::new();
    let mut present = BTreeSet::new();
    let mut compiled_here: Vec<Arc<CompiledJob>> = Vec::new();
    for error in loaded.errors {
        let job = error.job().to_owned();
        present.insert(job.clone());
        changes.push(Change::Failed { job, error });
    }
    for spec in loaded.jobs {
        present.insert(spec.name.clone());
        let previous = current.get(&spec.name);
        let module_touched = changed.contains(&normalize(&spec.module));
        if previous.is_some_and(|p| p.spec == spec) && !module_touched {
            continue;
        }
        let name = spec.name.clone();
        let module = match read_module(&spec) {
            Ok(module) => module,
            Err(error) => {
                changes.push(Change::Failed { job: name, error });
                continue;
            }
        };
        let metered = spec.limits.fuel.is_some();
        let same = |compiled: &CompiledJob| compiled.sha256 == module.sha256 && compiled.metered == metered;
        if previous.is_some_and(|p| p.spec == spec && same(&p.compiled)) {
            continue; // touched, not changed
        }
        // Its own previous code, else another job's on the same module.
        let shared = previous
            .into_iter()
            .chain(current.values())
            .map(|job| &job.compiled)
            .chain(&compiled_here)
            .find(|compiled| same(compiled))
            .cloned();
        match shared {
            Some(compiled) => changes.push(Change::Loaded(Box::new(LoadedJob { spec, compiled }))),
            None => match compile(runtime, &spec, &module, cache) {
                Ok((job, _)) => {
                    compiled_here.push(job.compiled.clone());
                    changes.push(Change::Loaded(Box::new(job)));
                }
                Err(error) => changes.push(Change::Failed { job: name, error }),
            },
        }
    }
    changes.extend(current.keys().filter(|name| !present.contains(*name)).map(|name| Change::Removed(name.clone())));
    Ok(Reload { changes, module_folders })
}

/// The folder to watch for a file: its own, or while that does not exist,
/// the nearest existing ancestor (so its creation is seen). Canonical.
pub fn folder_of(file: &Path) -> Option<PathBuf> {
    file.ancestors().skip(1).find_map(|folder| {
        let folder = if folder.as_os_str().is_empty() { Path::new(".") } else { folder };
        folder.canonicalize().ok()
    })
}

/// The form in which paths are compared with file events: the canonical
/// folder joined with the file name (the file itself may be gone).
pub fn normalize(path: &Path) -> PathBuf {
    match (path.parent().and_then(|p| p.canonicalize().ok()), path.file_name()) {
        (Some(folder), Some(name)) => folder.join(name),
        _ => path.to_owned(),
    }
}

/// A job's module as read from its file, with its digest: what tells
/// modules apart, for sharing compiled code and for the compile cache.
pub struct ModuleBytes {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Reads the module of `spec`, with an error naming the declaration.
pub fn read_module(spec: &JobSpec) -> Result<ModuleBytes, ConfigError> {
    let bytes = std::fs::read(&spec.module).map_err(|e| ConfigError::module_unreadable(spec, e))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    Ok(ModuleBytes { bytes, sha256 })
}

/// Compiles `module` as the module of `spec`.
pub fn compile(
    runtime: &Runtime,
    spec: &JobSpec,
    module: &ModuleBytes,
    cache: Option<&CompileCache>,
) -> Result<(LoadedJob, Provenance), ConfigError> {
    let (compiled, provenance) = runtime
        .compile_cached(&module.bytes, &module.sha256, spec.limits.fuel.is_some(), cache)
        .map_err(|e| ConfigError::compile(spec, e))?;
    let job = LoadedJob { spec: spec.clone(), compiled: Arc::new(compiled) };
    Ok((job, provenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

    #[test]
    fn jobs_on_the_same_module_share_one_compile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shared.wat"), MODULE).unwrap();
        for (name, extra) in [("a", ""), ("b", ""), ("metered", "\n[limits]\nfuel = 1000000")] {
            let declaration = format!("module = \"shared.wat\"\nschedule = \"@hourly\"{extra}");
            std::fs::write(dir.path().join(format!("{name}.toml")), declaration).unwrap();
        }
        let runtime = Runtime::new().unwrap();
        let registry = Registry::load(&runtime, dir.path(), None).unwrap();
        assert!(registry.errors.is_empty(), "{:?}", registry.errors.first().map(|e| e.to_string()));
        let compiled = |name: &str| &registry.jobs.iter().find(|j| j.spec.name == name).unwrap().compiled;
        assert!(Arc::ptr_eq(compiled("a"), compiled("b")), "a and b share the module's code");
        assert!(!Arc::ptr_eq(compiled("a"), compiled("metered")), "metered code is compiled apart");
        // shared.wat is also a bare job of its own, sharing a's code.
        assert_eq!((registry.jobs.len(), registry.compiled), (4, 2));
    }

    #[test]
    fn a_module_that_does_not_compile_keeps_wasmtime_s_error_as_the_source() {
        use crate::runtime::CompileError;
        use std::error::Error as _;

        let dir = tempfile::tempdir().unwrap();
        // Well-formed text, invalid code: `i32.add` with nothing on the stack.
        std::fs::write(dir.path().join("broken.wat"), r#"(module (func (export "_start") i32.add))"#).unwrap();
        std::fs::write(dir.path().join("nightly.toml"), "module = \"broken.wat\"").unwrap();
        let runtime = Runtime::new().unwrap();
        let registry = Registry::load(&runtime, dir.path(), None).unwrap();
        assert!(registry.jobs.is_empty());
        let [bare, declared] = registry.errors.as_slice() else { panic!("two errors: {:?}", registry.errors) };

        for error in [bare, declared] {
            let source = error.source().expect("the compile error is kept as the source");
            let Some(CompileError::Invalid(wasmtime_error)) = source.downcast_ref::<CompileError>() else {
                panic!("not CompileError::Invalid: {source:?}");
            };
            // The message is still one line built from the whole cause.
            assert!(error.to_string().ends_with(&format!("is not valid WebAssembly: {wasmtime_error:#}")), "{error}");
        }
        assert_eq!((bare.job(), bare.file(), bare.field()), ("broken", dir.path().join("broken.wat").as_path(), None));
        assert_eq!(
            (declared.job(), declared.file(), declared.field()),
            ("nightly", dir.path().join("nightly.toml").as_path(), Some("module"))
        );
        let module = dir.path().join("broken.wat").display().to_string();
        assert!(
            declared.to_string().starts_with(&format!(
                "{}: module {module:?}: is not valid",
                dir.path().join("nightly.toml").display()
            )),
            "{declared}"
        );
    }

    #[test]
    fn a_missing_module_keeps_the_io_error_as_the_source() {
        use std::error::Error as _;

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.toml"), "").unwrap();
        let runtime = Runtime::new().unwrap();
        let registry = Registry::load(&runtime, dir.path(), None).unwrap();
        let [error] = registry.errors.as_slice() else { panic!("one error: {:?}", registry.errors) };
        let io = error.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("an io::Error source");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(
            error.to_string().ends_with("; build the job first, or fix `module` (it is relative to the declaration)")
        );
        assert_eq!((error.job(), error.field()), ("report", Some("module")));
    }

    /// The jobs `dir` loads, by name, as the scheduler holds them.
    fn in_service(runtime: &Runtime, dir: &Path) -> BTreeMap<String, LoadedJob> {
        let registry = Registry::load(runtime, dir, None).unwrap();
        registry.jobs.into_iter().map(|job| (job.spec.name.clone(), job)).collect()
    }

    #[test]
    fn a_reload_leaves_an_equal_spec_alone_and_loads_a_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tick.wat"), MODULE).unwrap();
        std::fs::write(dir.path().join("tick.toml"), "schedule = \"@hourly\"").unwrap();
        let runtime = Runtime::new().unwrap();
        let current = in_service(&runtime, dir.path());
        let changed = BTreeSet::from([normalize(&dir.path().join("tick.toml"))]);

        // Rewritten with the same meaning: nothing to do.
        std::fs::write(dir.path().join("tick.toml"), "schedule = \"@hourly\" # again").unwrap();
        let reload = plan_reload(&runtime, dir.path(), None, &current, &changed).unwrap();
        assert!(reload.changes.is_empty(), "an equal spec is left alone");

        std::fs::write(dir.path().join("tick.toml"), "schedule = \"@hourly\"\njitter = \"5s\"").unwrap();
        let reload = plan_reload(&runtime, dir.path(), None, &current, &changed).unwrap();
        let [Change::Loaded(tick)] = reload.changes.as_slice() else { panic!("tick reloaded, nothing else") };
        assert_eq!(tick.spec.jitter, std::time::Duration::from_secs(5));
        assert!(Arc::ptr_eq(&tick.compiled, &current["tick"].compiled), "same module, not recompiled");
    }

    #[test]
    fn a_job_added_on_a_loaded_module_shares_its_code() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shared.wat"), MODULE).unwrap();
        std::fs::write(dir.path().join("a.toml"), "module = \"shared.wat\"").unwrap();
        let runtime = Runtime::new().unwrap();
        let current = in_service(&runtime, dir.path());
        std::fs::write(dir.path().join("b.toml"), "module = \"shared.wat\"").unwrap();
        let changed = BTreeSet::from([normalize(&dir.path().join("b.toml"))]);
        let reload = plan_reload(&runtime, dir.path(), None, &current, &changed).unwrap();
        let [Change::Loaded(b)] = reload.changes.as_slice() else { panic!("one job loaded, nothing else") };
        assert_eq!(b.spec.name, "b");
        assert!(Arc::ptr_eq(&b.compiled, &current["a"].compiled), "b runs a's compiled code");
    }
}
