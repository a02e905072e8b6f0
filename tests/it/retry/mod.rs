//! The durable retry path: a delivery still failing after its short in-process window is
//! parked in its webhook's retry queue (through a TTL wait queue), the input is acked, and
//! later attempts come from the retry queue with the same budget, across restarts. Also the
//! circuit breaker, quorum queues with their redelivery limit, SIGHUP reload through the real
//! binary, and several broker URLs.

use crate::harness::TestApp;
use std::time::{Duration, Instant};
use webhook_relay::broker::Inbound;
use webhook_relay::broker::dead_letter;

mod broker;
mod circuit;
mod path;
mod reload;

const WAIT: Duration = Duration::from_secs(10);

/// A webhook for approvals on listener `n`, body `{"id": data.id}`, with `extra` TOML lines
/// appended (e.g. a `[webhook.delivery]` table).
fn hook(name: &str, n: usize, extra: &str) -> String {
    format!(
        r#"
[[webhook]]
name = "{name}"
url = "@URL{n}@"
triggers = ["RequestApproved"]
body_template = '{{"id": "{{{{ data.id }}}}"}}'
{extra}
"#
    )
}

/// A header of a message as an integer.
fn header_number(message: &Inbound, name: &str) -> Option<i64> {
    dead_letter::header_number(message.properties.headers().as_ref()?, name)
}

/// Waits until nothing is ready on `webhook`'s retry path.
async fn retry_path_drained(app: &TestApp, webhook: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if app.retry_path_count(webhook).await == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
