//! `check`, `webhooks` and `test` on a webhook with auth, signing, validators and a rate
//! limit: each setting shown, no secret printed, validator verdicts in `test`.

use super::{assert_exit, cli, json};
use crate::harness::app;
use crate::support::logzio::Scripted;

const FULL: &str = r#"
[[webhook]]
name = "full"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
rate_limit = "5/s"

[webhook.auth]
type = "bearer"
token = "${API_TOKEN}"

[webhook.signing]
secrets = ["${WHSEC_CURRENT}", "${WHSEC_PREVIOUS}"]

[[webhook.response_validators]]
path = "$.data.status"
expected = ["ok"]
"#;

const API_TOKEN: &str = "api-token-0123456789";
const CURRENT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PREVIOUS: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn assert_no_secret(text: &str) {
    for secret in [API_TOKEN, CURRENT, PREVIOUS, "C2FVsBQIhrscChlQIMV"] {
        assert!(!text.contains(secret), "printed a secret:\n{text}");
    }
}

#[tokio::test]
async fn check_webhooks_and_test_show_auth_signing_validators_and_rate_limit() {
    let app = app("cli-endpoints")
        .webhook(FULL)
        .env("API_TOKEN", API_TOKEN)
        .env("WHSEC_CURRENT", CURRENT)
        .env("WHSEC_PREVIOUS", PREVIOUS)
        .build()
        .await;
    let line = r#"auth bearer; signed (Standard Webhooks, 2 keys); validates $.data.status in ["ok"]; rate limit 5/s per worker"#;

    let out = cli(&app, &["check"], &[]).await;
    assert_exit(&out, 0);
    assert!(
        out.stdout.contains(&format!("webhook `full`: {line}")),
        "{}",
        out.stdout
    );
    assert_no_secret(&out.stdout);

    let out = cli(&app, &["webhooks"], &[]).await;
    assert_exit(&out, 0);
    assert!(
        out.stdout.contains(&format!("  full: {line}")),
        "{}",
        out.stdout
    );
    let out = cli(&app, &["--json", "webhooks"], &[]).await;
    let rows = json(&out);
    assert_eq!(rows[0]["auth"], "bearer");
    assert_eq!(rows[0]["signing_keys"], 2);
    assert_eq!(rows[0]["rate_limit"], "5/s");
    assert_eq!(rows[0]["response_validators"][0]["path"], "$.data.status");
    assert_no_secret(&out.stdout);

    app.listener()
        .push_response(Scripted::status(200).with_body(r#"{"data":{"status":"ok"}}"#));
    let out = cli(&app, &["test", "full"], &[]).await;
    assert_exit(&out, 0);
    for needle in [
        "  auth       bearer",
        "  rate limit 5/s per worker",
        "  Authorization: Bearer ***",
        "  webhook-id: full:",
        "  webhook-timestamp: <attempt time>",
        "  webhook-signature: v1,*** v1,***",
        r#"  validator  pass $.data.status = "ok" (expected one of "ok")"#,
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(needle)),
            "no line starting `{needle}`:\n{}",
            out.stdout
        );
    }
    assert_no_secret(&out.stdout);
    let sent = &app.listener().requests()[0];
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {API_TOKEN}").as_str())
    );
    assert_eq!(
        sent.header("webhook-signature").unwrap().split(' ').count(),
        2
    );

    app.listener()
        .push_response(Scripted::status(200).with_body(r#"{"data":{"status":"queued"}}"#));
    let out = cli(&app, &["--json", "test", "full"], &[]).await;
    assert_exit(&out, 1);
    let invocation = json(&out);
    let attempt = &invocation["attempts"][0];
    assert_eq!(attempt["validations"][0]["passed"], false, "{invocation:#}");
    assert_eq!(attempt["validations"][0]["found"], "\"queued\"");
    assert_eq!(attempt["failure"], "response rejected");
    assert!(
        invocation["hint"]
            .as_str()
            .is_some_and(|h| h.contains("response validators")),
        "{invocation:#}"
    );
    assert_no_secret(&out.stdout);
    app.finish().await;
}

/// An OAuth2 webhook whose endpoint echoes the request's `Authorization` back (a 401 with the
/// header in its body and in a header of its own): `test` and `test --json` show the echo with
/// the live access token masked.
#[tokio::test]
async fn test_masks_an_oauth2_token_the_endpoint_echoes_back() {
    use crate::endpoint_server::{Endpoint, Reply};
    const ACCESS_TOKEN: &str = "tok-LEAK-abcdef0123456789";
    let endpoint = Endpoint::start(|seen| match seen.path.as_str() {
        "/token" => Reply::new(
            200,
            format!(r#"{{"access_token":"{ACCESS_TOKEN}","expires_in":3600}}"#),
        ),
        _ => Reply::new(
            401,
            format!(
                r#"{{"error":"denied","echo":"{}"}}"#,
                seen.header("authorization").unwrap_or("")
            ),
        ),
    })
    .await;
    let app = app("cli-oauth-echo").build().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), endpoint.ca_pem()).unwrap();
    std::fs::write(
        dir.path().join("relay.toml"),
        format!(
            "[http]\nca_file = \"ca.pem\"\n[policy]\nallowed_ports = [{}]\n",
            endpoint.port()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("webhooks")).unwrap();
    std::fs::write(
        dir.path().join("webhooks/echo.toml"),
        format!(
            "[[webhook]]\nname = \"echo\"\nurl = \"{}\"\ntriggers = [\"RequestApproved\"]\n\
             body_template = '{{}}'\n[webhook.auth]\ntype = \"oauth2\"\ntoken_url = \"{}\"\n\
             client_id = \"relay\"\nclient_secret = \"${{CLIENT_SECRET}}\"\n",
            endpoint.url("/hook"),
            endpoint.url("/token"),
        ),
    )
    .unwrap();
    let env = [("CLIENT_SECRET", "client-secret-0123456789")];
    for args in [&["test", "echo"][..], &["--json", "test", "echo"][..]] {
        let out = super::cli_in(&app, dir.path(), args, &env, None).await;
        assert_exit(&out, 1);
        let shown = format!("{}\n{}", out.stdout, out.stderr);
        assert!(
            !shown.contains(ACCESS_TOKEN) && !shown.contains("client-secret-0123456789"),
            "`{}` printed a secret:\n{shown}",
            args.join(" ")
        );
        assert!(
            shown.contains("Bearer ***"),
            "the echo is shown, masked:\n{shown}"
        );
    }
    assert!(
        endpoint
            .seen_at("/hook")
            .iter()
            .any(|s| s.header("authorization") == Some(&format!("Bearer {ACCESS_TOKEN}"))),
        "the endpoint did get the token"
    );
    app.finish().await;
}
