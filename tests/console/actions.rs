//! The dead letters: hostile text shown as text, Replay of one, Purge behind a confirmation.

use crate::browser::Browser;
use crate::console::{
    Console, assert_no_secret, dead_letter, event_id, event_with_id, wait_dead_letters,
};
use crate::pages::{WEBHOOKS, WRONG_TOKEN};
use crate::support::harness::app;
use crate::support::logzio::TEST_TOKEN;
use std::time::Duration;
use webhook_relay::model::event::Trigger;
use webhook_relay::pipeline::outcome::Reason;

const HOSTILE: &str = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">";

#[tokio::test]
async fn hostile_text_is_text_and_replay_reaches_the_endpoint() {
    let Some(browser) = Browser::start("console replay").await else {
        return;
    };
    let app = app("console-replay")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    let mut hostile = event_with_id(Trigger::RequestApproved, "hostile-1");
    hostile["data"]["justification"] = HOSTILE.into();
    let plain = event_with_id(Trigger::RequestCreated, "plain-1");
    dead_letter(
        &app,
        &hostile,
        "audit",
        Reason::Rejected,
        Some(401),
        HOSTILE,
    )
    .await;
    dead_letter(
        &app,
        &plain,
        "audit",
        Reason::DeliveryFailed,
        Some(503),
        "http 503",
    )
    .await;
    // One delivery parked in `audit`'s retry queue, for the table's depth.
    app.admin
        .publisher()
        .publish_confirmed(
            "",
            &webhook_relay::broker::topology::retry_queue(&app.config.amqp.queue, "audit"),
            plain.to_string().as_bytes(),
            lapin::BasicProperties::default(),
        )
        .await
        .expect("park a delivery");
    let console = Console::start(&app, &[], &[]).await;

    // The table counts them from the broker.
    browser.goto(&console.url("/")).await;
    assert_eq!(
        browser.text("tr[data-webhook='audit'] .dead-letters").await,
        "2"
    );
    assert_eq!(
        browser.text("tr[data-webhook='audit'] .retry-depth").await,
        "1"
    );
    assert_eq!(
        browser
            .text("tr[data-webhook='wrong-token'] .dead-letters")
            .await,
        "0"
    );
    browser
        .click("tr[data-webhook='audit'] .dead-letters a")
        .await;
    assert_eq!(browser.count("tr.dead-letter").await, 2);
    let count = browser.text("#dlq-count").await;
    assert!(count.starts_with("2 of 2 dead letters match"), "{count}");
    browser.screenshot("dead-letters").await;

    // The hostile justification and error are shown as text: no script ran, no element made.
    let hostile_id = event_id(&hostile);
    browser
        .click(&format!("tr[data-event-id='{hostile_id}'] a"))
        .await;
    let body = browser.text("#event-body").await;
    // Pretty-printed JSON: the quotes inside are escaped.
    assert!(body.contains(&HOSTILE.replace('"', "\\\"")), "{body}");
    assert!(browser.text("#headers").await.contains(HOSTILE));
    assert_eq!(
        browser
            .count("#event-body script, #event-body img, #headers img")
            .await,
        0
    );
    let pwned = browser
        .client
        .execute("return window.pwned === undefined;", vec![])
        .await
        .expect("script");
    assert_eq!(pwned, serde_json::Value::Bool(true), "a hostile script ran");
    browser.screenshot("dead-letter").await;

    // Replay it: it reaches the endpoint (only the failed webhook) and leaves the list.
    browser.click("#replay-one").await;
    let summary = browser.text("#replay-summary").await;
    assert!(summary.starts_with("1 selected: 1 delivered"), "{summary}");
    let received = app
        .listener()
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
    assert_eq!(received.len(), 1);
    assert!(received[0].body_text().contains("hostile-1"));
    assert_eq!(wait_dead_letters(&app, 1).await, 1);
    browser.goto(&console.url("/dead-letters")).await;
    assert_eq!(browser.count("tr.dead-letter").await, 1);
    assert_eq!(
        browser
            .count(&format!("tr[data-event-id='{hostile_id}']"))
            .await,
        0,
        "the replayed dead letter is gone"
    );
    assert_eq!(
        browser
            .count(&format!("tr[data-event-id='{}']", event_id(&plain)))
            .await,
        1,
        "the other one stays"
    );
    assert_no_secret(&browser.source().await, &[TEST_TOKEN, WRONG_TOKEN]);

    let log = console.stop().await;
    assert!(
        log.contains("replayed dead letters") && log.contains(&hostile_id),
        "replays are logged with their ids:\n{log}"
    );
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn purge_asks_first_naming_the_count() {
    let Some(browser) = Browser::start("console purge").await else {
        return;
    };
    let app = app("console-purge")
        .webhook(WEBHOOKS)
        .env("WRONG_TOKEN", WRONG_TOKEN)
        .build()
        .await;
    for id in ["purge-1", "purge-2"] {
        let event = event_with_id(Trigger::RequestApproved, id);
        dead_letter(
            &app,
            &event,
            "wrong-token",
            Reason::Rejected,
            Some(401),
            "http 401",
        )
        .await;
    }
    let kept = event_with_id(Trigger::RequestApproved, "kept-1");
    dead_letter(
        &app,
        &kept,
        "audit",
        Reason::DeliveryFailed,
        Some(500),
        "http 500",
    )
    .await;
    let console = Console::start(&app, &[], &[]).await;

    // The filters: reason, time range (UTC), webhook.
    for (query, rows) in [
        ("reason=delivery_failed", 1),
        ("reason=rejected", 2),
        ("since=2000-01-01T00:00", 3),
        ("since=2999-01-01T00:00", 0),
        ("until=2000-01-01T00:00", 0),
        ("webhook=audit&until=2999-01-01T00:00", 1),
    ] {
        browser
            .goto(&console.url(&format!("/dead-letters?{query}")))
            .await;
        assert_eq!(browser.count("tr.dead-letter").await, rows, "{query}");
    }

    // Filter to one webhook, then Purge all matching: a confirmation naming the count first.
    browser
        .goto(&console.url("/dead-letters?webhook=wrong-token"))
        .await;
    assert_eq!(browser.count("tr.dead-letter").await, 2);
    browser.click("#purge-all").await;
    assert_eq!(
        browser.text("#confirm-title").await,
        "Purge 2 dead letters?"
    );
    assert_eq!(
        wait_dead_letters(&app, 3).await,
        3,
        "asking deletes nothing"
    );
    browser.screenshot("purge-confirm").await;

    browser.click("#confirm-purge").await;
    assert_eq!(browser.text("#purged").await, "Purged 2 dead letters");
    assert_eq!(wait_dead_letters(&app, 1).await, 1, "only the two are gone");
    browser.goto(&console.url("/dead-letters")).await;
    assert_eq!(browser.count("tr.dead-letter").await, 1);
    assert_eq!(
        browser
            .count(&format!("tr[data-event-id='{}']", event_id(&kept)))
            .await,
        1
    );
    assert_eq!(app.listener().requests().len(), 0, "purge delivers nothing");

    let log = console.stop().await;
    assert!(log.contains("purged dead letters"), "{log}");
    browser.close().await;
    app.finish().await;
}
