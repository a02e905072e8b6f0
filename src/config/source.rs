//! Reading the config files: `relay.toml` layered with `RELAY__…` overrides, and each
//! `webhooks/*.toml` on its own, into their as-written forms. A library's error becomes a
//! [`Problem`] that names the file, the key and, for an override, the variable, but never
//! shows a value from the environment or from a secret position.

use super::problem::{Findings, Problem};
use super::relay::RawRelay;
use super::webhook::WebhookSpec;
use super::{ENV_PREFIX, ENV_SEPARATOR, Env};
use crate::redact::{self, Redactor};
use std::path::{Path, PathBuf};

/// `relay.toml` layered with `RELAY__…` overrides from `env`.
///
/// Problems never echo a value that came from the environment or that sits in a secret
/// position (`amqp.url`, `amqp.urls`, a key named like a credential): they name the key, the
/// variable and the expected type instead. A syntax error gives its line, not the line's text.
pub(crate) fn read_relay(path: &Path, env: &Env) -> Result<RawRelay, Problem> {
    if !path.is_file() {
        return Err(Problem::file(
            path,
            "not found; the config folder needs a relay.toml (see config/relay.toml in the repository)",
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::file(path, format!("cannot read: {e}")))?;
    // Parsed here first: config-rs would quote the offending line, password and all.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(Problem::file(path, toml_error(&text, &e)));
    }
    let overrides: config::Map<String, String> = env
        .vars()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .source(Some(overrides.clone())),
        )
        .build()
        .map_err(|e| library_problem(path, e, &overrides))?;
    built
        .try_deserialize::<RawRelay>()
        .map_err(|e| library_problem(path, e, &overrides))
}

/// A config-rs error as a problem that names the key, the variable it came from (if any) and
/// the expected type, but never shows a value from the environment or a secret position.
fn library_problem(
    path: &Path,
    error: config::ConfigError,
    overrides: &config::Map<String, String>,
) -> Problem {
    let (key, message) = match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => (
            key,
            format!(
                "expected {expected}, found {}",
                kind_of_value(&unexpected.to_string())
            ),
        ),
        config::ConfigError::At { error, key, .. } => (key, one_line(&error.to_string())),
        other => (None, one_line(&other.to_string())),
    };
    // Whatever the key, a quoted piece of any override's value is hidden.
    let mut message = overrides
        .values()
        .fold(message, |m, value| mask_echoes(&m, value));
    if let Some(key) = &key {
        if key == "amqp.url" || key.starts_with("amqp.urls") || is_secret_key(key) {
            message = mask_quoted(&message, |_| true);
        }
        let var = format!(
            "{ENV_PREFIX}{ENV_SEPARATOR}{}",
            key.replace('.', ENV_SEPARATOR)
        );
        if let Some(name) = overrides.keys().find(|k| k.eq_ignore_ascii_case(&var)) {
            message = format!("{message} (from environment variable `{name}`, value not shown)");
        }
    }
    match key {
        Some(key) => Problem::field(path, key, message),
        None => Problem::file(path, message),
    }
}

/// Whether the last segment of a dotted key names a credential (`…token`, `…password`).
fn is_secret_key(key: &str) -> bool {
    key.rsplit('.').next().is_some_and(redact::is_secret_name)
}

/// What kind of value config-rs found, from its description (`string "…"`, ``64-bit integer
/// `5` ``), without the value itself.
fn kind_of_value(described: &str) -> &'static str {
    if described.starts_with("string") {
        "a string"
    } else if described.contains("integer") {
        "an integer"
    } else if described.starts_with("floating") {
        "a number with a fraction"
    } else if described.starts_with("boolean") {
        "a boolean"
    } else if described.starts_with("sequence") {
        "a list"
    } else if described.starts_with("map") {
        "a table"
    } else {
        "no value"
    }
}

/// `message` with every quoted piece of `value` masked, and `value` itself wherever it is
/// long enough to be told from ordinary words.
fn mask_echoes(message: &str, value: &str) -> String {
    if value.is_empty() {
        return message.to_string();
    }
    let masked = mask_quoted(message, |quoted| {
        !quoted.is_empty() && value.contains(quoted)
    });
    if value.len() >= Redactor::FREE_TEXT_MIN_LEN {
        masked.replace(value, redact::MASK)
    } else {
        masked
    }
}

