//! `RawJob`: the TOML of a declaration exactly as written, before any
//! meaning is given to it. Unknown keys are rejected here; everything else
//! (durations, sizes, enums, paths) stays text for `spec` to validate with
//! the field named.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub module: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub jitter: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub overlap: Option<String>,
    pub catch_up: Option<String>,
    pub catch_up_window: Option<String>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub dirs: Vec<RawDir>,
    pub network: Option<super::network::RawNetwork>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub timeout: Option<String>,
    pub fuel: Option<i64>,
    pub memory: Option<String>,
    pub output: Option<String>,
    pub payload: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<i64>,
    pub backoff: Option<String>,
    pub max_backoff: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    pub host: String,
    pub guest: String,
    pub mode: Option<String>,
}
