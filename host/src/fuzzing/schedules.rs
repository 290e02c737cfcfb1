//! Schedule targets: any cron text in any zone parses or fails with a
//! message, and a parsed schedule's fires only move forward; and the
//! differential property, `next_after(t)` against the brute-force
//! [`oracle`](super::oracle) for generated expressions, zones and start
//! times near DST transitions.

use arbitrary::{Result, Unstructured};
use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::oracle::{DomExtras, DowExtras, Field, Item, Pattern};
use crate::schedule::{Schedule, parse_timezone};

/// Zones with DST of every shape: an hour, 30 minutes (Lord Howe), two
/// hours (Troll), negative (Dublin), at midnight (Havana, Santiago,
/// Asuncion), a skipped day (Apia, 2011), none but an odd offset (Kathmandu).
pub const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "Asia/Kathmandu",
    "Asia/Tehran",
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "America/St_Johns",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Antarctica/Troll",
    "Africa/Casablanca",
];

/// Any text as a cron expression, in any zone: parsing never panics, a
/// rejection has a message, and a parsed schedule's fires strictly increase.
pub fn schedule_text(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(zone_pick) = input.arbitrary::<u8>() else { return };
    let Ok(start) = input.int_in_range(0i64..=4_102_444_800) else { return };
    let text = String::from_utf8_lossy(input.take_rest());
    let zone = parse_timezone(ZONES[zone_pick as usize % ZONES.len()]).expect("listed zones exist");
    // The zone name is input too: an unknown one is an error with a message.
    if let Err(message) = parse_timezone(&text) {
        assert!(!message.is_empty());
    }
    match Schedule::parse(&text, zone) {
        Err(error) => assert!(!error.to_string().is_empty(), "an empty message for {text:?}"),
        Ok(schedule) => {
            let _ = schedule.describe();
            let from = DateTime::from_timestamp(start, 0).expect("in range");
            let fires = schedule.upcoming(from, 3);
            let mut previous = from;
            for fire in fires {
                assert!(fire > previous, "{text:?} in {zone}: {fire} does not follow {previous}");
                previous = fire;
            }
        }
    }
}

/// How far the oracle walks; a fire it does not find must lie beyond.
const ORACLE_DAYS: i64 = 120;

/// The differential property: `next_after` equals the oracle's first fire.
pub fn schedule_oracle(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(case) = Case::generate(&mut input) else { return };
    case.check();
}

/// One generated comparison, shown whole when it fails.
#[derive(Debug)]
pub struct Case {
    pub pattern: Pattern,
    pub text: String,
    pub zone: Tz,
    pub from: DateTime<Utc>,
}

impl Case {
    pub fn generate(input: &mut Unstructured) -> Result<Case> {
        let pattern = pattern(input)?;
        let zone: Tz = ZONES[input.choose_index(ZONES.len())?].parse().expect("listed zones exist");
        let from = start_time(input, zone)?;
        Ok(Case { text: pattern.text(), pattern, zone, from })
    }

    pub fn check(&self) {
        let schedule = Schedule::parse(&self.text, self.zone)
            .unwrap_or_else(|e| panic!("a generated expression is valid: {:?}: {e}", self.text));
        let bound = self.from + chrono::Duration::days(ORACLE_DAYS);
        let expected = self.pattern.first_after(self.zone, self.from, bound);
        let got = schedule.next_after(self.from);
        match expected {
            Some(_) => assert_eq!(got, expected, "next_after disagrees with the oracle for {self:?}"),
            None => assert!(
                got.is_none_or(|got| got > bound),
                "next_after gives {got:?}, the oracle finds nothing up to {bound}, for {self:?}"
            ),
        }
    }
}