/// Warns about each variable that looks like an override but that config-rs would skip
/// without a word, such as `RELAY_AMQP__URL` (one underscore after the prefix) or lowercase
/// `relay__amqp__url`.
pub(crate) fn ignored_env_overrides(env: &Env, relay_path: &Path, found: &mut Findings) {
    let proper = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let mut names: Vec<&String> = env
        .vars()
        .keys()
        .filter(|k| {
            let upper = k.to_ascii_uppercase();
            upper.starts_with(&format!("{ENV_PREFIX}_")) && !k.starts_with(&proper)
        })
        .collect();
    names.sort();
    for name in names {
        found.warn(Problem::file(
            relay_path,
            format!(
                "environment variable `{name}` is ignored; overrides are spelled \
                 {ENV_PREFIX}{ENV_SEPARATOR}SECTION{ENV_SEPARATOR}KEY, e.g. RELAY__AMQP__URL"
            ),
        ));
    }
}

/// Every `webhooks/*.toml` of `dir`, in file-name order. A folder that cannot be read is a
/// warning (no webhook is configured), not an error.
pub(crate) fn webhook_files(dir: &Path, found: &mut Findings) -> Vec<PathBuf> {
    let webhooks_dir = dir.join("webhooks");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&webhooks_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect(),
        Err(e) => {
            found.warn(Problem::file(
                &webhooks_dir,
                format!("cannot read the webhooks folder ({e}); no webhook is configured"),
            ));
            Vec::new()
        }
    };
    files.sort();
    files
}

/// The `[[webhook]]` tables of one file. A table that does not deserialize is reported with
/// its name (when it has one) and skipped, so the other tables are still checked.
pub(crate) fn parse_webhook_file(file: &Path, found: &mut Findings) -> Vec<WebhookSpec> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            found.push(Problem::file(file, format!("cannot read: {e}")));
            return Vec::new();
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            found.push(Problem::file(file, toml_error(&text, &e)));
            return Vec::new();
        }
    };
    for key in table.keys().filter(|k| k.as_str() != "webhook") {
        found.push(Problem::file(
            file,
            format!("unknown top-level key `{key}`; a webhook file holds [[webhook]] tables"),
        ));
    }
    let Some(entries) = table.get("webhook") else {
        return Vec::new();
    };
    let Some(entries) = entries.as_array() else {
        found.push(Problem::file(
            file,
            "`webhook` must be an array of tables: write [[webhook]]",
        ));
        return Vec::new();
    };
    let mut specs = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let label = entry
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", index + 1));
        match entry.clone().try_into::<WebhookSpec>() {
            Ok(spec) => specs.push(spec),
            Err(e) => {
                let field = error_key_path(&e);
                let mut message = one_line(e.message());
                // A mistyped `url` or `headers` must not quote what it holds.
                if field
                    .as_deref()
                    .is_some_and(|f| f == "url" || f.starts_with("headers") || is_secret_key(f))
                {
                    message = mask_quoted(&message, |_| true);
                }
                found.push(Problem {
                    webhook: Some(label),
                    field,
                    ..Problem::file(file, message)
                });
            }
        }
    }
    specs
}

/// The key path a table's deserialization error is about (`triggers`, `delivery.timeout`).
/// toml keeps it out of [`toml::de::Error::message`] and shows it only as the last line of
/// its `Display`: ``in `triggers` ``.
fn error_key_path(e: &toml::de::Error) -> Option<String> {
    let shown = e.to_string();
    let last = shown.lines().rev().find(|line| !line.trim().is_empty())?;
    let path = last.strip_prefix("in `")?.strip_suffix('`')?;
    (!path.is_empty()).then(|| path.to_string())
}

/// A TOML syntax error as `line N: message`, without the line's text (it may hold a secret).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", one_line(e.message()))
        }
        None => one_line(e.message()),
    }
}

/// Folds a multi-line library message into one line.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `text` with every quoted piece (between backticks, or in double quotes with `\"`
/// escapes) whose content satisfies `hide` replaced by `***`, quotes included. Library
/// messages quote the values they complain about this way (`invalid type: string "…"`,
/// ``unknown variant `…` ``), so this hides a value while keeping the rest of the message.
/// An unterminated quote hides everything after it when `hide("")` holds.
fn mask_quoted(text: &str, hide: impl Fn(&str) -> bool) -> String {
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
