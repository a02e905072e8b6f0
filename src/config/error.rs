//! Config problems: each names the file, the webhook and the field it is about.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the config, printed as a single line:
/// `config/webhooks/logzio.toml: webhook \`logzio-audit\`: url: port 8071 is not allowed …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the problem is in (or the config folder, for problems of the whole set).
    pub file: PathBuf,
    /// The webhook the problem is about, if any.
    pub webhook: Option<String>,
    /// The field, as a dotted path (`delivery.max_elapsed`), if any.
    pub field: Option<String>,
    /// What is wrong, lowercase, without the location.
    pub message: String,
}

impl ConfigProblem {
    /// A problem of a whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigProblem {
            file: file.to_path_buf(),
            webhook: None,
            field: None,
            message: message.into(),
        }
    }

    /// A problem of one field of a file.
    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            field: Some(field.into()),
            ..Self::file(file, message)
        }
    }

    /// A problem of one field of one webhook.
    pub fn webhook(
        file: &Path,
        webhook: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigProblem {
            webhook: Some(webhook.to_string()),
            ..Self::field(file, field, message)
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(webhook) = &self.webhook {
            write!(f, ": webhook `{webhook}`")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading a config; loading reports them all at once rather than
/// stopping at the first.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl From<ConfigProblem> for ConfigError {
    fn from(problem: ConfigProblem) -> Self {
        ConfigError {
            problems: vec![problem],
        }
    }
}

/// `text` with every quoted piece (between backticks, or in double quotes with `\"`
/// escapes) whose content satisfies `hide` replaced by `***`, quotes included. Library
/// messages quote the values they complain about this way (`invalid type: string "…"`,
/// ``unknown variant `…` ``), so this hides a value while keeping the rest of the message.
/// An unterminated quote hides everything after it when `hide("")` holds.
pub(crate) fn mask_quoted(text: &str, hide: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['`', '"']) {
        out.push_str(&rest[..open]);
        let quote = rest.as_bytes()[open];
        let inner = &rest[open + 1..];
        let mut close = None;
        let mut escaped = false;
        for (i, b) in inner.bytes().enumerate() {
            match b {
                b'\\' if quote == b'"' && !escaped => escaped = true,
                b if b == quote && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        match close {
            Some(close) => {
                let content = &inner[..close];
                let unescaped = content.replace("\\\"", "\"").replace("\\\\", "\\");
                if hide(content) || hide(&unescaped) {
                    out.push_str(crate::redact::MASK);
                } else {
                    out.push_str(&rest[open..open + 1 + close + 1]);
                }
                rest = &inner[close + 1..];
            }
            None => {
                if hide(inner) || hide("") {
                    out.push_str(crate::redact::MASK);
                } else {
                    out.push_str(&rest[open..]);
                }
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_pieces_are_masked_when_asked() {
        let message = "invalid type: string \"amqp://u:p\\\"w@h\", expected `a sequence`";
        assert_eq!(
            mask_quoted(message, |_| true),
            "invalid type: string ***, expected ***"
        );
        assert_eq!(
            mask_quoted(message, |q| q.contains("p\"w")),
            "invalid type: string ***, expected `a sequence`"
        );
        assert_eq!(
            mask_quoted(
                "unknown variant `quorom`, expected `classic` or `quorum`",
                |q| { "quorom".contains(q) }
            ),
            "unknown variant ***, expected `classic` or `quorum`"
        );
        assert_eq!(mask_quoted("cut `secr", |_| true), "cut ***");
        assert_eq!(mask_quoted("no quotes", |_| true), "no quotes");
    }
}
