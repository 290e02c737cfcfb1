//! Redaction of secret values from what a run leaves behind: its captured
//! stdout and stderr, its error message, its job-world log lines. Every
//! exact occurrence of a value is replaced by `[REDACTED:NAME]`.
//!
//! Output arrives in writes of any size, so a value may straddle two of
//! them. [`RedactStream`] holds back the last `longest - 1` bytes of each
//! write — the most a value can have begun in and not yet ended — and
//! decides them with the next write or at [`RedactStream::finish`]. What it
//! returns is final and identical to redacting the whole stream at once
//! (leftmost-longest, non-overlapping).
//!
//! Limits, documented for users: only the exact bytes are caught — not the
//! value base64- or URL-encoded, escaped, reversed or split by the guest
//! itself; and values shorter than [`MIN_REDACTED_LEN`] are not redacted.

use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// Values shorter than this are left alone. Replacing every "1" or "ab" in a
/// run's output would mangle ordinary text, and the pattern of the
/// replacements would itself disclose the value (each marker shows where
/// its bytes occur), so redaction would cost the logs without protecting
/// the secret.
pub const MIN_REDACTED_LEN: usize = 4;

/// The values of one run's secrets and what replaces each.
pub struct Redactor {
    matcher: AhoCorasick,
    markers: Vec<Vec<u8>>,
    longest: usize,
}

/// Never shows the values: only how many there are.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("values", &self.markers.len()).finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor for `(name, value)` pairs; `None` when no value is at
    /// least [`MIN_REDACTED_LEN`] bytes long, as there is nothing to do.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<Self> {
        let mut values: Vec<&[u8]> = Vec::new();
        let mut markers = Vec::new();
        for (name, value) in secrets {
            if value.len() >= MIN_REDACTED_LEN && !values.contains(&value) {
                values.push(value);
                markers.push(format!("[REDACTED:{name}]").into_bytes());
            }
        }
        if values.is_empty() {
            return None;
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&values)
            .expect("a handful of literal byte strings always builds");
        let longest = values.iter().map(|v| v.len()).max().unwrap_or(0);
        Some(Redactor { matcher, markers, longest })
    }

    /// `bytes` with every value replaced.
    pub fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        self.scan(bytes, bytes.len(), &mut out);
        out
    }

    /// `text` with every value replaced.
    pub fn redact_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }

    /// A stream redactor for one captured stream.
    pub fn stream(self: &Arc<Self>) -> RedactStream {
        RedactStream { redactor: self.clone(), held: Vec::new() }
    }

    /// Appends `buffer[..]` to `out`, redacted, up to the first position at
    /// or past `boundary` that no match covers; returns that position. A
    /// match is taken only if it starts before `boundary`: callers choose
    /// `boundary` so that every value starting before it ends in `buffer`.
    fn scan(&self, buffer: &[u8], boundary: usize, out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        for found in self.matcher.find_iter(buffer) {
            if found.start() >= boundary {
                break;
            }
            out.extend_from_slice(&buffer[at..found.start()]);
            out.extend_from_slice(&self.markers[found.pattern().as_usize()]);
            at = found.end();
        }
        let resume = at.max(boundary);
        out.extend_from_slice(&buffer[at..resume]);
        resume
    }
}

/// Redacts one stream written in pieces; see the module header.
pub struct RedactStream {
    redactor: Arc<Redactor>,
    /// Bytes not yet decided: fewer than the longest value.
    held: Vec<u8>,
}

impl fmt::Debug for RedactStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactStream").field("held_bytes", &self.held.len()).finish_non_exhaustive()
    }
}

