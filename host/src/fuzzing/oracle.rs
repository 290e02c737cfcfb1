//! The brute-force cron matcher that `Schedule::next_after` is checked
//! against: written from DESIGN.md's rules, sharing no code with `schedule`
//! or croner.
//!
//! A [`Pattern`] is generated as values (sets of seconds, minutes, …), and
//! printed as cron text for the real parser; [`Pattern::first_after`] walks
//! the UTC time line minute by minute from `t`, looking at the job zone's
//! wall clock at each instant:
//! - a wall clock time the pattern matches fires (so an interval schedule
//!   fires in both halves of a repeated hour: it follows elapsed time);
//! - a fixed-time schedule fires only at the earlier instant of a wall
//!   clock time that occurs twice (fall back: once);
//! - a fixed-time schedule whose wall clock time falls in a skipped range
//!   (spring forward) fires at the first instant after the skip, if that
//!   instant's date still matches the day fields.
//!
//! "Fixed-time" is read as croner reads it, the reading the schedule tests
//! pin for `30 1 * * *` and `*/30 * * * *`: second, minute and hour each
//! name exactly one value, with no `*` and no step. A list such as
//! `0,30 1 * * *` is an interval schedule by that reading (DESIGN.md does
//! not say; see `fuzz/README.md`).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// One comma-separated part of a field.
#[derive(Debug, Clone)]
pub enum Item {
    Value(u32),
    Range(u32, u32),
    /// `*/n` (`from_star`) or `a-b/n` (croner refuses `a/n`).
    Step {
        start: u32,
        end: u32,
        step: u32,
        from_star: bool,
    },
}

/// A field: `*`, or a list of items.
#[derive(Debug, Clone)]
pub enum Field {
    Any,
    List(Vec<Item>),
}

/// Day-of-month extras: `L` and `nW`.
#[derive(Debug, Clone, Default)]
pub struct DomExtras {
    pub last: bool,
    pub nearest_weekday: Vec<u32>,
}

