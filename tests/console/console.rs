//! One test's console: the harness's exchange, queues and listeners, the real binary running
//! `console` on a free loopback port, and dead letters put straight into the test's
//! dead-letter queue.

use crate::support::child::Child;
use crate::support::harness::{TestApp, child_env};
use lapin::BasicProperties;
use serde_json::Value;
use std::time::{Duration, Instant};
use webhook_relay::broker::dead_letter::DeadLetter;
use webhook_relay::model::event::{self, Trigger};
use webhook_relay::pipeline::outcome::{Failure, Reason};

/// A running console and where it answers.
pub struct Console {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Console {
    /// Starts `console` on the app's config with `args` and the extra variables `env`; waits
    /// (bounded) for the line naming its URL.
    pub async fn start(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Console {
        let dir = app
            .config_dir()
            .to_str()
            .expect("UTF-8 temp dir")
            .to_string();
        let mut all = vec!["console", "--config", &dir, "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = Child::spawn(&all, &child_env(app, env));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = child.stdout.text();
            if let Some(rest) = out.split("console on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap_or_default();
                return Console {
                    base: url.trim_end_matches('/').to_string(),
                    child,
                };
            }
            assert!(
                child.is_running() && Instant::now() < deadline,
                "the console did not start:\n{}\n{}",
                child.stdout.text(),
                child.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops it and returns its log.
    pub async fn stop(mut self) -> String {
        self.child.terminate();
        let _ = self.child.wait(Duration::from_secs(10)).await;
        self.child.kill();
        self.child.stderr.text()
    }
}

/// A sample event of `trigger` with request id `id`.
pub fn event_with_id(trigger: Trigger, id: &str) -> Value {
    let mut event = event::sample(trigger);
    event["data"]["id"] = id.into();
    event
}

/// The event id the relay gives `event`.
pub fn event_id(event: &Value) -> String {
    event::decode(event.to_string().as_bytes(), None)
        .expect("a valid event")
        .id
        .0
}

/// Puts a dead letter of `event` for `webhook` into the app's dead-letter queue, as the
/// worker writes it (the same headers), with a publisher confirm.
pub async fn dead_letter(
    app: &TestApp,
    event: &Value,
    webhook: &str,
    reason: Reason,
    status: Option<u16>,
    error: &str,
) {
    let id = event::decode(event.to_string().as_bytes(), None)
        .expect("a valid event")
        .id;
    let letter = DeadLetter {
        webhook: Some(webhook.to_string()),
        event_id: Some(id),
        failure: Failure::new(reason, error).with_status(status),
        failed_at: std::time::SystemTime::now(),
    };
    let routing_key = event["event_type"].as_str().unwrap_or("unknown");
    let properties = letter.properties(
        &BasicProperties::default().with_content_type("application/json".into()),
        routing_key,
    );
    app.admin
        .publisher()
        .publish_confirmed(
            "",
            &app.config.amqp.dead_letter_queue,
            event.to_string().as_bytes(),
            properties,
        )
        .await
        .expect("publish a dead letter");
}

/// Waits (bounded) until the dead-letter queue holds `n` ready messages; returns how many it
/// holds. A console request returns what it read when its connection closes, just after the
/// page is sent.
pub async fn wait_dead_letters(app: &TestApp, n: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app.ready_count(&app.config.amqp.dead_letter_queue).await;
        if ready == n || Instant::now() >= deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts a page shows none of the secrets: the Logz.io token, the console token, the broker
/// password in its URL.
pub fn assert_no_secret(page: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!page.contains(secret), "a page shows `{secret}`:\n{page}");
    }
    assert!(!page.contains("guest:guest"), "a page shows the broker URL");
}
