//! What is wrong, or probably wrong, with a config: one [`Problem`] type for load errors,
//! load warnings and `check`'s findings, each naming the file, the webhook and the field it
//! is about.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is: errors stop loading (and make `check` fail), warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Will not work as written.
    Error,
    /// Works, but is probably not what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One thing wrong with the config, printed as a single line without its severity:
/// `config/webhooks/logzio.toml: webhook \`logzio-audit\`: url: port 8071 is not allowed …`.
/// Serialized (for `check --json`) as `severity`, `file`, `webhook`, `field`, `message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in (or the config folder, for problems of the whole set).
    pub file: PathBuf,
    /// The webhook the problem is about, if any.
    pub webhook: Option<String>,
    /// The field, as a dotted path (`delivery.max_elapsed`), if any.
    pub field: Option<String>,
    /// What is wrong, lowercase, without the location, never showing a secret.
    pub message: String,
}

impl Problem {
    /// An error of a whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            file: file.to_path_buf(),
            webhook: None,
            field: None,
            message: message.into(),
        }
    }

    /// An error of one field of a file.
    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: Some(field.into()),
            ..Self::file(file, message)
        }
    }

    /// An error of one field of one webhook.
    pub fn webhook(
        file: &Path,
        webhook: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            webhook: Some(webhook.to_string()),
            ..Self::field(file, field, message)
        }
    }

    /// The same problem with another severity.
    pub fn with_severity(self, severity: Severity) -> Self {
        Problem { severity, ..self }
    }

    /// Whether it stops loading.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
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

/// Every error found while loading a config; loading reports them all at once rather than
/// stopping at the first. Each problem has [`Severity::Error`]; one per line when displayed.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
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

impl From<Problem> for ConfigError {
    fn from(problem: Problem) -> Self {
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
    fn a_problem_names_file_webhook_and_field_on_one_line() {
        let file = Path::new("config/webhooks/a.toml");
        assert_eq!(
            Problem::webhook(file, "hook", "url", "is bad").to_string(),
            "config/webhooks/a.toml: webhook `hook`: url: is bad"
        );
        assert_eq!(
            Problem::field(file, "amqp.url", "is bad").to_string(),
            "config/webhooks/a.toml: amqp.url: is bad"
        );
        let warning = Problem::file(file, "hmm").with_severity(Severity::Warning);
        assert_eq!(warning.to_string(), "config/webhooks/a.toml: hmm");
        assert!(!warning.is_error());
    }

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
