//! Jobs ready to run: each valid declaration with its module read into
//! memory and compiled. Errors name the declaring file and the module path.
//!
//! Module bytes are read whole before compiling, so a file rewritten on disk
//! never disturbs a loaded job. (Hot swapping of the set is the watcher's
//! business; this module only builds one.)

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, ConfigError, JobSpec};
use crate::runtime::{CompiledJob, Runtime};

/// A declaration and its compiled module.
pub struct LoadedJob {
    pub spec: JobSpec,
    pub compiled: Arc<CompiledJob>,
}

/// Everything a jobs folder gave: runnable jobs, and every error.
#[derive(Default)]
pub struct Registry {
    pub jobs: Vec<LoadedJob>,
    pub errors: Vec<ConfigError>,
}

impl Registry {
    /// Loads and compiles every job in `dir`; broken ones are listed in
    /// `errors` and never stop the others.
    pub fn load(runtime: &Runtime, dir: &Path) -> anyhow::Result<Registry> {
        let loaded = config::load_dir(dir).map_err(|e| {
            anyhow::anyhow!("cannot read the jobs folder {}: {e}; create it or pass --jobs DIR", dir.display())
        })?;
        let mut registry = Registry { jobs: Vec::new(), errors: loaded.errors };
        for spec in loaded.jobs {
            match compile(runtime, &spec) {
                Ok(compiled) => registry.jobs.push(LoadedJob { spec, compiled: Arc::new(compiled) }),
                Err(e) => registry.errors.push(e),
            }
        }
        registry.errors.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(registry)
    }
}

/// Reads and compiles the module of `spec`.
pub fn compile(runtime: &Runtime, spec: &JobSpec) -> Result<CompiledJob, ConfigError> {
    let declared = spec.source != spec.module;
    let module_error = |message: String| {
        if declared {
            ConfigError::field(&spec.source, "module", spec.module.display().to_string(), message)
        } else {
            ConfigError::file(&spec.source, message)
        }
    };
    let bytes = std::fs::read(&spec.module).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; build the job first, or fix `module` (it is relative to the declaration)"
        } else {
            ""
        };
        module_error(format!("cannot be read: {e}{hint}"))
    })?;
    runtime.compile(&bytes, spec.limits.fuel.is_some()).map_err(|e| module_error(e.to_string()))
}
