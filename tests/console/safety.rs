//! Safety: the CSRF token on every POST, the refusal to listen beyond loopback without a
//! token, the login and its cookie, --read-only, the security headers.

use crate::browser::Browser;
use crate::console::{Console, assert_no_secret, dead_letter, event_with_id, wait_dead_letters};
use crate::pages::{WEBHOOKS, WRONG_TOKEN};
use crate::support::child::Child;
use crate::support::harness::{app, child_env};
use crate::support::logzio::TEST_TOKEN;
use std::io::{Read, Write};
use std::time::Duration;
use webhook_relay::model::event::Trigger;
use webhook_relay::pipeline::outcome::Reason;

/// An HTTP/1.1 answer: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first `name="csrf"` field on the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF token");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// One request on a connection of its own (the console speaks plain HTTP on loopback).
fn http(base: &str, method: &str, path: &str, form: Option<&str>, cookie: Option<&str>) -> Answer {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the console");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = form.unwrap_or("");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if form.is_some() {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test]
async fn a_post_without_the_csrf_token_gets_403() {
    let app = app("console-csrf")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    let event = event_with_id(Trigger::RequestApproved, "csrf-1");
    dead_letter(
        &app,
        &event,
        "audit",
        Reason::Rejected,
        Some(401),
        "http 401",
    )
    .await;
    let console = Console::start(&app, &[], &[]).await;
    let base = console.base.clone();

    let page = tokio::task::spawn_blocking({
        let base = base.clone();
        move || http(&base, "GET", "/dead-letters", None, None)
    })
    .await
    .unwrap();
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(!page.body.contains("<script>"), "no inline script");
    let csrf = page.csrf();

    for form in [
        "scope=filter&confirm=1".to_string(),
        "scope=filter&confirm=1&csrf=".to_string(),
        format!("scope=filter&confirm=1&csrf={}x", &csrf[..csrf.len() - 1]),
    ] {
        let base = base.clone();
        let answer = tokio::task::spawn_blocking(move || {
            http(&base, "POST", "/dead-letters/purge", Some(&form), None)
        })
        .await
        .unwrap();
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    for path in ["/dead-letters/replay", "/webhooks/audit/test"] {
        let base = base.clone();
        let answer = tokio::task::spawn_blocking(move || {
            http(
                &base,
                "POST",
                path,
                Some("scope=filter&trigger=RequestApproved"),
                None,
            )
        })
        .await
        .unwrap();
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
    }
    assert_eq!(wait_dead_letters(&app, 1).await, 1, "nothing was purged");
    assert!(app.listener().requests().is_empty(), "nothing was sent");

    // With its token the same POST goes through.
    let form = format!("scope=filter&confirm=1&csrf={csrf}");
    let answer = tokio::task::spawn_blocking(move || {
        http(&base, "POST", "/dead-letters/purge", Some(&form), None)
    })
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("Purged 1 dead letter"),
        "{}",
        answer.body
    );
    assert_eq!(wait_dead_letters(&app, 0).await, 0);
    let log = console.stop().await;
    assert!(
        log.contains("refused: a POST without the CSRF token"),
        "{log}"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_non_loopback_bind_without_a_token_refuses_to_start() {
    let app = app("console-exposed")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    let dir = app.config_dir().to_str().unwrap().to_string();
    let mut child = Child::spawn(
        &["console", "--config", &dir, "--listen", "0.0.0.0:0"],
        &child_env(&app, &[]),
    );
    let status = child
        .wait(Duration::from_secs(30))
        .await
        .expect("it exits at once");
    assert_eq!(status.code(), Some(2));
    let stderr = child.stderr.text();
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("RELAY_CONSOLE_TOKEN"),
        "{stderr}"
    );
    assert!(child.stdout.text().is_empty(), "it never served");
    app.finish().await;
}

#[tokio::test]
async fn read_only_hides_and_refuses_the_actions() {
    let app = app("console-read-only")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    let event = event_with_id(Trigger::RequestApproved, "ro-1");
    dead_letter(
        &app,
        &event,
        "audit",
        Reason::Rejected,
        Some(401),
        "http 401",
    )
    .await;
    let console = Console::start(&app, &["--read-only"], &[]).await;
    let base = console.base.clone();
    let (detail, list) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            (
                http(&base, "GET", "/webhooks/audit", None, None),
                http(&base, "GET", "/dead-letters", None, None),
            )
        }
    })
    .await
    .unwrap();
    assert!(detail.body.contains(r#"id="render""#), "Render stays");
    assert!(!detail.body.contains(r#"id="test""#), "Test is hidden");
    assert!(list.body.contains("ro-1"), "dead letters are listed");
    assert!(!list.body.contains("purge-all") && !list.body.contains("replay-all"));
    let csrf = detail.csrf();
    for path in [
        "/webhooks/audit/test",
        "/dead-letters/replay",
        "/dead-letters/purge",
    ] {
        let base = base.clone();
        let form = format!("csrf={csrf}&scope=filter&confirm=1&trigger=RequestApproved");
        let answer =
            tokio::task::spawn_blocking(move || http(&base, "POST", path, Some(&form), None))
                .await
                .unwrap();
        assert_eq!(answer.status, 403, "{path}");
        assert!(answer.body.contains("read-only"), "{path}: {}", answer.body);
    }
    assert_eq!(wait_dead_letters(&app, 1).await, 1);
    assert!(app.listener().requests().is_empty());
    console.stop().await;
    app.finish().await;
}

#[tokio::test]
async fn the_login_takes_the_token_and_sets_a_strict_cookie() {
    const TOKEN: &str = "console-token-0123456789";
    let app = app("console-login")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    let console = Console::start(&app, &[], &[("RELAY_CONSOLE_TOKEN", TOKEN)]).await;
    let base = console.base.clone();
    // Without a session: pages send to the login form, anything else is refused.
    let (home, post) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            (
                http(&base, "GET", "/dead-letters", None, None),
                http(
                    &base,
                    "POST",
                    "/dead-letters/purge",
                    Some("scope=filter"),
                    None,
                ),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(home.status, 303);
    assert_eq!(home.header("location"), Some("/login"));
    assert_eq!(post.status, 401);

    let Some(browser) = Browser::start("console login").await else {
        console.stop().await;
        app.finish().await;
        return;
    };
    browser.goto(&console.url("/")).await;
    assert!(browser.client.current_url().await.unwrap().path() == "/login");
    browser.screenshot("login").await;
    let field = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            client
                .find(fantoccini::Locator::Css("#token"))
                .await
                .expect("the token field")
        }
    };
    field(&browser)
        .await
        .send_keys("not-the-token")
        .await
        .unwrap();
    browser.click("#login").await;
    assert_eq!(browser.text("#login-error").await, "wrong token");
    field(&browser).await.send_keys(TOKEN).await.unwrap();
    browser.click("#login").await;
    browser.wait_for("#webhooks").await;
    assert_eq!(browser.count("tr[data-webhook]").await, 3);
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "relay_console_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    let mut pages = vec![browser.source().await];
    for path in ["/webhooks/audit", "/schema", "/dead-letters"] {
        browser.goto(&console.url(path)).await;
        pages.push(browser.source().await);
    }
    for page in &pages {
        assert_no_secret(page, &[TOKEN, TEST_TOKEN, WRONG_TOKEN]);
    }
    browser.close().await;
    let log = console.stop().await;
    assert!(
        log.contains("login refused") && log.contains("logged in"),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN),
        "the log shows the console token:\n{log}"
    );
    app.finish().await;
}
