//! Reading: the webhooks table's dots, Test's invocation data for a 200 and a 401 with its
//! hint, Render, the schema; and no page shows a secret.

use crate::browser::Browser;
use crate::console::{Console, assert_no_secret};
use crate::support::harness::app;
use crate::support::logzio::TEST_TOKEN;

/// `audit` delivers to the local listener; `wrong-token` is refused with 401; `paused` is
/// inactive.
pub const WEBHOOKS: &str = r#"
[[webhook]]
name = "audit"
url = "@URL0@"
triggers = ["RequestApproved", "RequestCreated"]
body_template = '{"id": "{{ data.id }}", "justification": "{{ data.justification }}"}'

[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "paused"
status = "inactive"
url = "@URL0@"
triggers = ["RequestRejected"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// The wrong token `wrong-token` sends: a secret too, never shown.
pub const WRONG_TOKEN: &str = "wrong-token-value-123";

#[tokio::test]
async fn the_table_shows_the_dots_and_test_shows_the_invocation_data() {
    let Some(browser) = Browser::start("console pages").await else {
        return;
    };
    let app = app("console-pages")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    let console = Console::start(&app, &[], &[]).await;
    let secrets = [TEST_TOKEN, WRONG_TOKEN];

    // The webhooks table: a green dot for active, a white one for inactive.
    browser.goto(&console.url("/")).await;
    let dot = |name: &str| format!("tr[data-webhook='{name}'] .dot");
    let status = |name: &'static str| {
        let css = dot(name);
        let browser = &browser;
        async move {
            browser
                .client
                .find(fantoccini::Locator::Css(&css))
                .await
                .expect("a dot")
                .attr("data-status")
                .await
                .expect("attr")
        }
    };
    assert_eq!(status("audit").await.as_deref(), Some("active"));
    assert_eq!(status("wrong-token").await.as_deref(), Some("active"));
    assert_eq!(status("paused").await.as_deref(), Some("inactive"));
    assert_eq!(browser.text(&dot("audit")).await, "●");
    assert_eq!(browser.text(&dot("paused")).await, "○");
    assert_eq!(
        browser.text("tr[data-webhook='audit'] .auth").await,
        "token in URL"
    );
    assert_eq!(
        browser.text("tr[data-webhook='audit'] .dead-letters").await,
        "0"
    );
    assert_eq!(
        browser.text("tr[data-webhook='audit'] .retry-depth").await,
        "0"
    );
    assert_no_secret(&browser.source().await, &secrets);
    browser.screenshot("webhooks").await;

    // Detail: the config with secrets masked.
    browser.goto(&console.url("/webhooks/audit")).await;
    assert!(browser.text("#config").await.contains("token=***"));
    assert_no_secret(&browser.source().await, &secrets);
    browser.screenshot("webhook").await;

    // Render: the body, nothing sent.
    browser.click("#render").await;
    let rendered = browser.text("#rendered").await;
    assert!(
        rendered.starts_with("POST https://127.0.0.1:"),
        "{rendered}"
    );
    assert!(rendered.contains(r#""id": ""#), "{rendered}");
    assert!(app.listener().requests().is_empty(), "render sends nothing");
    assert_no_secret(&browser.source().await, &secrets);

    // Render of a pasted event.
    browser.goto(&console.url("/webhooks/audit")).await;
    browser.click("#event-form summary").await;
    let mut pasted =
        webhook_relay::model::event::sample(webhook_relay::model::event::Trigger::RequestCreated);
    pasted["data"]["id"] = "pasted-42".into();
    browser
        .client
        .find(fantoccini::Locator::Css("#event"))
        .await
        .expect("the event box")
        .send_keys(&pasted.to_string())
        .await
        .expect("type the event");
    browser.click("#render").await;
    let rendered = browser.text("#rendered").await;
    assert!(rendered.contains(r#""id": "pasted-42""#), "{rendered}");
    assert!(app.listener().requests().is_empty(), "render sends nothing");

    // Test, 200: the invocation data.
    browser.goto(&console.url("/webhooks/audit")).await;
    browser.click("#test").await;
    assert_eq!(browser.text("#verdict").await, "Test successful");
    assert_eq!(browser.text(".response .status").await, "200");
    assert!(browser.text("#request").await.contains("token=***"));
    assert_eq!(browser.count("#hint").await, 0);
    assert_eq!(app.listener().requests().len(), 1, "test sends one request");
    assert_no_secret(&browser.source().await, &secrets);
    browser.screenshot("invocation").await;

    // Test, 401: the verdict and the CLI's hint.
    browser.goto(&console.url("/webhooks/wrong-token")).await;
    browser.click("#test").await;
    assert_eq!(browser.text("#verdict").await, "Test failed");
    assert_eq!(browser.text(".response .status").await, "401");
    let hint = browser.text("#hint").await;
    assert!(
        hint.contains("the token or credentials were refused"),
        "{hint}"
    );
    assert_no_secret(&browser.source().await, &secrets);
    browser.screenshot("invocation-401").await;

    // The schema: a tree with Handlebars paths.
    browser.goto(&console.url("/schema")).await;
    let schema = browser.text("#schema").await;
    assert!(schema.contains("{{ data.requester.email }}"), "{schema}");
    assert!(browser.count("#schema tr.depth-2").await > 0);
    assert_eq!(
        browser.count("button.copy:not([hidden])").await,
        browser.count("button.copy").await,
        "the script shows the copy buttons"
    );
    browser.screenshot("schema").await;

    let log = console.stop().await;
    assert!(log.contains("test sent"), "tests are logged:\n{log}");
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
    browser.close().await;
    app.finish().await;
}
