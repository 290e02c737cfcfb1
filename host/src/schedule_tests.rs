//! Table tests for `Schedule::next_after`: DST edges in two zones, cron
//! dialect details, macros and `@every`, and the error wording.

use super::*;
use chrono::SecondsFormat;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn zone(name: &str) -> Tz {
    parse_timezone(name).unwrap()
}

/// Asserts the fires after `from` are exactly `expected` (RFC 3339, UTC).
fn assert_fires(expr: &str, tz: &str, from: &str, expected: &[&str]) {
    let schedule = Schedule::parse(expr, zone(tz)).unwrap();
    let got: Vec<String> = schedule
        .upcoming(utc(from), expected.len())
        .iter()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect();
    assert_eq!(got, expected, "{expr:?} in {tz} after {from}");
}

// America/New_York 2026: clocks go 02:00 EST → 03:00 EDT on 8 March and
// 02:00 EDT → 01:00 EST on 1 November.
#[test]
fn new_york_spring_forward_fixed_time_runs_at_first_valid_instant() {
    // 02:30 does not exist on 8 March: the fire moves to 03:00 EDT (07:00Z).
    assert_fires(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    );
}

#[test]
fn new_york_fall_back_fixed_time_runs_once() {
    // 01:30 happens twice on 1 November (EDT, then EST): one fire, at the first.
    assert_fires(
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00:00Z",
        &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    );
}

#[test]
fn new_york_intervals_follow_elapsed_time() {
    assert_fires(
        "*/30 * * * *",
        "America/New_York",
        "2026-03-08T06:10:00Z",
        &["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"],
    );
    // Both 01:xx hours of 1 November are fired, thirty real minutes apart.
    assert_fires(
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T04:50:00Z",
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    );
}

// Europe/London 2026: 01:00 GMT → 02:00 BST on 29 March, 02:00 BST → 01:00 GMT
// on 25 October.
#[test]
fn london_spring_forward_fixed_time_runs_at_first_valid_instant() {
    assert_fires(
        "0 30 1 * * *",
        "Europe/London",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    );
}

#[test]
fn london_fall_back_fixed_time_runs_once() {
    assert_fires(
        "30 1 * * *",
        "Europe/London",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    );
}

#[test]
fn london_intervals_follow_elapsed_time() {
    assert_fires(
        "0 * * * *",
        "Europe/London",
        "2026-10-24T23:30:00Z",
        &["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"],
    );
    assert_fires(
        "0 * * * *",
        "Europe/London",
        "2026-03-28T23:30:00Z",
        &["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"],
    );
}

#[test]
fn zone_is_not_a_fixed_offset() {
    // 09:00 London is 09:00Z in winter and 08:00Z in summer.
    assert_fires(
        "0 9 * * *",
        "Europe/London",
        "2026-03-27T12:00:00Z",
        &["2026-03-28T09:00:00Z", "2026-03-29T08:00:00Z"],
    );
}

#[test]
fn day_of_month_or_day_of_week() {
    // The 10th, or any Friday (as crontab: either field matching is enough).
    assert_fires(
        "0 0 10 * 5",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-06T00:00:00Z", "2026-11-10T00:00:00Z", "2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z"],
    );
}

#[test]
fn sunday_is_zero_and_seven() {
    for expr in ["0 12 * * 0", "0 12 * * 7", "0 12 * * SUN"] {
        assert_fires(expr, "UTC", "2026-11-24T00:00:00Z", &["2026-11-29T12:00:00Z", "2026-12-06T12:00:00Z"]);
    }
    // Monday to Friday, as in DESIGN.md's example.
    assert_fires(
        "0 30 2 * * Mon-Fri",
        "UTC",
        "2026-11-27T12:00:00Z",
        &["2026-11-30T02:30:00Z", "2026-12-01T02:30:00Z"],
    );
}

#[test]
fn last_weekday_and_nth() {
    assert_fires("0 0 L * *", "UTC", "2026-11-24T00:00:00Z", &["2026-11-30T00:00:00Z", "2026-12-31T00:00:00Z"]);
    // 15 November 2026 is a Sunday: the nearest weekday is Monday the 16th.
    assert_fires("0 0 15W * *", "UTC", "2026-11-01T00:00:00Z", &["2026-11-16T00:00:00Z"]);
    // The second Monday of December 2026.
    assert_fires("0 0 * * 1#2", "UTC", "2026-11-24T00:00:00Z", &["2026-12-14T00:00:00Z"]);
}

