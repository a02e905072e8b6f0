//! Durations in config files are strings with a unit (`"500ms"`, `"10s"`, `"10m"`), parsed
//! here at the boundary so the rest of the program only sees [`Duration`].

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `"500ms"`, `"10s"`, `"1m 30s"` and the like.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like \"500ms\" or \"10s\"")
    })
}

/// Formats a duration the way config files write it.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Number(i64),
}

fn from_raw<E: serde::de::Error>(raw: Raw) -> Result<Duration, E> {
    match raw {
        Raw::Text(text) => parse(&text).map_err(E::custom),
        Raw::Number(n) => Err(E::custom(format!(
            "`{n}` has no unit; write it like \"{n}s\" or \"{n}ms\""
        ))),
    }
}

/// Serde adapter for a required duration field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_raw(Raw::deserialize(d)?)
}

/// Serde adapter for an optional duration field.
pub mod option {
    use super::*;

    /// Deserializes `Some(duration)`; absence is handled by `#[serde(default)]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        from_raw(Raw::deserialize(d)?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_bare_numbers() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert!(parse("10").unwrap_err().contains("not a duration"));
        let err = from_raw::<serde::de::value::Error>(Raw::Number(10)).unwrap_err();
        assert!(err.to_string().contains("no unit"));
    }
}
