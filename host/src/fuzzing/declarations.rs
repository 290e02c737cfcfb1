//! Declaration targets: any text as `jobs.d/NAME.toml`, and any structured
//! declaration (every known key, values of every type, some unknown keys)
//! → a `JobSpec` that keeps DESIGN.md's limits, or an error that names the
//! file and, for a bad value, the field.

use std::path::Path;

use arbitrary::{Arbitrary, Result, Unstructured};
use toml::{Table, Value};

use crate::config::{self, ConfigError, JobSpec, MAX_MEMORY};

const FILE: &str = "/fuzz/jobs.d/job.toml";

/// Any bytes as a declaration's text.
pub fn declaration_text(data: &[u8]) {
    check(&String::from_utf8_lossy(data));
}

/// A declaration built from keys the format knows, serialised as TOML.
pub fn declaration_structured(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(table) = declaration(&mut input) else { return };
    // What the toml crate cannot write is not a declaration anyone can give.
    let Ok(text) = toml::to_string(&table) else { return };
    check(&text);
}

fn check(text: &str) {
    let file = Path::new(FILE);
    let loaded = config::parse_toml(file, text).and_then(|raw| JobSpec::from_raw("job".to_owned(), file, raw));
    match loaded {
        Ok(spec) => assert_spec_in_bounds(&spec, text),
        Err(error) => assert_error_names_file_and_field(&error, text),
    }
}

fn assert_spec_in_bounds(spec: &JobSpec, text: &str) {
    let limits = &spec.limits;
    assert!(!limits.timeout.is_zero(), "a zero timeout was accepted from {text:?}");
    assert!(limits.memory <= MAX_MEMORY, "memory {} over the cap from {text:?}", limits.memory);
    assert!(spec.retry.attempts >= 1, "no attempts from {text:?}");
    assert!(spec.module.is_absolute(), "module {:?} from {text:?}", spec.module);
    if let Some(schedule) = &spec.schedule {
        assert_eq!(schedule.timezone(), spec.timezone);
    }
}

fn assert_error_names_file_and_field(error: &ConfigError, text: &str) {
    let message = error.to_string();
    assert_eq!(error.file(), Path::new(FILE), "{message}");
    assert!(message.starts_with(FILE), "the message does not start with the file: {message:?} for {text:?}");
    match error {
        ConfigError::Toml { .. } => {} // TOML's own position and key are in the message
        ConfigError::Invalid { .. } | ConfigError::Schedule { .. } => {
            let field = error.field().expect("a bad value names its field");
            assert!(!field.is_empty() && message.contains(field), "{message:?} does not name {field:?}");
        }
        other => panic!("loading text alone cannot give {other:?}"),
    }
}

/// The keys of a declaration and plausible values for each, from which a
/// generated declaration picks; any key may instead get an arbitrary value.
const TOP: &[(&str, &[&str])] = &[
    ("module", &["job.wasm", "../x/y.wat", "", " ", "/abs/job.wasm"]),
    ("schedule", &["0 30 2 * * Mon-Fri", "*/15 * * * *", "@daily", "@every 30s", "61 * * * *", "0 0 L * *"]),
    ("timezone", &["UTC", "Europe/London", "Australia/Lord_Howe", "Mars/Olympus", ""]),
    ("jitter", &["30s", "0s", "1d", "5", "-1s"]),
    ("overlap", &["skip", "queue", "allow", "replace", "Skip"]),
    ("catch_up", &["none", "once", "all", "some"]),
    ("catch_up_window", &["24h", "0s", "1ms", "99999999999999999d"]),
];
const LIMITS: &[(&str, &[&str])] = &[
    ("timeout", &["5m", "0s", "250ms", "1d", "18446744073709551615ms"]),
    ("memory", &["256MiB", "0B", "64KiB", "4GiB", "1KB", "9999999999GiB"]),
    ("output", &["1MiB", "0B", "1B", "1GiB"]),
    ("payload", &["1MiB", "0B", "1GiB"]),
];
const RETRY: &[(&str, &[&str])] = &[("backoff", &["10s", "0s", "1ms"]), ("max_backoff", &["10m", "1s", "0s"])];
const NETWORK: &[&str] =
    &["https://api.example.com", "tcp://smtp.example.com:587", "http://10.0.0.1", "ftp://x", "https://*.x.com", ""];
const SECRETS: &[&str] = &["credential:slack", "file:/run/secrets/pg", "env:HOST_TOKEN", "nope", "file:", "env:"];

