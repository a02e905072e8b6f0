//! The listener's NDJSON line rules: which lines of a body it accepts, and the counts it
//! answers a `400` with.

use crate::config::MAX_LINE_BYTES;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The line counts of a `400` answer, serialized as the real listener does:
/// `{"malformedLines": n, "successfulLines": n, "oversizedLines": n, "emptyLogLines": n}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineCounts {
    /// Lines that are not a JSON object.
    pub malformed_lines: u64,
    /// Lines that were accepted.
    pub successful_lines: u64,
    /// Lines longer than [`MAX_LINE_BYTES`].
    pub oversized_lines: u64,
    /// Lines that are empty or only whitespace.
    pub empty_log_lines: u64,
}

impl LineCounts {
    /// Counts the NDJSON lines of `body` and returns the accepted ones (JSON objects of at most
    /// [`MAX_LINE_BYTES`]) in order.
    ///
    /// Lines end at `\n` (a `\r` before it is dropped). A final `\n` ends the last line; it does
    /// not start an empty one, so `"{}\n"` is one good line and an empty body has no lines.
    pub fn parse(body: &[u8]) -> (LineCounts, Vec<Value>) {
        let mut counts = LineCounts::default();
        let mut accepted = Vec::new();
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if body.is_empty() {
            return (counts, accepted);
        }
        for line in body.split(|byte| *byte == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE_BYTES {
                counts.oversized_lines += 1;
            } else if line.iter().all(u8::is_ascii_whitespace) {
                counts.empty_log_lines += 1;
            } else {
                match serde_json::from_slice::<Value>(line) {
                    Ok(value @ Value::Object(_)) => {
                        counts.successful_lines += 1;
                        accepted.push(value);
                    }
                    _ => counts.malformed_lines += 1,
                }
            }
        }
        (counts, accepted)
    }

    /// Whether every line was accepted (no malformed, oversized or empty line).
    pub fn all_good(&self) -> bool {
        self.malformed_lines == 0 && self.oversized_lines == 0 && self.empty_log_lines == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_counts_lines_like_the_real_listener() {
        let (counts, accepted) = LineCounts::parse(b"{\"a\":1}\nnot json\n\n[1]\r\n{\"b\":2}\r\n");
        assert_eq!(
            counts,
            LineCounts {
                malformed_lines: 2,
                successful_lines: 2,
                oversized_lines: 0,
                empty_log_lines: 1,
            }
        );
        assert_eq!(
            accepted,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        assert_eq!(LineCounts::parse(b"").0, LineCounts::default());
        assert_eq!(LineCounts::parse(b"{}").0.successful_lines, 1);
    }

    #[test]
    fn parse_counts_oversized_lines() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES));
        let body = format!("{long}\n{{}}\n");
        let (counts, accepted) = LineCounts::parse(body.as_bytes());
        assert_eq!(counts.oversized_lines, 1);
        assert_eq!(counts.successful_lines, 1);
        assert_eq!(accepted.len(), 1);
    }

    #[test]
    fn counts_serialize_with_the_real_field_names() {
        let json = serde_json::to_value(LineCounts {
            malformed_lines: 1,
            successful_lines: 2,
            oversized_lines: 3,
            empty_log_lines: 4,
        })
        .expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"malformedLines": 1, "successfulLines": 2, "oversizedLines": 3, "emptyLogLines": 4})
        );
    }
}
