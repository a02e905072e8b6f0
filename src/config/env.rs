//! The environment a config is read with, and `${VAR}` interpolation.

use crate::redact::MASK;
use std::collections::HashMap;
use std::fmt;

/// A snapshot of environment variables. Loading reads from this instead of the process
/// environment, so the demo and tests can supply variables without mutating global state.
/// Its `Debug` shows the variable names only: any value may be a secret.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment (variables that are not valid Unicode are skipped).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment holding exactly these variables.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Adds or replaces one variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// One variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable, for the `RELAY__…` override source.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_map()
            .entries(names.into_iter().map(|name| (name, MASK)))
            .finish()
    }
}

/// The result of interpolating one string. Its `Debug` shows only [`Interpolated::shown`]
/// and the variable names.
#[derive(Clone, PartialEq, Eq)]
pub struct Interpolated {
    /// The string with every `${VAR}` replaced.
    pub value: String,
    /// The string as it may be shown: every `${VAR}` replaced by `***` (and `$$` by `$`), so
    /// a substituted value never shows, wherever it sits (a URL's host, path, query…).
    pub shown: String,
    /// The substituted values, which are treated as secrets from then on.
    pub substituted: Vec<String>,
    /// The names of the variables used, in the order of `substituted`.
    pub names: Vec<String>,
}

impl Interpolated {
    /// The text a URL is displayed from (always through [`crate::redact::redact_url`]).
    /// Normally [`Interpolated::shown`]: a variable inside a URL (a host, a path segment, a
    /// query value) is a secret in itself and shows as `***`. When the whole string is one
    /// variable, it is a URL kept in the environment (`url = "${AMQP_URL}"`) and is displayed
    /// like a URL written in the file: its credentials (password, secret-looking query
    /// values, fragment) masked, the rest shown. The whole value is still a secret to the
    /// redactor.
    pub fn url_display_source(&self) -> &str {
        if self.names.len() == 1 && self.shown == MASK {
            &self.value
        } else {
            &self.shown
        }
    }
}

impl fmt::Debug for Interpolated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interpolated")
            .field("shown", &self.shown)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Replaces every `${NAME}` with the variable's value; `$$` is a literal `$`. A variable that is
/// unset or empty is an error naming it.
pub fn interpolate(input: &str, env: &Env) -> Result<Interpolated, String> {
    let mut value = String::with_capacity(input.len());
    let mut shown = String::with_capacity(input.len());
    let mut substituted = Vec::new();
    let mut names = Vec::new();
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        value.push_str(&rest[..dollar]);
        shown.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            shown.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(close) = tail.find('}') else {
                return Err("`${` without a closing `}`".to_string());
            };
            let name = &tail[..close];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a variable name (letters, digits and '_')"
                ));
            }
            match env.get(name) {
                None => return Err(format!("environment variable `{name}` is not set")),
                Some("") => return Err(format!("environment variable `{name}` is empty")),
                Some(v) => {
                    value.push_str(v);
                    shown.push_str(MASK);
                    substituted.push(v.to_string());
                    names.push(name.to_string());
                }
            }
            rest = &tail[close + 1..];
        } else {
            value.push('$');
            shown.push('$');
            rest = after;
        }
    }
    value.push_str(rest);
    shown.push_str(rest);
    Ok(Interpolated {
        value,
        shown,
        substituted,
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_records_secrets() {
        let env = Env::from_pairs([("LOGZIO_TOKEN", "abc123")]);
        let out = interpolate("https://h/?token=${LOGZIO_TOKEN}&type=a", &env).unwrap();
        assert_eq!(out.value, "https://h/?token=abc123&type=a");
        assert_eq!(out.shown, "https://h/?token=***&type=a");
        assert_eq!(out.substituted, vec!["abc123"]);
        assert_eq!(out.names, vec!["LOGZIO_TOKEN"]);
    }

    #[test]
    fn shown_masks_every_substitution_wherever_it_sits() {
        let env = Env::from_pairs([("H", "host-secret"), ("P", "path-secret"), ("S", "ab")]);
        let out = interpolate("https://u:${S}@${H}/${P}/x?k=${S}#${P}$$", &env).unwrap();
        assert_eq!(
            out.value,
            "https://u:ab@host-secret/path-secret/x?k=ab#path-secret$"
        );
        assert_eq!(out.shown, "https://u:***@***/***/x?k=***#***$");
        assert_eq!(out.names, ["S", "H", "P", "S", "P"]);
        let debug = format!("{out:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("ab@"),
            "{debug}"
        );
        let env_debug = format!("{env:?}");
        assert!(env_debug.contains("\"H\": \"***\""), "{env_debug}");
        assert!(!env_debug.contains("secret"), "{env_debug}");
    }

    #[test]
    fn a_whole_url_variable_is_displayed_as_a_url() {
        let env = Env::from_pairs([("URL", "amqp://u:pw@h/v"), ("P", "pw")]);
        let whole = interpolate("${URL}", &env).unwrap();
        assert_eq!(whole.url_display_source(), "amqp://u:pw@h/v");
        let part = interpolate("amqp://u:${P}@h/v", &env).unwrap();
        assert_eq!(part.url_display_source(), "amqp://u:***@h/v");
        let literal = interpolate("***", &env).unwrap();
        assert_eq!(literal.url_display_source(), "***");
    }

    #[test]
    fn literal_dollars() {
        let env = Env::default();
        assert_eq!(interpolate("a$$b $x", &env).unwrap().value, "a$b $x");
    }

    #[test]
    fn unset_empty_and_malformed_are_errors() {
        let env = Env::from_pairs([("EMPTY", "")]);
        assert_eq!(
            interpolate("${MISSING}", &env).unwrap_err(),
            "environment variable `MISSING` is not set"
        );
        assert_eq!(
            interpolate("${EMPTY}", &env).unwrap_err(),
            "environment variable `EMPTY` is empty"
        );
        assert!(interpolate("${OPEN", &env).unwrap_err().contains("closing"));
        assert!(
            interpolate("${1A}", &env)
                .unwrap_err()
                .contains("not a variable")
        );
    }
}
