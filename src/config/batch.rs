//! `[webhook.batch]`: several rendered bodies sent as one NDJSON request, and the limits of
//! the receiver (Logz.io's listener) that bound it.

use super::duration;
use serde::Deserialize;
use std::time::Duration;

/// The largest request body Logz.io's listener takes (10 MB); a batch must stay below it.
pub const MAX_BATCH_BYTES: u64 = 10 * 1024 * 1024;

/// The longest line Logz.io's listener takes: 500,000 bytes. A batched body longer than this
/// is refused before it is sent, and a batch must have room for at least one such line.
pub const MAX_LINE_BYTES: usize = 500_000;

/// `[webhook.batch]` as written; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSpec {
    #[serde(default = "default_max_events")]
    pub max_events: u32,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    #[serde(default = "default_linger", with = "duration")]
    pub linger: Duration,
}

fn default_max_events() -> u32 {
    200
}

fn default_max_bytes() -> ByteSize {
    ByteSize(5 * 1024 * 1024)
}

fn default_linger() -> Duration {
    Duration::from_millis(200)
}

impl BatchSpec {
    /// The settings as written, not yet checked (see [`BatchSettings::problems`]).
    pub fn settings(&self) -> BatchSettings {
        BatchSettings {
            max_events: self.max_events,
            max_bytes: self.max_bytes.0,
            linger: self.linger,
        }
    }
}

/// `[webhook.batch]`, validated: several rendered bodies sent as one NDJSON request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Events per request, at most.
    pub max_events: u32,
    /// Bytes per request, at most.
    pub max_bytes: u64,
    /// Longest wait for a batch to fill before it is sent anyway.
    pub linger: Duration,
}

impl BatchSettings {
    /// Field-by-field problems, as `(field, message)` with the field inside the webhook
    /// (`batch.max_events`). `json_body` says whether the webhook's bodies are JSON, which
    /// NDJSON needs.
    pub fn problems(&self, json_body: bool) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        if self.max_events == 0 {
            out.push(("batch.max_events", "must be at least 1".into()));
        }
        if self.max_bytes < MAX_LINE_BYTES as u64 || self.max_bytes > MAX_BATCH_BYTES {
            out.push((
                "batch.max_bytes",
                format!(
                    "must be between 500KB (one line's limit) and 10MiB (Logz.io takes at most \
                     10 MB per request), not {} bytes",
                    self.max_bytes
                ),
            ));
        }
        if self.linger.is_zero() {
            out.push(("batch.linger", "must be greater than 0".into()));
        }
        if !json_body {
            out.push((
                "batch",
                "batches are NDJSON: each body must be a JSON document, so Content-Type must \
                 be JSON"
                    .into(),
            ));
        }
        out
    }
}

/// A size in bytes, written as a number or with a unit: `"5MiB"`, `"500KB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"5MiB"`, `"500 KB"`, `"1048576"` (KB/MB are powers of 1000, KiB/MiB of 1024).
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size; write it like \"5MiB\" or \"500KB\""))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" => 1024,
            "mb" => 1000 * 1000,
            "mib" => 1024 * 1024,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}`; use B, KB, KiB, MB or MiB"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("5MiB"), Ok(ByteSize(5 * 1024 * 1024)));
        assert_eq!(ByteSize::parse("500KB"), Ok(ByteSize(500_000)));
        assert_eq!(ByteSize::parse("42"), Ok(ByteSize(42)));
        assert_eq!(ByteSize::parse("1 MB"), Ok(ByteSize(1_000_000)));
        assert!(
            ByteSize::parse("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(ByteSize::parse("MiB").unwrap_err().contains("not a size"));
    }

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        let spec: BatchSpec = toml::from_str("").unwrap();
        let defaults = spec.settings();
        assert!(defaults.problems(true).is_empty());
        let bad = BatchSettings {
            max_events: 0,
            max_bytes: MAX_LINE_BYTES as u64 - 1,
            linger: Duration::ZERO,
        };
        let fields: Vec<&str> = bad.problems(false).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "batch.max_events",
                "batch.max_bytes",
                "batch.linger",
                "batch"
            ]
        );
        let too_big = BatchSettings {
            max_bytes: MAX_BATCH_BYTES + 1,
            ..defaults
        };
        assert_eq!(too_big.problems(true)[0].0, "batch.max_bytes");
    }
}
