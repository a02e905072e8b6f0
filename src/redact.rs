//! Secrets and redaction. Every string that leaves the process (a log line, an error, a
//! dead-letter header, CLI output) goes through here first.
//!
//! Three mechanisms, from coarse to fine:
//! - [`Secret`] wraps a value so that `Debug` and `Display` never show it.
//! - [`redact_url`] hides the password in a URL's userinfo and the value of every query
//!   parameter whose name looks secret (`token`, `key`, `secret`, …), as `token=***`.
//! - [`Redactor`] knows the exact secret values of one config (every `${VAR}` substitution,
//!   every secret header, the broker password) and scrubs them from arbitrary text, such as an
//!   upstream error message that quotes the URL back.

use std::fmt;
use std::sync::Arc;

/// The text that replaces a secret.
pub const MASK: &str = "***";

/// A value that must never be printed. `Debug` and `Display` show `***`; read it with
/// [`Secret::expose`] only where it is handed to the network.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Query-parameter and header names whose values are secret when the name contains one of
/// these (case-insensitive).
const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "auth",
    "credential",
    "session",
];

/// Whether a query parameter or header called `name` carries a secret by its name alone.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| lower.contains(part))
}

/// Hides the userinfo password and the values of secret-looking query parameters:
/// `https://h/?token=abc&type=x` becomes `https://h/?token=***&type=x`. Text that does not
/// parse as a URL has everything after `?` and any `user:password@` masked.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => redact_parsed_url(&url),
        Err(_) => redact_unparsed(raw),
    }
}

/// [`redact_url`] for an already parsed URL.
pub fn redact_parsed_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    if url.password().is_some() {
        let _ = shown.set_password(Some(MASK));
    }
    let mut out = shown.to_string();
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    if url.fragment().is_some() {
        out.push_str("#***");
    }
    out
}

/// Masks the values of secret-looking parameters in a raw query string, keeping the others
/// byte for byte.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_unparsed(raw: &str) -> String {
    let (base, query) = match raw.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (raw, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:{MASK}{}", &base[..scheme_end + 3], &base[at..])
        }
        _ => base.to_string(),
    };
    match query {
        Some(query) => format!("{base}?{}", redact_query(query)),
        None => base,
    }
}

/// Scrubs known secret values out of arbitrary text. Cheap to clone; built once per config.
///
/// Invariant: every value that came from a `${VAR}` substitution or a secret header is in
/// here, both as written and percent-encoded, so an error text that quotes a URL back cannot
/// carry it.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Values shorter than this are not scrubbed from free text: masking every "1" or "on"
    /// would garble messages without protecting anything.
    pub const MIN_SECRET_LEN: usize = 4;

    /// A redactor for these secret values.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.into();
            if secret.len() < Self::MIN_SECRET_LEN {
                continue;
            }
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let path_encoded = percent_encode_all(&secret);
            for form in [secret, encoded, path_encoded] {
                if !all.contains(&form) {
                    all.push(form);
                }
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets: Arc::new(all),
        }
    }

    /// Masks every known secret value, then every URL-looking secret query parameter.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        scrub_query_params(&out)
    }

    /// Whether `text` still contains a known secret (used by tests and by `check`).
    pub fn leaks(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }
}

/// Percent-encodes every byte that is not unreserved, the way a path or query may carry it.
fn percent_encode_all(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Masks `name=value` pairs with a secret-looking name wherever they appear in free text,
/// e.g. a URL quoted inside an error message.
fn scrub_query_params(text: &str) -> String {
    if !text.contains('=') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let name_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |i| i + 1);
        let name = &before[name_start..];
        out.push_str(before);
        out.push('=');
        let after = &after[1..];
        let value_end = after
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let preceded_by_query = name_start > 0
            && matches!(before.as_bytes()[name_start - 1], b'?' | b'&' | b';' | b' ');
        if !name.is_empty() && preceded_by_query && is_secret_name(name) && value_end > 0 {
            out.push_str(MASK);
            rest = &after[value_end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_token_is_masked_other_params_kept() {
        assert_eq!(
            redact_url("https://listener.logz.io/?token=abcDEF123&type=apono"),
            "https://listener.logz.io/?token=***&type=apono"
        );
        assert_eq!(
            redact_url("https://h:8071/x?type=a&api_key=1&Signature=2"),
            "https://h:8071/x?type=a&api_key=***&Signature=***"
        );
    }

    #[test]
    fn amqp_password_is_masked() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://guest:s3cret@[broken/%2f?x=1&token=2"),
            "amqp://guest:***@[broken/%2f?x=1&token=***"
        );
    }

    #[test]
    fn redactor_scrubs_plain_and_encoded_values() {
        let r = Redactor::new(["tok/en+1", "ab"]);
        let text = "error sending to https://h/?t=tok%2Fen%2B1 (tok/en+1) ab";
        let scrubbed = r.scrub(text);
        assert!(!r.leaks(&scrubbed), "{scrubbed}");
        assert!(scrubbed.contains("(***)"), "{scrubbed}");
        assert!(scrubbed.ends_with(" ab"), "short values are not scrubbed");
    }

    #[test]
    fn free_text_query_params_are_masked() {
        let r = Redactor::default();
        assert_eq!(
            r.scrub("error for url (https://h/?token=zzz&type=a): boom"),
            "error for url (https://h/?token=***&type=a): boom"
        );
        assert_eq!(r.scrub("a=b c?key=v"), "a=b c?key=***");
        assert_eq!(r.scrub("no secrets here"), "no secrets here");
    }
}
