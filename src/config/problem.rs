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

/// Where in the config a problem is: a file, and the webhook in it when there is one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    /// The file.
    pub file: &'a Path,
    /// The webhook, for problems of a `[[webhook]]` table.
    pub webhook: Option<&'a str>,
}

impl Place<'_> {
    /// An error of `field` here.
    pub fn problem(&self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            webhook: self.webhook.map(str::to_string),
            ..Problem::field(self.file, field, message)
        }
    }
}

/// What validation collects on its way through a config: problems of both severities in the
/// order found, and every secret value the config introduced (for the redactor).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    problems: Vec<Problem>,
    /// Secret values, in the order found.
    pub secrets: Vec<String>,
}

impl Findings {
    /// Records one problem, error or warning.
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Records a warning.
    pub fn warn(&mut self, problem: Problem) {
        self.push(problem.with_severity(Severity::Warning));
    }

    /// Records each `(field, message)` of a section's checks as an error of `prefix` + field
    /// at `place`. Returns whether there was none.
    pub fn fields(
        &mut self,
        place: Place<'_>,
        prefix: &str,
        problems: Vec<(&'static str, String)>,
    ) -> bool {
        let valid = problems.is_empty();
        for (field, message) in problems {
            self.push(place.problem(format!("{prefix}{field}"), message));
        }
        valid
    }

    /// How many errors have been recorded.
    pub fn error_count(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }

    /// Whether an error has been recorded.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// Every error recorded, for a caller that has been refused something (a section
    /// refuses only after recording why).
    pub fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self
                .problems
                .into_iter()
                .filter(Problem::is_error)
                .collect(),
        }
    }

    /// The warnings and the secrets, or every error as a [`ConfigError`] when there is any.
    pub fn finish(self) -> Result<(Vec<Problem>, Vec<String>), ConfigError> {
        let (errors, warnings): (Vec<Problem>, Vec<Problem>) =
            self.problems.into_iter().partition(Problem::is_error);
        if errors.is_empty() {
            Ok((warnings, self.secrets))
        } else {
            Err(ConfigError { problems: errors })
        }
    }
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
    fn findings_split_errors_from_warnings_in_order() {
        let file = Path::new("relay.toml");
        let mut found = Findings::default();
        found.warn(Problem::file(file, "w1"));
        found.push(Problem::file(file, "e1"));
        found.warn(Problem::file(file, "w2"));
        found.push(Problem::file(file, "e2"));
        assert!(found.has_errors());
        assert_eq!(
            found.finish().unwrap_err().to_string(),
            "relay.toml: e1\nrelay.toml: e2"
        );

        let mut found = Findings::default();
        found.warn(Problem::file(file, "w1"));
        found.warn(Problem::file(file, "w2"));
        found.secrets.push("s3cr3t".into());
        assert!(!found.has_errors());
        let (warnings, secrets) = found.finish().unwrap();
        let warnings: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(warnings, ["w1", "w2"]);
        assert_eq!(secrets, ["s3cr3t"]);
    }
}
