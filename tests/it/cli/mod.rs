//! The operator commands through the real binary: `check`, `webhooks`, `render`, `test`,
//! `publish` and `dlq list | show | replay | purge`, against the real broker and local HTTPS
//! listeners. Each run gets `--config <the test's folder>` and exactly the harness's variables.

use crate::binary::{Finished, Relay};
use crate::harness::{TestApp, child_env, sample_with};
use crate::support::logzio::TEST_TOKEN;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use webhook_relay::model::event::Trigger;

mod check;
mod dlq;
mod endpoints;
mod publish;
mod render;
mod test_webhook;
mod webhooks;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `webhook-relay <args> --config <the app's folder>` with the harness's variables plus
/// `extra` (a later value wins), and waits for it to exit.
async fn cli(app: &TestApp, args: &[&str], extra: &[(&str, &str)]) -> Finished {
    cli_in(app, app.config_dir(), args, extra, None).await
}

/// [`cli`] with another config folder and optional stdin.
async fn cli_in(
    app: &TestApp,
    dir: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
    stdin: Option<&str>,
) -> Finished {
    let dir = dir.to_str().expect("temp dir path is UTF-8");
    let mut all = args.to_vec();
    all.extend(["--config", dir]);
    let finished = Relay::spawn_with_stdin(
        &all,
        &child_env(app, extra),
        stdin.map(|s| s.as_bytes().to_vec()),
    )
    .exit_within(WAIT)
    .await;
    let shown = format!("{}\n{}", finished.stdout, finished.stderr);
    assert!(
        !shown.contains(TEST_TOKEN),
        "`webhook-relay {}` printed the token:\n{shown}",
        args.join(" ")
    );
    assert!(!shown.contains("panicked"), "{shown}");
    finished
}

/// The JSON a `--json` run printed.
fn json(finished: &Finished) -> Value {
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            finished.stdout, finished.stderr
        )
    })
}

/// Asserts the exit code, showing what was printed when it is wrong.
#[track_caller]
fn assert_exit(finished: &Finished, code: i32) {
    assert_eq!(
        finished.code(),
        Some(code),
        "exit code; stdout:\n{}\nstderr:\n{}",
        finished.stdout,
        finished.stderr
    );
}

/// Waits until `queue` holds `n` ready messages; returns the last count seen.
async fn wait_ready(app: &TestApp, queue: &str, n: u32) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = app.ready_count(queue).await;
        if count == n || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A sample event of `trigger` with its own `data.id`.
fn event(trigger: Trigger, id: &str) -> Value {
    sample_with(trigger, |e| e["data"]["id"] = id.into())
}

const APPROVALS: &str = r#"
[[webhook]]
name = "approvals"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "email": "{{ data.requester.email }}"}'
"#;
