//! The short run of every fuzz target, in `cargo test`: each committed
//! corpus and regression input replayed, then a few seconds of new input
//! from a seeded generator (not coverage-guided: `fuzz/run-long` is). Set
//! `WASMCRON_FUZZ_SEED` to replay a printed seed, `WASMCRON_FUZZ_SECONDS`
//! to run longer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;

use super::TARGETS;
use super::schedules::Case;

/// New inputs per target, at most (and `budget()` of time).
const MAX_NEW_INPUTS: u32 = 20_000;

fn budget() -> Duration {
    let seconds = std::env::var("WASMCRON_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

/// splitmix64: small, seeded, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn seeded(target: &str) -> Rng {
        let seed = std::env::var("WASMCRON_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("{target}: WASMCRON_FUZZ_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() % (max as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`.
fn committed_inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { continue };
        files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

fn short_run(name: &str, max_len: usize) {
    let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).expect("a listed target");
    let files = committed_inputs(name);
    assert!(!files.is_empty(), "no corpus for {name} in {}", fuzz_dir().display());
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        eprintln!("{name}: replaying {}", file.display());
        target(&bytes);
    }
    let mut rng = Rng::seeded(name);
    let started = Instant::now();
    let mut count = 0;
    while count < MAX_NEW_INPUTS && started.elapsed() < budget() {
        target(&rng.bytes(max_len));
        count += 1;
    }
    eprintln!("{name}: {} committed inputs, {count} new in {:?}", files.len(), started.elapsed());
}

#[test]
fn declaration_text() {
    short_run("declaration_text", 512);
}

#[test]
fn declaration_structured() {
    short_run("declaration_structured", 512);
}

#[test]
fn schedule_text() {
    short_run("schedule_text", 128);
}

#[test]
fn schedule_oracle() {
    short_run("schedule_oracle", 256);
}

#[test]
fn units() {
    short_run("units", 64);
}

#[test]
fn api_request() {
    short_run("api_request", 512);
}

#[test]
fn sandbox_runs_end_typed_and_memory_stays_bounded() {
    let before = super::resident_kib();
    short_run("sandbox", 8192);
    if let (Some((before, _)), Some((after, peak))) = (before, super::resident_kib()) {
        eprintln!("sandbox: {}", super::sandbox_tally());
        eprintln!("sandbox: resident {before} KiB before, {after} KiB after, peak {peak} KiB");
        // Other tests share this process; the bound is loose, the growth
        // of a leak per run would not be.
        assert!(after.saturating_sub(before) < 512 << 10, "resident set grew from {before} to {after} KiB");
    }
}

/// The differential property on many more cases than the short run's
/// random bytes give, from the same generator.
#[test]
fn next_after_matches_the_brute_force_oracle() {
    let mut rng = Rng::seeded("next_after_matches_the_brute_force_oracle");
    let started = Instant::now();
    let mut checked = 0;
    while checked < 2_000 && started.elapsed() < budget() {
        let bytes = rng.bytes(256);
        if let Ok(case) = Case::generate(&mut Unstructured::new(&bytes)) {
            case.check();
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} cases in {:?}", started.elapsed());
}

/// The oracle itself, on fires the schedule tests pin from DESIGN.md.
#[test]
fn the_oracle_agrees_with_the_pinned_dst_fires() {
    use super::oracle::{DomExtras, DowExtras, Field, Item, Pattern};
    use chrono::{DateTime, Utc};
    let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
    let daily = |minute, hour| Pattern {
        seconds: None,
        minutes: Field::List(vec![Item::Value(minute)]),
        hours: Field::List(vec![Item::Value(hour)]),
        dom: Field::Any,
        dom_extras: DomExtras::default(),
        months: Field::Any,
        dow: Field::Any,
        dow_extras: DowExtras::default(),
        names: false,
    };
    let every_half_hour = Pattern {
        minutes: Field::List(vec![Item::Step { start: 0, end: 59, step: 30, from_star: true }]),
        hours: Field::Any,
        ..daily(0, 0)
    };
    let new_york: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let first =
        |pattern: &Pattern, from: &str| pattern.first_after(new_york, at(from), at(from) + chrono::Duration::days(3));
    // Spring forward: 02:30 does not exist, the fire is at 03:00 EDT.
    assert_eq!(first(&daily(30, 2), "2026-03-07T12:00:00Z"), Some(at("2026-03-08T07:00:00Z")));
    // Fall back: 01:30 happens twice and fires once, at the first.
    assert_eq!(first(&daily(30, 1), "2026-11-01T05:30:00Z"), Some(at("2026-11-02T06:30:00Z")));
    // Intervals fire in both halves of the repeated hour.
    assert_eq!(first(&every_half_hour, "2026-11-01T05:30:00Z"), Some(at("2026-11-01T06:00:00Z")));
    assert_eq!(first(&every_half_hour, "2026-11-01T06:00:00Z"), Some(at("2026-11-01T06:30:00Z")));
    assert_eq!(every_half_hour.text(), "*/30 * * * *");
}

/// The oracle against `next_after` at the rarest transitions in the zone
/// list, where random starts seldom land: a 30-minute shift (Lord Howe),
/// a two-hour one (Troll), midnight gaps (Havana, Santiago) and a whole
/// skipped day (Apia, 30 December 2011), for fixed-time and interval
/// schedules alike.
#[test]
fn next_after_matches_the_oracle_at_rare_transitions() {
    use super::oracle::{DomExtras, DowExtras, Field, Item, Pattern};
    use chrono::{DateTime, Utc};
    let starts = [
        ("Australia/Lord_Howe", "2026-10-03T14:00:00Z"),
        ("Australia/Lord_Howe", "2026-04-04T13:00:00Z"),
        ("Antarctica/Troll", "2026-03-28T23:00:00Z"),
        ("Antarctica/Troll", "2026-10-24T23:00:00Z"),
        ("America/Havana", "2026-03-07T12:00:00Z"),
        ("America/Santiago", "2019-09-07T12:00:00Z"),
        ("America/Santiago", "2019-04-06T12:00:00Z"),
        ("Pacific/Apia", "2011-12-29T00:00:00Z"),
        ("Pacific/Apia", "2011-12-29T10:00:00Z"),
    ];
    let one = |v| Field::List(vec![Item::Value(v)]);
    let every = |step, high| Field::List(vec![Item::Step { start: 0, end: high, step, from_star: true }]);
    let pattern = |minutes, hours| Pattern {
        seconds: None,
        minutes,
        hours,
        dom: Field::Any,
        dom_extras: DomExtras::default(),
        months: Field::Any,
        dow: Field::Any,
        dow_extras: DowExtras::default(),
        names: false,
    };
    let patterns = [
        pattern(one(30), one(2)),
        pattern(one(15), one(2)),
        pattern(one(30), one(0)),
        pattern(one(0), one(0)),
        pattern(one(30), one(1)),
        pattern(every(20, 59), Field::Any),
        pattern(one(0), every(2, 23)),
    ];
    for (zone, start) in starts {
        for pattern in &patterns {
            let from = DateTime::parse_from_rfc3339(start).unwrap().with_timezone(&Utc);
            for minutes in [0, 29, 59, 60 * 11, 60 * 23] {
                let case = Case {
                    text: pattern.text(),
                    pattern: pattern.clone(),
                    zone: zone.parse().unwrap(),
                    from: from + chrono::Duration::minutes(minutes),
                };
                case.check();
            }
        }
    }
}
