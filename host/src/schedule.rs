//! Cron text → a pure `next_after(instant)`.
//!
//! A [`Schedule`] is parsed once, at load, from the declaration's `schedule`
//! and `timezone`, and then answers one question without touching the clock:
//! "after this UTC instant, when is the next fire?". Cron expressions are
//! evaluated by `croner` in the job's IANA zone (never a fixed offset), with
//! its DST rules: a fixed-time fire whose local time does not exist runs at
//! the first valid instant after it, one whose local time occurs twice runs
//! once, and interval schedules (`*/15`) follow real elapsed time.
//! `@every DURATION` is ours: fires at whole multiples of the interval since
//! the Unix epoch, so it is stable across restarts and independent of zone.
//!
//! Field values are range-checked here before croner sees them, so that a
//! mistake reads `minute 61 is out of range 0-59` rather than croner's
//! positional wording.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::units;

/// A parsed schedule and the zone it is evaluated in.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    timezone: Tz,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron(Box<Cron>),
    Every(Duration),
}

/// Why a schedule's text was rejected; the message is complete on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

const MACROS: &[&str] = &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

impl Schedule {
    /// Parses `text` (5 or 6 fields, a macro, or `@every DURATION`) for `timezone`.
    pub fn parse(text: &str, timezone: Tz) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        let kind = if let Some(interval) = trimmed.strip_prefix("@every") {
            Kind::Every(parse_every(interval.trim())?)
        } else if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            if !MACROS.contains(&lower.as_str()) {
                return Err(ScheduleError(format!(
                    "unknown macro {trimmed:?}; use one of @yearly, @monthly, @weekly, @daily, @hourly or @every DURATION"
                )));
            }
            Kind::Cron(Box::new(cron_parser().parse(&lower).map_err(croner_error)?))
        } else {
            check_fields(trimmed)?;
            Kind::Cron(Box::new(cron_parser().parse(trimmed).map_err(croner_error)?))
        };
        Ok(Schedule { text: trimmed.to_owned(), timezone, kind })
    }

    /// The first fire strictly after `after`, or `None` if there is none
    /// before the year 5000 (for example `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(interval) => {
                let step = interval.as_millis() as i64;
                let now = after.timestamp_millis();
                let next = (now.div_euclid(step) + 1).checked_mul(step)?;
                Utc.timestamp_millis_opt(next).single()
            }
            Kind::Cron(cron) => {
                let local = after.with_timezone(&self.timezone);
                match cron.find_next_occurrence(&local, false) {
                    Ok(next) => Some(next.with_timezone(&Utc)),
                    Err(_) => self.across_long_gap(cron, after),
                }
            }
        }
    }

    /// The next `count` fires after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |t| self.next_after(*t)).take(count).collect()
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The schedule in English words (croner's description), e.g.
    /// "At 02:30, on Monday, Tuesday, Wednesday, Thursday, and Friday.", for
    /// people reading a list.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Every(interval) => format!("Every {}", units::format_duration(*interval)),
            Kind::Cron(cron) => cron.describe(),
        }
    }
}

impl Schedule {
    /// croner carries a fixed-time fire over a skipped range of at most two
    /// hours, and fails past that: Pacific/Apia skipped all of 30 December
    /// 2011, and a daily job there had no next fire at all. Here the fire
    /// runs at the first instant after the skip, as DESIGN.md says (if that
    /// day matches too, as croner checks), and the search goes on past it.
    fn across_long_gap(&self, cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (before, edge) = next_long_gap(self.timezone, after)?;
        let old = before.with_timezone(&self.timezone).offset().fix();
        let new = edge.with_timezone(&self.timezone).offset().fix();
        let skipped = (0..i64::from(new.local_minus_utc() - old.local_minus_utc()))
            .map(|s| (edge + chrono::Duration::seconds(s)).with_timezone(&old));
        let edge_local = edge.with_timezone(&new);
        let fires_at_edge = skipped.filter(|wall| cron.is_time_matching(wall).unwrap_or(false)).any(|wall| {
            let same_time = edge_local.date_naive().and_time(wall.time());
            same_time.and_local_timezone(new).single().is_some_and(|t| cron.is_time_matching(&t).unwrap_or(false))
        });
        if fires_at_edge && edge > after {
            return Some(edge);
        }
        let local = edge.with_timezone(&self.timezone);
        cron.find_next_occurrence(&local, true).ok().map(|next| next.with_timezone(&Utc))
    }
}

