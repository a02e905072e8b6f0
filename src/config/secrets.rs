//! Secrets a config brings in, as far as they need a word of warning: values too short to be
//! masked everywhere (warned at load) and credentials written into a file instead of taken
//! from `${VAR}` (warned by [`super::lint`]). Their values are never shown, only where they sit.

use super::env::Interpolated;
use crate::redact::{self, Redactor};

/// The warning about a secret too short to be masked everywhere; `what` names it
/// (`` `${TOKEN}` ``, `the password`), never shows it.
pub(crate) fn short_secret_message(what: &str) -> String {
    format!(
        "{what} is a secret shorter than {} bytes: easy to guess, and masked in output only \
         where it stands whole (a URL part, a header value, a name=value pair), not inside \
         other text",
        Redactor::FREE_TEXT_MIN_LEN
    )
}

/// The variables of `interpolated` whose value is shorter than the free-text threshold, each
/// once, as `` `${NAME}` ``.
pub(crate) fn short_variables(interpolated: &Interpolated) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, value) in interpolated.names.iter().zip(&interpolated.substituted) {
        let label = format!("`${{{name}}}`");
        if value.len() < Redactor::FREE_TEXT_MIN_LEN && !out.contains(&label) {
            out.push(label);
        }
    }
    out
}

/// Secret-looking query parameters whose value is written out rather than `${VAR}`, as
/// `url (query parameter NAME)`.
pub(crate) fn inline_url_secrets(written: &str) -> Vec<String> {
    let Some((_, query)) = written.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, value)| {
            redact::is_secret_name(name) && !value.is_empty() && !value.contains("${")
        })
        .map(|(name, _)| format!("url (query parameter {name})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, interpolate};

    #[test]
    fn inline_secrets_are_found() {
        assert_eq!(
            inline_url_secrets("https://h/?token=abc123&type=x"),
            vec!["url (query parameter token)"]
        );
        assert!(inline_url_secrets("https://h/?token=${LOGZIO_TOKEN}&type=x").is_empty());
        assert!(inline_url_secrets("https://h/path").is_empty());
    }

    #[test]
    fn short_variables_are_named_once() {
        let env = Env::from_pairs([("S", "Zq"), ("LONG", "long-enough")]);
        let interpolated = interpolate("${S}-${LONG}-${S}", &env).unwrap();
        assert_eq!(short_variables(&interpolated), ["`${S}`"]);
        let message = short_secret_message("`${S}`");
        assert!(message.starts_with("`${S}` is a secret shorter than 4 bytes"));
        assert!(!message.contains("Zq"), "{message}");
    }
}