fn declaration(input: &mut Unstructured) -> Result<Table> {
    let mut table = Table::new();
    for (key, values) in TOP {
        maybe_string(input, &mut table, key, values)?;
    }
    if input.ratio(1, 3)? {
        table.insert("args".into(), Value::Array(strings(input)?));
    }
    if input.ratio(1, 3)? {
        table.insert("env".into(), Value::Table(string_map(input, &["LEVEL", "", "A=B", "PATH"])?));
    }
    if input.ratio(1, 4)? {
        table.insert("enabled".into(), scalar(input)?);
    }
    if input.ratio(1, 2)? {
        let mut limits = Table::new();
        for (key, values) in LIMITS {
            maybe_string(input, &mut limits, key, values)?;
        }
        if input.ratio(1, 2)? {
            limits.insert("fuel".into(), Value::Integer(input.arbitrary()?));
        }
        table.insert("limits".into(), Value::Table(limits));
    }
    if input.ratio(1, 3)? {
        let mut retry = Table::new();
        retry.insert("attempts".into(), Value::Integer(input.int_in_range(-2..=20)?));
        for (key, values) in RETRY {
            maybe_string(input, &mut retry, key, values)?;
        }
        table.insert("retry".into(), Value::Table(retry));
    }
    if input.ratio(1, 4)? {
        table.insert("dirs".into(), Value::Array(dirs(input)?));
    }
    if input.ratio(1, 4)? {
        let mut network = Table::new();
        let allow = (0..input.int_in_range(0..=3)?).map(|_| pick(input, NETWORK)).collect::<Result<Vec<_>>>()?;
        network.insert("allow".into(), Value::Array(allow));
        if input.ratio(1, 3)? {
            network.insert(
                "private".into(),
                Value::Array(vec![pick(input, &["10.0.0.0/8", "::1", "x", "127.0.0.1/33"])?]),
            );
        }
        table.insert("network".into(), Value::Table(network));
    }
    if input.ratio(1, 4)? {
        let secrets = (0..input.int_in_range(0..=3)?)
            .map(|i| Ok((format!("SECRET_{i}"), pick(input, SECRETS)?)))
            .collect::<Result<Table>>()?;
        table.insert("secrets".into(), Value::Table(secrets));
    }
    if input.ratio(1, 10)? {
        table.insert(String::arbitrary(input)?, scalar(input)?); // most likely unknown
    }
    Ok(table)
}

fn maybe_string(input: &mut Unstructured, table: &mut Table, key: &str, values: &[&str]) -> Result<()> {
    if input.ratio(1, 2)? {
        table.insert(key.into(), pick(input, values)?);
    }
    Ok(())
}

/// A plausible value (mostly), an arbitrary string, or a value of another type.
fn pick(input: &mut Unstructured, values: &[&str]) -> Result<Value> {
    Ok(match input.int_in_range(0u8..=9)? {
        0 => Value::String(String::arbitrary(input)?),
        1 => scalar(input)?,
        _ => Value::String(values[input.choose_index(values.len())?].to_owned()),
    })
}

fn scalar(input: &mut Unstructured) -> Result<Value> {
    Ok(match input.int_in_range(0u8..=3)? {
        0 => Value::Integer(input.arbitrary()?),
        1 => Value::Boolean(input.arbitrary()?),
        2 => Value::Float(input.arbitrary()?),
        _ => Value::String(String::arbitrary(input)?),
    })
}

fn strings(input: &mut Unstructured) -> Result<Vec<Value>> {
    (0..input.int_in_range(0..=3)?).map(|_| pick(input, &["--since", "1d", ""])).collect()
}

fn string_map(input: &mut Unstructured, keys: &[&str]) -> Result<Table> {
    (0..input.int_in_range(0..=3)?)
        .map(|_| Ok((keys[input.choose_index(keys.len())?].to_owned(), pick(input, &["info", "", "x"])?)))
        .collect()
}

fn dirs(input: &mut Unstructured) -> Result<Vec<Value>> {
    (0..input.int_in_range(0..=2)?)
        .map(|_| {
            let mut dir = Table::new();
            dir.insert("host".into(), pick(input, &["data", "../../etc", "", "/abs"])?);
            dir.insert("guest".into(), pick(input, &["/reports", "relative", "/", "", "/a/../b"])?);
            if input.ratio(1, 2)? {
                dir.insert("mode".into(), pick(input, &["ro", "rw", "wr"])?);
            }
            Ok(Value::Table(dir))
        })
        .collect()
}