/// The next offset change after `after` (within a year) that skips more
/// than two hours: the last instant before it and the first after.
fn next_long_gap(zone: Tz, after: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let offset = |t: DateTime<Utc>| t.with_timezone(&zone).offset().fix().local_minus_utc();
    let mut t = after;
    let end = after + chrono::Duration::days(400);
    while t < end {
        let hour_later = t + chrono::Duration::hours(1);
        if offset(hour_later) - offset(t) > 2 * 3600 {
            let mut edge = t;
            while offset(edge) == offset(t) {
                edge += chrono::Duration::seconds(60);
            }
            return Some((edge - chrono::Duration::seconds(60), edge));
        }
        t = hour_later;
    }
    None
}

/// Equal when the text and the zone are: `kind` is parsed from the text.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.timezone == other.timezone
    }
}

impl Eq for Schedule {}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.text, self.timezone)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.timezone)
    }
}

/// Parses an IANA zone name, with a message that says what to write instead.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "{name:?} is not an IANA time zone; write a name such as \"UTC\", \"Europe/London\" or \"America/New_York\""
        )
    })
}

fn cron_parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build()
}

fn parse_every(text: &str) -> Result<Duration, ScheduleError> {
    let interval = units::parse_duration(text).map_err(|e| ScheduleError(format!("@every: {e}")))?;
    if interval < Duration::from_secs(1) {
        return Err(ScheduleError(format!("@every {text}: the shortest interval is 1s")));
    }
    Ok(interval)
}

fn croner_error(error: croner::errors::CronError) -> ScheduleError {
    ScheduleError(format!("{error}; write 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first)"))
}

/// Name and inclusive range of each field, for 5- and 6-field expressions.
const FIELDS_6: &[(&str, u32, u32)] = &[
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Checks field count and the numbers in each field; croner checks the rest.
fn check_fields(text: &str) -> Result<(), ScheduleError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let specs = match fields.len() {
        5 => &FIELDS_6[1..],
        6 => FIELDS_6,
        n => {
            return Err(ScheduleError(format!(
                "has {n} fields; write 5 (minute hour day-of-month month day-of-week), 6 (seconds first) or a macro such as @daily"
            )));
        }
    };
    for (field, &(name, low, high)) in fields.iter().zip(specs) {
        for part in field.split(',') {
            check_part(part, name, low, high)?;
        }
    }
    Ok(())
}

fn check_part(part: &str, name: &str, low: u32, high: u32) -> Result<(), ScheduleError> {
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (part, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(s) if s >= 1 && s <= high.max(1) => {}
            _ => {
                return Err(ScheduleError(format!(
                    "{name} step {step:?} in {part:?} must be a whole number from 1 to {}",
                    high.max(1)
                )));
            }
        }
    }
    let (range, nth) = match range.split_once('#') {
        Some((weekday, nth)) => (weekday, Some(nth)),
        None => (range, None),
    };
    if let Some(nth) = nth
        && !matches!(nth, "1" | "2" | "3" | "4" | "5" | "L")
    {
        return Err(ScheduleError(format!("{name} {part:?}: the n in #n must be 1 to 5 or L")));
    }
    for bound in range.split('-') {
        let number = bound.trim_end_matches(['L', 'W', 'l', 'w']);
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue; // `*`, `?`, `L`, names: croner's to judge
        }
        match number.parse::<u32>() {
            Ok(value) if (low..=high).contains(&value) => {}
            _ => {
                return Err(ScheduleError(format!("{name} {number} is out of range {low}-{high}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