/// Day-of-week extras: `d#n` and `dL`.
#[derive(Debug, Clone, Default)]
pub struct DowExtras {
    pub nth: Vec<(u32, u32)>,
    pub last: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Pattern {
    /// `None` for a 5-field expression (second 0).
    pub seconds: Option<Field>,
    pub minutes: Field,
    pub hours: Field,
    pub dom: Field,
    pub dom_extras: DomExtras,
    pub months: Field,
    pub dow: Field,
    pub dow_extras: DowExtras,
    /// Print months and weekdays as names where they can be.
    pub names: bool,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

impl Field {
    fn values(&self, low: u32, high: u32) -> u64 {
        match self {
            Field::Any => (low..=high).fold(0, |set, v| set | 1 << v),
            Field::List(items) => items.iter().fold(0, |set, item| set | item.values()),
        }
    }

    fn has_step_or_star(&self) -> bool {
        match self {
            Field::Any => true,
            Field::List(items) => items.iter().any(|item| matches!(item, Item::Step { .. })),
        }
    }

    fn text(&self, name: &dyn Fn(u32) -> String) -> String {
        match self {
            Field::Any => "*".to_owned(),
            Field::List(items) => items.iter().map(|item| item.text(name)).collect::<Vec<_>>().join(","),
        }
    }
}

impl Item {
    fn values(&self) -> u64 {
        match *self {
            Item::Value(v) => 1 << v,
            Item::Range(a, b) => (a..=b).fold(0, |set, v| set | 1 << v),
            Item::Step { start, end, step, .. } => (start..=end).step_by(step as usize).fold(0, |set, v| set | 1 << v),
        }
    }

    fn text(&self, name: &dyn Fn(u32) -> String) -> String {
        match *self {
            Item::Value(v) => name(v),
            // Names only for single values: `MON-SUN` would read as 1-0.
            Item::Range(a, b) => format!("{a}-{b}"),
            Item::Step { from_star: true, step, .. } => format!("*/{step}"),
            Item::Step { start, end, step, .. } => format!("{start}-{end}/{step}"),
        }
    }
}

impl Pattern {
    /// The cron text the real parser is given.
    pub fn text(&self) -> String {
        let number = |v: u32| v.to_string();
        let month = |v: u32| if self.names { MONTHS[v as usize - 1].to_owned() } else { v.to_string() };
        let day = |v: u32| if self.names { DAYS[v as usize].to_owned() } else { v.to_string() };
        let mut dom = match (&self.dom, self.dom_extras.last || !self.dom_extras.nearest_weekday.is_empty()) {
            (Field::Any, true) => Vec::new(),
            (field, _) => vec![field.text(&number)],
        };
        dom.extend(self.dom_extras.last.then(|| "L".to_owned()));
        dom.extend(self.dom_extras.nearest_weekday.iter().map(|d| format!("{d}W")));
        let extra_dow = !self.dow_extras.nth.is_empty() || !self.dow_extras.last.is_empty();
        let mut dow = match (&self.dow, extra_dow) {
            (Field::Any, true) => Vec::new(),
            (field, _) => vec![field.text(&day)],
        };
        dow.extend(self.dow_extras.nth.iter().map(|(d, n)| format!("{d}#{n}")));
        dow.extend(self.dow_extras.last.iter().map(|d| format!("{d}L")));
        let mut fields: Vec<String> = self.seconds.iter().map(|s| s.text(&number)).collect();
        fields.extend([
            self.minutes.text(&number),
            self.hours.text(&number),
            dom.join(","),
            self.months.text(&month),
            dow.join(","),
        ]);
        fields.join(" ")
    }

    fn star_dom(&self) -> bool {
        matches!(self.dom, Field::Any) && !self.dom_extras.last && self.dom_extras.nearest_weekday.is_empty()
    }

    fn star_dow(&self) -> bool {
        matches!(self.dow, Field::Any) && self.dow_extras.nth.is_empty() && self.dow_extras.last.is_empty()
    }

    /// Second, minute and hour each one value, with no `*` and no step.
    pub fn fixed_time(&self) -> bool {
        let one = |field: &Field, low, high| !field.has_step_or_star() && field.values(low, high).count_ones() == 1;
        self.seconds.as_ref().is_none_or(|s| one(s, 0, 59)) && one(&self.minutes, 0, 59) && one(&self.hours, 0, 23)
    }

    fn second_set(&self) -> u64 {
        self.seconds.as_ref().map_or(1, |s| s.values(0, 59))
    }

    /// Whether the date matches the day-of-month, month and day-of-week
    /// fields (day-of-month or day-of-week when both are restricted, as
    /// crontab does).
    pub fn date_matches(&self, date: NaiveDate) -> bool {
        if self.months.values(1, 12) & 1 << date.month() == 0 {
            return false;
        }
        let length = days_in_month(date.year(), date.month());
        let day = date.day();
        // `*` beside `L`, `W` or `#` is not printed: it adds no days.
        let plain = |field: &Field, star: bool, low, high| if star { 0 } else { field.values(low, high) };
        let dom_any_printed = self.dom_extras.last || !self.dom_extras.nearest_weekday.is_empty();
        let dom = plain(&self.dom, dom_any_printed && matches!(self.dom, Field::Any), 1, 31) & 1 << day != 0
            || (self.dom_extras.last && day == length)
            || self.dom_extras.nearest_weekday.iter().any(|&n| nearest_weekday(date.year(), date.month(), n) == day);
        let weekday = date.weekday().num_days_from_sunday();
        let dow_any_printed = !self.dow_extras.nth.is_empty() || !self.dow_extras.last.is_empty();
        let dow_set = plain(&self.dow, dow_any_printed && matches!(self.dow, Field::Any), 0, 7);
        let dow = dow_set & 1 << weekday != 0
            || (weekday == 0 && dow_set & 1 << 7 != 0)
            || self.dow_extras.nth.iter().any(|&(d, n)| d % 7 == weekday && (day - 1) / 7 + 1 == n)
            || self.dow_extras.last.iter().any(|&d| d % 7 == weekday && day + 7 > length);
        match (self.star_dom(), self.star_dow()) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// Whether the wall clock time (to the minute) matches, ignoring seconds.
    fn minute_matches(&self, wall: NaiveDateTime) -> bool {
        self.hours.values(0, 23) & 1 << wall.hour() != 0
            && self.minutes.values(0, 59) & 1 << wall.minute() != 0
            && self.date_matches(wall.date())
    }

    /// The first fire strictly after `t` and no later than `bound`, found by
    /// walking every minute (and, in a matching minute, every second).
    pub fn first_after(&self, zone: Tz, t: DateTime<Utc>, bound: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let fixed = self.fixed_time();
        let seconds = self.second_set();
        let start = t.timestamp() + 1;
        let mut minute = start.div_euclid(60) * 60;
        let mut previous_offset = offset_at(zone, minute - 60);
        while minute <= bound.timestamp() {
            let offset = offset_at(zone, minute);
            let wall = naive(minute + offset);
            if fixed && offset > previous_offset && minute >= start {
                // Spring forward at `minute`: wall clock times from
                // `minute + previous_offset` up to `wall` never happen.
                let hit = (minute + previous_offset..minute + offset)
                    .any(|s| seconds & 1 << naive(s).second() != 0 && self.minute_matches(naive(s)));
                if hit && self.date_matches(wall.date()) {
                    return utc(minute);
                }
            }
            if self.minute_matches(wall) {
                for second in 0..60 {
                    let instant = minute + second;
                    if instant < start || seconds & 1 << second == 0 {
                        continue;
                    }
                    let local = naive(instant + offset);
                    // A fixed-time fire runs at the earlier of a repeated time only.
                    if fixed && zone.from_local_datetime(&local).earliest().map(|e| e.timestamp()) != Some(instant) {
                        continue;
                    }
                    return utc(instant);
                }
            }
            previous_offset = offset;
            minute += 60;
        }
        None
    }
}

fn offset_at(zone: Tz, unix: i64) -> i64 {
    let instant = DateTime::from_timestamp(unix, 0).expect("in range");
    i64::from(zone.offset_from_utc_datetime(&instant.naive_utc()).fix().local_minus_utc())
}

fn naive(unix: i64) -> NaiveDateTime {
    DateTime::from_timestamp(unix, 0).expect("in range").naive_utc()
}

fn utc(unix: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(unix, 0)
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    let next =
        if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    next.expect("valid").pred_opt().expect("valid").day()
}

/// `nW`: the weekday nearest day `n`, never leaving the month.
fn nearest_weekday(year: i32, month: u32, n: u32) -> u32 {
    let length = days_in_month(year, month);
    let Some(date) = NaiveDate::from_ymd_opt(year, month, n) else { return 0 };
    match date.weekday().num_days_from_sunday() {
        6 if n == 1 => 3,
        6 => n - 1,
        0 if n == length => n - 2,
        0 => n + 1,
        _ => n.min(length),
    }
}
