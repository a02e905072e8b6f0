//! Secrets and redaction. Every string that leaves the process (a log line, an error, a
//! dead-letter header, CLI output) goes through here first.
//!
//! Four mechanisms, from coarse to fine:
//! - [`Secret`] wraps a value so that `Debug` and `Display` never show it.
//! - [`redact_url`] hides the password in a URL's userinfo, the fragment and the value of every
//!   query parameter whose name looks secret (`token`, `key`, `secret`, …), as `token=***`.
//! - [`Redactor`] knows the exact secret values of one config (every `${VAR}` substitution,
//!   every secret header, every inline URL credential, the broker password) and scrubs them from
//!   arbitrary text, such as an upstream error message that quotes the URL back.
//! - [`SharedRedactor`] is the handle the log writer reads and a config reload extends, so log
//!   lines (third-party ones included) are scrubbed with every config's secrets.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

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
    let (raw, fragment) = match raw.split_once('#') {
        Some((before, _)) => (before, true),
        None => (raw, false),
    };
    let shown = redact_unparsed_base(raw);
    if fragment {
        format!("{shown}#{MASK}")
    } else {
        shown
    }
}

fn redact_unparsed_base(raw: &str) -> String {
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

/// The secret values a URL carries in itself, each as written and percent-decoded: the
/// userinfo password and the value of every query parameter whose name looks secret
/// (`?token=abc`). Feed them to a [`Redactor`].
pub fn url_secrets(url: &url::Url) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |value: &str| {
        if value.is_empty() {
            return;
        }
        out.push(value.to_string());
        if let Some(decoded) = percent_decode(value, false) {
            out.push(decoded);
        }
        if let Some(decoded) = percent_decode(value, true) {
            out.push(decoded);
        }
    };
    if let Some(password) = url.password() {
        push(password);
    }
    for pair in url.query().unwrap_or("").split('&') {
        if let Some((name, value)) = pair.split_once('=') {
            let name = percent_decode(name, true).unwrap_or_else(|| name.to_string());
            if is_secret_name(&name) {
                push(value);
            }
        }
    }
    out
}

/// [`url_secrets`] of a URL given as text; nothing when it does not parse.
pub fn url_text_secrets(raw: &str) -> Vec<String> {
    url::Url::parse(raw)
        .map(|url| url_secrets(&url))
        .unwrap_or_default()
}

/// `%XX` sequences (and with `plus_is_space`, `+`) decoded; `None` when that changes nothing
/// or the result is not UTF-8.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                    // Two hex digits: at most 0xFF.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    let decoded = String::from_utf8(out).ok()?;
    (decoded != text).then_some(decoded)
}

/// Scrubs known secret values out of arbitrary text. Cheap to clone; built once per config.
///
/// Invariant: every value that came from a `${VAR}` substitution, a secret header or an inline
/// URL credential is in here, as written and in every form text may carry it in
/// (percent-encoded, percent-decoded, escaped inside a quoted `Debug` or JSON string), so an
/// error text or a log line that quotes it back cannot carry it.
///
/// # Short secrets
///
/// A form of at least [`Redactor::FREE_TEXT_MIN_LEN`] (4) bytes is masked wherever it occurs.
/// A shorter one (a 1–3 byte password, a `${VAR}` holding `eu`) is masked only where it
/// stands whole in a position that carries secrets:
/// - a part of a URL inside a `scheme://…` span: userinfo, host label, port, path segment,
///   query name or value, fragment (delimited on both sides by `/ : @ ? & = # . ; ,` or the
///   span's end);
/// - the whole value of a `name=value` pair (`k=ab&…`, `k=ab `);
/// - the whole value of a `Name: value` header line.
///
/// Elsewhere in free text it stays: masking every `1` or `eu` in a message would garble it
/// (and break the numbers of a JSON log line) while protecting nothing, since a secret that
/// short can be guessed anyway. Config loading warns about every such secret (see
/// `crate::config`), and a short form without any letter or digit (`/`, `&&`) is never masked,
/// since it would match the delimiters themselves.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Forms of at least `FREE_TEXT_MIN_LEN` bytes, longest first: masked anywhere.
    anywhere: Arc<Vec<String>>,
    /// Shorter forms, longest first: masked only in a secret position.
    positional: Arc<Vec<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redactor({} forms, {} short)",
            self.anywhere.len(),
            self.positional.len()
        )
    }
}

