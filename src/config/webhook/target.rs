//! A webhook's target URL: parsed, checked against `[policy]` (scheme, host, port), shown redacted,
//! and searched for credentials too short to be masked everywhere.

use super::WebhookUrl;
use crate::config::relay::Policy;
use crate::redact::{self, Redactor, Secret};

/// Parses a webhook URL and applies the policy: scheme, host, port. `shown` is the URL as
/// written with every `${VAR}` masked ([`url_display_source`]): the URL is displayed from
/// it, redacted further (password, secret query values, fragment), so that no substituted
/// value shows, wherever it sits.
///
/// [`url_display_source`]: crate::config::Interpolated::url_display_source
pub(super) fn check_url(text: &str, shown: &str, policy: &Policy) -> Result<WebhookUrl, String> {
    let shown = redact::redact_url(shown);
    let url = url::Url::parse(text).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if !policy.require_https => {}
        "http" => {
            return Err(format!(
                "`{shown}` is not HTTPS; webhook URLs must use https:// (policy.require_https)"
            ));
        }
        other => return Err(format!("`{shown}`: scheme `{other}` is not supported")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` has no host"));
    }
    if let Some(port) = url.port()
        && !policy.allowed_ports.contains(&port)
    {
        return Err(format!(
            "`{shown}`: port {port} is not allowed; add it to policy.allowed_ports (now {:?})",
            policy.allowed_ports
        ));
    }
    Ok(WebhookUrl {
        url: Secret::new(url),
        shown,
    })
}

/// Credentials written out in the URL (not `${VAR}`) that are too short to be masked
/// everywhere: `the password`, and each secret query parameter of `inline_secrets` (see
/// [`crate::config::secrets::inline_url_secrets`]) as ``query parameter `NAME` ``.
pub(super) fn short_inline_credentials(
    written: &str,
    url: &url::Url,
    inline_secrets: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let userinfo_written = written
        .split_once('@')
        .is_some_and(|(before, _)| before.contains("://") && !before.contains("${"));
    if userinfo_written
        && let Some(password) = url.password()
        && password.len() < Redactor::FREE_TEXT_MIN_LEN
    {
        out.push("the password".to_string());
    }
    for (name, value) in url.query_pairs() {
        let inline = format!("url (query parameter {name})");
        if inline_secrets.contains(&inline) && value.len() < Redactor::FREE_TEXT_MIN_LEN {
            out.push(format!("query parameter `{name}`"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ports: &[u16]) -> Policy {
        Policy {
            require_https: true,
            allowed_ports: ports.to_vec(),
            ..Policy::default()
        }
    }

    #[test]
    fn url_policy() {
        assert!(
            check_url(
                "https://listener.logz.io/?token=x",
                "https://listener.logz.io/?token=x",
                &policy(&[])
            )
            .is_ok()
        );
        let err = check_url(
            "https://listener.logz.io:8071/?token=abc",
            "https://listener.logz.io:8071/?token=abc",
            &policy(&[]),
        )
        .unwrap_err();
        assert!(err.contains("port 8071 is not allowed"), "{err}");
        assert!(!err.contains("abc"), "{err}");
        assert!(
            check_url(
                "https://listener.logz.io:8071/?token=x",
                "https://listener.logz.io:8071/?token=x",
                &policy(&[8071])
            )
            .is_ok()
        );
        assert!(
            check_url("https://h:443/", "https://h:443/", &policy(&[])).is_ok(),
            "default port"
        );
        let err =
            check_url("http://h/?token=abc", "http://h/?token=abc", &policy(&[])).unwrap_err();
        assert!(
            err.contains("not HTTPS") && err.contains("token=***"),
            "{err}"
        );
        let lax = Policy {
            require_https: false,
            allowed_ports: vec![],
            ..Policy::default()
        };
        assert!(check_url("http://h/", "http://h/", &lax).is_ok());
        assert!(
            check_url("ftp://h/", "ftp://h/", &lax)
                .unwrap_err()
                .contains("scheme")
        );
    }

    #[test]
    fn short_inline_credentials_are_named() {
        let written = "https://u:pw@h/?token=ab&k=${K}&api_key=long-enough";
        let url = url::Url::parse("https://u:pw@h/?token=ab&k=x&api_key=long-enough").unwrap();
        let inline = crate::config::secrets::inline_url_secrets(written);
        assert_eq!(
            short_inline_credentials(written, &url, &inline),
            ["the password", "query parameter `token`"]
        );
        let substituted = "https://u:${PW}@h/";
        let url = url::Url::parse("https://u:pw@h/").unwrap();
        assert!(short_inline_credentials(substituted, &url, &[]).is_empty());
    }
}
