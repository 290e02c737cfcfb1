//! Durations and sizes as declarations, the CLI and the API write them:
//! any text parses or is refused with a message; a number with a unit
//! parses to exactly its value unless that overflows; a parsed duration
//! formats back to text that parses to it again.

use std::time::Duration;

use arbitrary::Unstructured;

use crate::units::{DURATION_UNITS, SIZE_UNITS, format_duration, parse_duration, parse_size};

pub fn units(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let (Ok(number), Ok(unit), Ok(size)) =
        (input.arbitrary::<u64>(), input.arbitrary::<u8>(), input.arbitrary::<bool>())
    else {
        return;
    };
    let text = String::from_utf8_lossy(input.take_rest());
    for parsed in [parse_duration(&text).map(|d| d.as_millis() as u64), parse_size(&text)] {
        if let Err(message) = parsed {
            assert!(message.contains(&format!("{text:?}")), "{message:?} does not quote {text:?}");
        }
    }
    if let Ok(duration) = parse_duration(&text) {
        assert_eq!(parse_duration(&format_duration(duration)), Ok(duration), "{text:?}");
    }
    if size {
        let (name, scale) = SIZE_UNITS[unit as usize % SIZE_UNITS.len()];
        assert_eq!(parse_size(&format!("{number}{name}")).ok(), number.checked_mul(scale), "{number}{name}");
    } else {
        let (name, scale) = DURATION_UNITS[unit as usize % DURATION_UNITS.len()];
        let expected = number.checked_mul(scale).map(Duration::from_millis);
        assert_eq!(parse_duration(&format!("{number}{name}")).ok(), expected, "{number}{name}");
    }
}
