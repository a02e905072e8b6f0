//! One JSON-string escape: the registry's escape function and the unit `__nest` repeats.

use std::fmt::Write as _;

/// Escapes `text` for the inside of a JSON string literal (without adding the quotes).
///
/// `"` and `\` get a backslash; `\n`, `\r`, `\t`, `\b` and `\f` get their short forms; every
/// other character below U+0020 becomes `\u00xx`; U+2028 and U+2029 become `\u2028` and
/// `\u2029` so the output is also safe inside JavaScript. Everything else is copied as is, so
/// `serde_json` reading `"` + the result + `"` yields exactly `text`.
pub fn escape_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if c < '\u{20}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_json_string;

    #[test]
    fn every_control_char_round_trips_through_serde_json() {
        for code in 0u32..0x20 {
            let c = char::from_u32(code).unwrap();
            let text = format!("a{c}b");
            let escaped = escape_json_string(&text);
            assert!(escaped.chars().all(|c| c >= '\u{20}'), "{escaped:?}");
            let back: String = serde_json::from_str(&format!("\"{escaped}\"")).unwrap();
            assert_eq!(back, text);
        }
    }

    #[test]
    fn short_forms_and_separators() {
        assert_eq!(
            escape_json_string("\"\\\n\r\t\u{08}\u{0C}\u{01}\u{1f}\u{2028}\u{2029}é"),
            r#"\"\\\n\r\t\b\f\u0001\u001f\u2028\u2029é"#
        );
    }
}