/// A start between 1995 and 2037, most of them within a day or two of one
/// of the zone's offset changes.
fn start_time(input: &mut Unstructured, zone: Tz) -> Result<DateTime<Utc>> {
    let year = input.int_in_range(1995i32..=2037)?;
    let year_start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap().timestamp();
    let transitions = transitions(zone, year_start, year_start + 366 * 86_400);
    let base = match transitions.len() {
        0 => year_start + input.int_in_range(0..=365 * 86_400)?,
        _ if input.ratio(1, 5)? => year_start + input.int_in_range(0..=365 * 86_400)?,
        n => transitions[input.choose_index(n)?] + input.int_in_range(-2 * 86_400..=86_400)?,
    };
    // Often on a whole minute or second boundary, where off-by-one bugs live.
    let jitter = match input.int_in_range(0u8..=2)? {
        0 => 0,
        1 => -1,
        _ => input.int_in_range(0..=59)?,
    };
    Ok(DateTime::from_timestamp(base.div_euclid(60) * 60 + jitter, 0).expect("in range"))
}

/// The instants in `[from, to)` where the zone's offset changes (to the hour
/// it is found in, then to the minute).
fn transitions(zone: Tz, from: i64, to: i64) -> Vec<i64> {
    let offset = |t: i64| {
        zone.offset_from_utc_datetime(&DateTime::from_timestamp(t, 0).unwrap().naive_utc()).fix().local_minus_utc()
    };
    let mut found = Vec::new();
    let mut t = from;
    while t < to {
        if offset(t) != offset(t + 3600) {
            let minute = (0..=60).map(|m| t + m * 60).find(|&m| offset(m) != offset(t)).unwrap_or(t);
            found.push(minute);
        }
        t += 3600;
    }
    found
}

fn pattern(input: &mut Unstructured) -> Result<Pattern> {
    let seconds = if input.ratio(1, 3)? { Some(field(input, 0, 59, 0.4)?) } else { None };
    let minutes = field(input, 0, 59, 0.3)?;
    let hours = field(input, 0, 23, 0.3)?;
    let dom = field(input, 1, 31, 0.6)?;
    let mut dom_extras = DomExtras::default();
    if input.ratio(1, 8)? {
        dom_extras.last = true;
    }
    if input.ratio(1, 8)? {
        dom_extras.nearest_weekday.push(input.int_in_range(1..=28)?);
    }
    let months = field(input, 1, 12, 0.6)?;
    let dow = field(input, 0, 7, 0.6)?;
    let mut dow_extras = DowExtras::default();
    if input.ratio(1, 8)? {
        dow_extras.nth.push((input.int_in_range(0..=6)?, input.int_in_range(1..=5)?));
    }
    if input.ratio(1, 10)? {
        dow_extras.last.push(input.int_in_range(0..=6)?);
    }
    let names = input.arbitrary()?;
    Ok(Pattern { seconds, minutes, hours, dom, dom_extras, months, dow, dow_extras, names })
}

/// A field over `low..=high`: `*` with probability `star`, else a list.
fn field(input: &mut Unstructured, low: u32, high: u32, star: f64) -> Result<Field> {
    if f64::from(input.arbitrary::<u8>()?) < star * 256.0 {
        return Ok(Field::Any);
    }
    let count = input.int_in_range(1..=3)?;
    let items = (0..count).map(|_| item(input, low, high)).collect::<Result<Vec<_>>>()?;
    Ok(Field::List(items))
}

fn item(input: &mut Unstructured, low: u32, high: u32) -> Result<Item> {
    // A step of 2 or more; at most the field's width.
    let step = |input: &mut Unstructured| input.int_in_range(2..=(high - low).max(2));
    Ok(match input.int_in_range(0u8..=5)? {
        0..=2 => Item::Value(input.int_in_range(low..=high)?),
        3 => {
            let a = input.int_in_range(low..=high)?;
            Item::Range(a, input.int_in_range(a..=high)?)
        }
        4 => Item::Step { start: low, end: high, step: step(input)?, from_star: true },
        _ => {
            let start = input.int_in_range(low..=high)?;
            let end = input.int_in_range(start..=high)?;
            Item::Step { start, end, step: step(input)?, from_star: false }
        }
    })
}
