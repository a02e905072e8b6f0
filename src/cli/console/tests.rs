//! The console's rules that need no broker: where it may listen, the filter's time range,
//! the auth gate's token check.

use super::*;

fn config() -> Arc<Config> {
    config_with("")
}

/// A config with `webhooks` as its one webhook file (`${T}` set).
fn config_with(webhooks: &str) -> Arc<Config> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("webhooks")).unwrap();
    std::fs::write(
        dir.path().join("relay.toml"),
        "[policy]\nallow_idle = true\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("webhooks/a.toml"), webhooks).unwrap();
    let env = crate::config::Env::from_pairs(vec![("T".to_string(), "secret-value".to_string())]);
    Arc::new(crate::config::load(dir.path(), &env).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }))
}

#[test]
fn loopback_needs_no_token_and_any_other_address_does() {
    let loopback: SocketAddr = "127.0.0.1:8088".parse().unwrap();
    let v6: SocketAddr = "[::1]:8088".parse().unwrap();
    let open: SocketAddr = "0.0.0.0:8088".parse().unwrap();
    assert!(console(config(), loopback, None, false).is_ok());
    assert!(console(config(), v6, None, false).is_ok());
    assert!(matches!(
        console(config(), open, None, false),
        Err(StartError::Exposed(_))
    ));
    assert!(matches!(
        console(config(), open, Some(String::new()), false),
        Err(StartError::Exposed(_))
    ));
    assert!(matches!(
        console(config(), open, Some("short".into()), false),
        Err(StartError::WeakToken)
    ));
    let with_token = console(config(), open, Some("a-long-enough-token".into()), false).unwrap();
    assert!(with_token.auth.required());
}

#[test]
fn the_token_and_csrf_checks_take_only_the_right_value() {
    let auth = auth::Auth::new(Some("a-long-enough-token".into()));
    assert!(auth.token_matches("a-long-enough-token"));
    assert!(!auth.token_matches("a-long-enough-tokeN"));
    assert!(!auth.token_matches("a-long-enough-token "));
    assert!(!auth.token_matches(""));
    assert!(!auth::Auth::new(None).token_matches(""));
    assert!(auth::same("abc", "abc"));
    assert!(!auth::same("abc", "abd"));
    assert!(!auth::same("abc", "ab"));
    assert!(!auth::same("", "abc"));
}

#[test]
fn a_session_is_known_by_its_cookie_and_has_its_own_csrf_token() {
    let auth = auth::Auth::new(Some("a-long-enough-token".into()));
    let one = auth.start_session();
    let two = auth.start_session();
    let csrf_one = auth.session_csrf(&one).expect("a live session");
    let csrf_two = auth.session_csrf(&two).expect("a live session");
    assert_ne!(one, two);
    assert_ne!(
        csrf_one, csrf_two,
        "one session's token is no good for another"
    );
    assert!(auth.session_csrf("not-a-session").is_none());

    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        axum::http::header::COOKIE,
        format!("other=1; {}={one}; last=2", auth::SESSION_COOKIE)
            .parse()
            .unwrap(),
    );
    assert_eq!(auth::cookie(&headers, auth::SESSION_COOKIE), Some(one));
    assert_eq!(auth::cookie(&headers, "missing"), None);
}

#[test]
fn auth_type_is_the_webhooks_auth_or_where_the_credential_sits() {
    let config = config_with(
        r#"
[[webhook]]
name = "in-url"
url = "https://listener.logz.io/?token=${T}&type=apono"
triggers = ["RequestApproved"]
body_template = '{}'

[[webhook]]
name = "bearer"
url = "https://example.com/hook"
triggers = ["RequestApproved"]
body_template = '{}'
headers = { Authorization = "Bearer ${T}" }

[[webhook]]
name = "open"
url = "https://example.com/hook"
triggers = ["RequestApproved"]
body_template = '{}'

[[webhook]]
name = "typed"
url = "https://example.com/hook"
triggers = ["RequestApproved"]
body_template = '{}'
[webhook.auth]
type = "bearer"
token = "${T}"
"#,
    );
    let auth = |name: &str| pages::auth_type(config.webhook(name).unwrap());
    assert_eq!(auth("in-url"), "token in URL");
    assert_eq!(auth("bearer"), "bearer token (header)");
    assert_eq!(auth("open"), "none");
    assert_eq!(auth("typed"), "bearer");
}

#[test]
fn another_sites_host_or_origin_is_refused() {
    use axum::http::{HeaderMap, HeaderValue, header};
    let headers = |host: &str, origin: Option<&str>| {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    };
    for host in [
        "127.0.0.1:8088",
        "localhost:8088",
        "[::1]:8088",
        "127.0.0.1",
        "LOCALHOST",
    ] {
        assert!(
            auth::same_site(&headers(host, None), false, true).is_ok(),
            "{host}"
        );
    }
    // DNS rebinding: a page of attacker.example rebound to 127.0.0.1.
    assert!(auth::same_site(&headers("attacker.example:8088", None), false, false).is_err());
    assert!(auth::same_site(&headers("127.0.0.1.attacker.example", None), false, false).is_err());
    // Behind a login, any host name (a reverse proxy's) is fine.
    assert!(auth::same_site(&headers("console.example.com", None), true, false).is_ok());
    // A POST from another origin is refused in both modes; a GET's Origin is not checked.
    let foreign = Some("http://attacker.example");
    assert!(auth::same_site(&headers("127.0.0.1:8088", foreign), false, true).is_err());
    assert!(auth::same_site(&headers("console.example.com", foreign), true, true).is_err());
    assert!(auth::same_site(&headers("127.0.0.1:8088", foreign), false, false).is_ok());
    let own = Some("http://127.0.0.1:8088");
    assert!(auth::same_site(&headers("127.0.0.1:8088", own), false, true).is_ok());
}