impl Redactor {
    /// Forms this long or longer are scrubbed from free text wherever they occur; shorter ones
    /// only in a secret position (see the type's documentation).
    pub const FREE_TEXT_MIN_LEN: usize = 4;

    /// A redactor for these secret values (empty values are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut anywhere: Vec<String> = Vec::new();
        let mut positional: Vec<String> = Vec::new();
        for secret in secrets {
            for form in forms(&secret.into()) {
                if form.len() >= Self::FREE_TEXT_MIN_LEN {
                    anywhere.push(form);
                } else if form.chars().any(char::is_alphanumeric) {
                    positional.push(form);
                }
            }
        }
        Self::from_forms(anywhere, positional)
    }

    fn from_forms(mut anywhere: Vec<String>, mut positional: Vec<String>) -> Self {
        for list in [&mut anywhere, &mut positional] {
            list.sort();
            list.dedup();
            // Longest first, so a secret that contains another is masked whole.
            list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        Redactor {
            anywhere: Arc::new(anywhere),
            positional: Arc::new(positional),
        }
    }

    /// A redactor that masks every secret of `self` and of `other`.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        let join = |a: &Vec<String>, b: &Vec<String>| a.iter().chain(b).cloned().collect();
        Self::from_forms(
            join(&self.anywhere, &other.anywhere),
            join(&self.positional, &other.positional),
        )
    }

    /// Whether it knows no secret value (it still masks secret-looking query parameters).
    pub fn is_empty(&self) -> bool {
        self.anywhere.is_empty() && self.positional.is_empty()
    }

    /// Masks every known secret value (short ones where they stand in a secret position),
    /// then every secret-looking query parameter (`token=***`).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.anywhere.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        let out = self.mask_positional(&out);
        scrub_query_params(&out)
    }

    /// [`Redactor::scrub`] for one JSON document (a JSON log line), keeping it valid JSON:
    /// when masking the text would break it (a secret inside an escape sequence, a number
    /// that is a secret), the document is parsed and each string, key and number is scrubbed
    /// on its own instead.
    pub fn scrub_json(&self, line: &str) -> String {
        let textual = self.scrub(line);
        if textual == line || serde_json::from_str::<serde::de::IgnoredAny>(&textual).is_ok() {
            return textual;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(mut value) => {
                self.scrub_value(&mut value);
                value.to_string()
            }
            Err(_) => textual,
        }
    }

    fn scrub_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => *text = self.scrub(text),
            Value::Number(n) => {
                let text = n.to_string();
                if self.scrub(&text) != text {
                    *value = Value::String(MASK.to_string());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.scrub_value(&mut v);
                    map.insert(self.scrub(&key), v);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// Whether `text` still contains a known secret value, by the same rules as
    /// [`Redactor::scrub`] (used by tests and by `check`).
    pub fn leaks(&self, text: &str) -> bool {
        self.anywhere.iter().any(|s| text.contains(s.as_str()))
            || !self.positional_hits(text).is_empty()
    }

    /// The byte ranges of short secrets standing in a secret position, sorted and merged.
    fn positional_hits(&self, text: &str) -> Vec<(usize, usize)> {
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for form in self.positional.iter() {
            for (start, _) in text.match_indices(form.as_str()) {
                let end = start + form.len();
                if in_secret_position(text, start, end) {
                    hits.push((start, end));
                }
            }
        }
        hits.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
        for (start, end) in hits {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    fn mask_positional(&self, text: &str) -> String {
        if self.positional.is_empty() {
            return text.to_string();
        }
        let hits = self.positional_hits(text);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in hits {
            out.push_str(&text[at..start]);
            out.push_str(MASK);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// Every form a secret value may take in text: as is, percent-encoded (form and path style),
/// percent-decoded, and escaped as inside a `Debug` or JSON string.
fn forms(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let form_encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let debug = format!("{secret:?}");
    let json = serde_json::to_string(secret).unwrap_or_default();
    let unquote = |quoted: &str| {
        quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(quoted)
            .to_string()
    };
    let mut out = vec![
        secret.to_string(),
        form_encoded,
        percent_encode_all(secret),
        unquote(&debug),
        unquote(&json),
    ];
    out.extend(percent_decode(secret, false));
    out.retain(|form| !form.is_empty());
    out.sort();
    out.dedup();
    out
}

/// Delimiters between the parts of a URL.
const URL_DELIMITERS: &str = "/:@?&=#.;,";
/// Characters that end a URL or a `name=value` value in free text.
const SPAN_END: &str = "\"'<>`)]}\\";

/// Whether `text[start..end]` stands whole in a position that carries secrets: a part of a
/// URL, the value of a `name=value` pair, or the value of a `Name: value` header line.
fn in_secret_position(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let ends_span = |c: char| c.is_whitespace() || SPAN_END.contains(c);

    let url_part = before.is_some_and(|c| URL_DELIMITERS.contains(c))
        && after.is_none_or(|c| URL_DELIMITERS.contains(c) || ends_span(c))
        && {
            let span_start = text[..start]
                .rfind(|c: char| c.is_whitespace() || "\"'<>`".contains(c))
                .map_or(0, |i| {
                    i + text[i..].chars().next().map_or(1, char::len_utf8)
                });
            text[span_start..start].contains("://")
        };
    if url_part {
        return true;
    }

    let pair_value = before == Some('=')
        && text[..start - 1]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && after.is_none_or(|c| ends_span(c) || "&#;,".contains(c));
    if pair_value {
        return true;
    }

    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_rest = text[end..].split('\n').next().unwrap_or("");
    match text[line_start..start].trim_start().split_once(':') {
        Some((name, gap)) => {
            !name.is_empty()
                && name.bytes().all(is_token_byte)
                && gap.chars().all(|c| c == ' ' || c == '\t')
                && line_rest.trim().is_empty()
        }
        None => false,
    }
}

/// A byte of an HTTP token (RFC 9110 §5.6.2), such as a header name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A [`Redactor`] that several owners share and that a config reload extends: the log
/// writer scrubs each line with [`SharedRedactor::current`], and every config loaded after
/// start (SIGHUP) adds its secrets with [`SharedRedactor::learn`].
///
/// Invariant: it only ever grows. A secret of the previous config (a rotated token, a removed
/// webhook's URL) stays masked, since deliveries of the old config may still be logging and a
/// rotated-out token may still be valid.
#[derive(Clone, Default)]
pub struct SharedRedactor(Arc<RwLock<Redactor>>);

impl fmt::Debug for SharedRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedRedactor({:?})", self.current())
    }
}

impl SharedRedactor {
    /// A handle starting with `redactor`'s secrets.
    pub fn new(redactor: Redactor) -> Self {
        SharedRedactor(Arc::new(RwLock::new(redactor)))
    }

    /// The redactor as it is now (cheap: it shares its lists).
    pub fn current(&self) -> Redactor {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds `redactor`'s secrets; those already known stay.
    pub fn learn(&self, redactor: &Redactor) {
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        *current = current.merged(redactor);
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

    #[test]
    fn short_secrets_are_masked_where_they_stand_whole_in_a_url() {
        let r = Redactor::new(["pw", "eu", "Zq9", "k1"]);
        let cases = [
            ("see https://u:pw@h/x", "see https://u:***@h/x"),
            ("GET https://h/eu/x?q=1", "GET https://h/***/x?q=1"),
            ("GET https://eu.h.io/x", "GET https://***.h.io/x"),
            ("GET https://h/x?a=Zq9&b=2", "GET https://h/x?a=***&b=2"),
            ("GET https://h/x#k1", "GET https://h/x#***"),
            ("(url: \"https://h/Zq9\")", "(url: \"https://h/***\")"),
        ];
        for (text, expected) in cases {
            assert_eq!(r.scrub(text), expected, "{text}");
            assert!(r.leaks(text), "{text}");
            assert!(!r.leaks(&r.scrub(text)), "{text}");
        }
    }

    #[test]
    fn short_secrets_are_masked_as_pair_and_header_values() {
        let r = Redactor::new(["Zq9"]);
        assert_eq!(r.scrub("k=Zq9 and more"), "k=*** and more");
        assert_eq!(r.scrub("k=Zq9&j=1"), "k=***&j=1");
        assert_eq!(r.scrub("X-Path: Zq9\nnext"), "X-Path: ***\nnext");
        assert_eq!(r.scrub("  X-Path:Zq9  "), "  X-Path:***  ");
    }

    #[test]
    fn short_secrets_stay_in_free_text() {
        let r = Redactor::new(["eu", "1", "/"]);
        for text in [
            "region eu is up",
            "attempt 1 of 3",
            "{\"attempts\":1,\"retry_in_ms\":100}",
            "listener-eu.logz.io answered",
            "https://h/europe/x",
            "a/b/c",
        ] {
            assert_eq!(r.scrub(text), text);
            assert!(!r.leaks(text), "{text}");
        }
    }

    #[test]
    fn every_form_of_a_secret_is_known() {
        let r = Redactor::new(["ab\"c d/é"]);
        for text in [
            "raw ab\"c d/é end",
            "debug \"ab\\\"c d/é\"",
            "json \"ab\\\"c d/é\"",
            "form ab%22c+d%2F%C3%A9",
            "path ab%22c%20d%2F%C3%A9",
        ] {
            assert!(r.leaks(text), "{text}");
            assert!(!r.leaks(&r.scrub(text)), "{text} -> {}", r.scrub(text));
        }
        let decoded = Redactor::new(["tok%2Fen"]);
        assert_eq!(decoded.scrub("said tok/en"), "said ***");
    }

    #[test]
    fn json_lines_stay_json() {
        let r = Redactor::new(["1234", "sec\"ret", "Zq9"]);
        let line =
            r#"{"level":"INFO","n":1234,"message":"got sec\"ret and https://h/Zq9","sec\"ret":1}"#;
        let scrubbed = r.scrub_json(line);
        let value: serde_json::Value = serde_json::from_str(&scrubbed).expect(&scrubbed);
        assert_eq!(value["n"], "***");
        assert_eq!(value["message"], "got *** and https://h/***");
        assert_eq!(value["***"], 1);
        assert!(!r.leaks(&scrubbed), "{scrubbed}");
        let plain = r#"{"message":"nothing here"}"#;
        assert_eq!(r.scrub_json(plain), plain);
    }

    #[test]
    fn url_secrets_are_the_password_and_secret_parameters() {
        let url = url::Url::parse("https://u:p%40ss@h/x?token=a%2Bb&type=x&api_key=k+1").unwrap();
        let secrets = url_secrets(&url);
        for expected in ["p%40ss", "p@ss", "a%2Bb", "a+b", "k+1", "k 1"] {
            assert!(
                secrets.iter().any(|s| s == expected),
                "{expected}: {secrets:?}"
            );
        }
        assert!(!secrets.iter().any(|s| s == "x"), "{secrets:?}");
        assert!(url_text_secrets("not a url").is_empty());
    }

    #[test]
    fn shared_redactor_learns_and_never_forgets() {
        let shared = SharedRedactor::new(Redactor::new(["first-secret"]));
        let reader = shared.clone();
        assert_eq!(
            reader.current().scrub("first-secret second-secret"),
            "*** second-secret"
        );
        shared.learn(&Redactor::new(["second-secret"]));
        assert_eq!(
            reader.current().scrub("first-secret second-secret"),
            "*** ***"
        );
        assert!(!format!("{shared:?}").contains("secret"));
    }

    #[test]
    fn unparsed_urls_lose_their_fragment() {
        assert_eq!(
            redact_url("https://[bad/x#frag-secret"),
            "https://[bad/x#***"
        );
    }
}