impl RedactStream {
    /// Takes the next write; returns what of the stream so far is final.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.held);
        buffer.extend_from_slice(bytes);
        // A value starting before `boundary` ends inside `buffer`, so the
        // longest match there is already known.
        let boundary = buffer.len().saturating_sub(self.redactor.longest - 1);
        let mut out = Vec::with_capacity(buffer.len());
        let resume = self.redactor.scan(&buffer, boundary, &mut out);
        buffer.drain(..resume);
        self.held = buffer;
        out
    }

    /// The end of the stream: what was held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.redactor.redact(&held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[(&str, &str)]) -> Arc<Redactor> {
        Arc::new(Redactor::new(secrets.iter().map(|(n, v)| (*n, v.as_bytes()))).unwrap())
    }

    fn streamed(redactor: &Arc<Redactor>, pieces: &[&[u8]]) -> Vec<u8> {
        let mut stream = redactor.stream();
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(stream.push(piece));
            assert!(stream.held.len() < redactor.longest, "holds back less than the longest value");
        }
        out.extend(stream.finish());
        out
    }

    #[test]
    fn every_occurrence_is_replaced_by_its_name() {
        let r = redactor(&[("TOKEN", "s3cr3t-token"), ("PASS", "hunter2")]);
        assert_eq!(
            r.redact_str("token=s3cr3t-token pass=hunter2 again s3cr3t-token."),
            "token=[REDACTED:TOKEN] pass=[REDACTED:PASS] again [REDACTED:TOKEN]."
        );
        assert_eq!(r.redact_str("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_not_redacted_and_alone_give_no_redactor() {
        assert!(Redactor::new([("PIN", b"123".as_slice())]).is_none());
        let r = Redactor::new([("PIN", b"123".as_slice()), ("KEY", b"abcd".as_slice())]).unwrap();
        assert_eq!(r.redact(b"123 abcd"), b"123 [REDACTED:KEY]");
    }

    #[test]
    fn the_longest_of_overlapping_values_wins() {
        let r = redactor(&[("SHORT", "abcd"), ("LONG", "abcdefgh")]);
        assert_eq!(r.redact_str("xabcdefghx abcdx"), "x[REDACTED:LONG]x [REDACTED:SHORT]x");
        // Streamed with the longer one cut after its shorter prefix: the
        // stream must wait rather than commit to the shorter value.
        assert_eq!(streamed(&r, &[b"xabcd", b"efghx"]), b"x[REDACTED:LONG]x");
        assert_eq!(streamed(&r, &[b"xabcd", b"efx"]), b"x[REDACTED:SHORT]efx");
    }

    #[test]
    fn a_value_split_at_every_point_across_two_writes_is_redacted() {
        let r = redactor(&[("TOKEN", "s3cr3t-token")]);
        let text = b"before s3cr3t-token after";
        let expected = b"before [REDACTED:TOKEN] after".to_vec();
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(streamed(&r, &[a, b]), expected, "split at {split}");
        }
    }

    #[test]
    fn any_cutting_into_pieces_gives_what_redacting_the_whole_does() {
        // Property-style: texts built from values, their prefixes and noise,
        // cut into pieces at pseudo-random points (a fixed xorshift seed,
        // so a failure repeats), streamed and compared with the whole.
        let r = redactor(&[("A", "abcab"), ("B", "bcabx"), ("C", "zzzz"), ("D", "abcabcab")]);
        let atoms: [&[u8]; 9] = [b"abcab", b"bcabx", b"zzzz", b"abcabcab", b"ab", b"abc", b"zz", b"x", b"-"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for _ in 0..2000 {
            let text: Vec<u8> = (0..next(12)).flat_map(|_| atoms[next(atoms.len())].to_vec()).collect();
            let mut cuts: Vec<usize> = (0..next(6)).map(|_| next(text.len() + 1)).collect();
            cuts.sort();
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                pieces.push(&text[from..cut]);
                from = cut;
            }
            let expected = r.redact(&text);
            assert_eq!(streamed(&r, &pieces), expected, "{:?} cut as {pieces:?}", String::from_utf8_lossy(&text));
            for value in [b"abcab".as_slice(), b"bcabx", b"zzzz", b"abcabcab"] {
                assert!(!contains(&expected, value), "{value:?} survived in {:?}", String::from_utf8_lossy(&expected));
            }
        }
    }

    #[test]
    fn one_byte_writes_are_redacted_too() {
        let r = redactor(&[("TOKEN", "s3cr3t-token")]);
        let text = b"s3cr3t-tokens3cr3t-token s3cr3t-toke";
        let pieces: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(streamed(&r, &pieces), b"[REDACTED:TOKEN][REDACTED:TOKEN] s3cr3t-toke");
    }

    #[test]
    fn debug_shows_no_value() {
        let r = redactor(&[("TOKEN", "s3cr3t-token")]);
        let mut stream = r.stream();
        stream.push(b"s3cr3t");
        for shown in [format!("{r:?}"), format!("{stream:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}
