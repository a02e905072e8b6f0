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
