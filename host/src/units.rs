//! Human-friendly durations (`250ms`, `30s`, `5m`, `2h`, `1d`) and sizes
//! (`64MiB`, `1GiB`, `512KB`), as declarations and the CLI write them.
//!
//! Parsing is strict: a number, then one unit from the tables below, with no
//! space. Errors say what was expected so the caller can name the field.

use std::time::Duration;

pub(crate) const DURATION_UNITS: &[(&str, u64)] =
    &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];

pub(crate) const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Parses `250ms`, `30s`, `5m`, `2h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let millis = parse_with_units(text, DURATION_UNITS).ok_or_else(|| {
        format!("{text:?} is not a duration; write a whole number and a unit: ms, s, m, h or d (e.g. \"30s\")")
    })?;
    Ok(Duration::from_millis(millis))
}

/// Parses `4096B`, `64KiB`, `256MiB`, `1GiB` (or the decimal `KB`, `MB`, `GB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_with_units(text, SIZE_UNITS).ok_or_else(|| {
        format!(
            "{text:?} is not a size; write a whole number and a unit: B, KiB, MiB, GiB, KB, MB or GB (e.g. \"64MiB\")"
        )
    })
}

fn parse_with_units(text: &str, units: &[(&str, u64)]) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let scale = units.iter().find(|(name, _)| *name == unit)?.1;
    number.checked_mul(scale)
}

/// Formats a duration the way a declaration would write it.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis() as u64;
    DURATION_UNITS
        .iter()
        .rev()
        .find(|(_, scale)| millis >= *scale && millis.is_multiple_of(*scale))
        .map(|(unit, scale)| format!("{}{unit}", millis / scale))
        .unwrap_or_else(|| format!("{millis}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        for bad in ["", "5", "s", "5 s", "5sec", "-1s", "1.5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in ["", "64", "64mib", "64 MiB", "MiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["250ms", "30s", "5m", "2h", "1d", "90s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