#[test]
fn seconds_field_and_macros() {
    assert_fires("*/10 * * * * *", "UTC", "2026-11-24T12:00:05Z", &["2026-11-24T12:00:10Z", "2026-11-24T12:00:20Z"]);
    assert_fires("@hourly", "UTC", "2026-11-24T12:00:00Z", &["2026-11-24T13:00:00Z"]);
    assert_fires("@daily", "Europe/London", "2026-06-01T12:00:00Z", &["2026-06-01T23:00:00Z"]);
    assert_fires("@weekly", "UTC", "2026-11-24T12:00:00Z", &["2026-11-29T00:00:00Z"]);
    assert_fires("@monthly", "UTC", "2026-11-24T12:00:00Z", &["2026-12-01T00:00:00Z"]);
    assert_fires("@yearly", "UTC", "2026-11-24T12:00:00Z", &["2027-01-01T00:00:00Z"]);
}

#[test]
fn every_is_aligned_to_the_epoch() {
    assert_fires(
        "@every 30s",
        "America/New_York",
        "2026-11-24T12:00:05Z",
        &["2026-11-24T12:00:30Z", "2026-11-24T12:01:00Z"],
    );
    assert_fires("@every 1s", "UTC", "2026-11-24T12:00:00Z", &["2026-11-24T12:00:01Z"]);
    assert_fires("@every 2h", "UTC", "2026-11-24T13:00:00Z", &["2026-11-24T14:00:00Z"]);
}

#[test]
fn impossible_dates_have_no_next_fire() {
    let schedule = Schedule::parse("0 0 30 2 *", zone("UTC")).unwrap();
    assert_eq!(schedule.next_after(utc("2026-01-01T00:00:00Z")), None);
}

#[test]
fn errors_name_the_field_and_the_range() {
    let cases = [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 1 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("60 0 0 * * *", "second 60 is out of range 0-59"),
        ("*/0 * * * *", "minute step \"0\" in \"*/0\" must be a whole number from 1 to 59"),
        ("* * *", "has 3 fields"),
        ("0 0 0 0 * * *", "has 7 fields"),
        ("@fortnightly", "unknown macro \"@fortnightly\""),
        ("@every 0s", "the shortest interval is 1s"),
        ("@every soon", "\"soon\" is not a duration"),
        ("0 0 * * 1#6", "the n in #n must be 1 to 5"),
    ];
    for (expr, expected) in cases {
        let error = Schedule::parse(expr, zone("UTC")).unwrap_err().to_string();
        assert!(error.contains(expected), "{expr:?}: got {error:?}, want {expected:?}");
    }
    // Whatever croner rejects still gets a message, with the fix.
    let error = Schedule::parse("0 0 * * FOO", zone("UTC")).unwrap_err().to_string();
    assert!(error.contains("write 5 fields"), "{error}");
}

#[test]
fn unknown_zone_says_what_to_write() {
    let error = parse_timezone("Mars/Olympus").unwrap_err();
    assert!(error.contains("\"Mars/Olympus\" is not an IANA time zone"), "{error}");
}

#[test]
fn schedules_describe_themselves_in_words() {
    let words = |text: &str| Schedule::parse(text, chrono_tz::UTC).unwrap().describe();
    assert_eq!(words("@every 90s"), "Every 90s");
    for (text, expect) in [("30 2 * * 1-5", "02:30"), ("0 */15 * * * *", "15"), ("@daily", "00:00")] {
        let described = words(text);
        assert!(described.contains(expect), "{text:?} described as {described:?}");
    }
}

// Pacific/Apia skipped 30 December 2011 (UTC-10 to UTC+14): croner gives up
// on a fixed-time fire more than two hours into a skip, and `next_after`
// returned None, so the job would never have fired again. Found by the
// fuzzing oracle (`fuzzing::tests::next_after_matches_the_oracle_at_rare_transitions`).
#[test]
fn apia_skipped_day_fixed_time_runs_at_first_valid_instant() {
    // 02:30 on the 30th never happened: the fire is at 00:00 on the 31st.
    assert_fires(
        "30 2 * * *",
        "Pacific/Apia",
        "2011-12-29T23:00:00Z",
        &["2011-12-30T10:00:00Z", "2011-12-30T12:30:00Z", "2011-12-31T12:30:00Z"],
    );
    // A fire only on the skipped day's date waits for its next month.
    assert_fires("30 2 30 * *", "Pacific/Apia", "2011-12-29T23:00:00Z", &["2012-01-29T12:30:00Z"]);
}
