//! Batching: a per-webhook batcher between `template` and `delivery`. Each rendered body
//! becomes one NDJSON line; up to `max_events` lines (or `max_bytes`, or whatever arrived
//! within `linger`) go out as one request, and the request's outcome fans back out to every
//! event's own join in `settle`. Each event is still acked only when its line's batch
//! succeeded, was dead-lettered or was parked.
//!
//! Logz.io answers a batch with a bad line with 400 and line counts, not line numbers, and
//! keeps the lines it counted as successful. So bad lines are found before sending: a line
//! must be a JSON document of at most 500,000 bytes, exactly the listener's own rules, and
//! one that is not is dead-lettered on its own. If the listener still answers 400, the batch
//! is split in halves and re-sent only when it accepted none of its lines; when it accepted
//! some, nothing is re-sent (that would duplicate them) and every line of the batch is
//! dead-lettered as `rejected` with the counts, for an operator to look at.
//!
//! `max_events` is clamped to the prefetch: a batch that can never fill would wait out
//! `linger` every time.

use crate::config::{BatchSettings, Config, DeliverySettings, MAX_LINE_BYTES, Webhook};
use crate::model::event::EventId;
use crate::pipeline::delivery::{Deliverer, DeliveryRequest, Finished};
use crate::pipeline::outcome::{Failure, Outcome, Parked, Reason, RetryState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One event's line, on its way into a batch.
#[derive(Debug)]
pub struct Line {
    /// The compact, single-line JSON body.
    pub text: String,
    /// The event it was rendered from.
    pub event_id: EventId,
    /// Attempts made before, when the event comes back from the retry queue.
    pub prior: Option<RetryState>,
}

/// Turns a rendered body into an NDJSON line: one compact JSON object of at most 500,000
/// bytes. A body that is not JSON is a render failure; one that is too large is rejected
/// before it is sent.
pub fn to_line(body: &str) -> Result<String, Failure> {
    let single_line = !body.contains(['\n', '\r']);
    let text = if single_line {
        if serde_json::from_str::<serde::de::IgnoredAny>(body).is_err() {
            return Err(not_json(body));
        }
        body.trim().to_string()
    } else {
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(value) => value.to_string(),
            Err(_) => return Err(not_json(body)),
        }
    };
    if !text.starts_with('{') {
        return Err(Failure::new(
            Reason::RenderFailed,
            "a batch line must be a JSON object (one log per line)",
        ));
    }
    if text.len() > MAX_LINE_BYTES {
        return Err(Failure::new(
            Reason::Rejected,
            format!(
                "the body is {} bytes; Logz.io takes at most {MAX_LINE_BYTES} bytes per line",
                text.len()
            ),
        ));
    }
    Ok(text)
}

fn not_json(body: &str) -> Failure {
    let e = serde_json::from_str::<serde::de::IgnoredAny>(body)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    Failure::new(Reason::RenderFailed, format!("body is not valid JSON: {e}"))
}

struct Item {
    line: Line,
    reply: oneshot::Sender<Outcome>,
}

/// The batchers of one config's batched webhooks. Dropping it closes their inputs; each
/// batcher then sends what it holds and stops.
#[derive(Default)]
pub struct Batchers {
    senders: HashMap<String, mpsc::Sender<Item>>,
}

impl Batchers {
    /// Starts one batcher per webhook with `[webhook.batch]`. Backoff sleeps of batch
    /// deliveries wake on `cancel` (and park their lines).
    pub fn start(config: &Config, deliverer: Arc<Deliverer>, cancel: CancellationToken) -> Self {
        let mut senders = HashMap::new();
        for webhook in &config.webhooks {
            let Some(settings) = webhook.batch else {
                continue;
            };
            let settings = effective(settings, config.amqp.prefetch);
            let (tx, rx) = mpsc::channel(settings.max_events as usize * 2);
            tokio::spawn(run(
                webhook.clone(),
                settings,
                deliverer.clone(),
                rx,
                cancel.clone(),
            ));
            senders.insert(webhook.name.clone(), tx);
        }
        Batchers { senders }
    }

    /// Hands a line to its webhook's batcher and waits for the outcome of its batch.
    pub async fn submit(&self, webhook: &Webhook, line: Line) -> Outcome {
        let gone = || {
            let state = RetryState {
                attempts: 0,
                first_failure: SystemTime::now(),
            };
            Outcome::Park(Parked::new(
                state,
                webhook.delivery.initial_backoff,
                "the batcher stopped (shutdown or reload)",
            ))
        };
        let Some(sender) = self.senders.get(&webhook.name) else {
            return gone();
        };
        let (reply, outcome) = oneshot::channel();
        if sender.send(Item { line, reply }).await.is_err() {
            return gone();
        }
        outcome.await.unwrap_or_else(|_| gone())
    }
}

/// The batch limits actually used: `max_events` no larger than what can be in flight at
/// once, so a batch can always fill.
pub fn effective(settings: BatchSettings, prefetch: u16) -> BatchSettings {
    // Events in flight are bounded by the prefetch; `delivery.concurrency` bounds requests,
    // and a batch is one request.
    let in_flight = u32::from(prefetch).max(1);
    BatchSettings {
        max_events: settings.max_events.clamp(1, in_flight),
        ..settings
    }
}

async fn run(
    webhook: Arc<Webhook>,
    settings: BatchSettings,
    deliverer: Arc<Deliverer>,
    mut input: mpsc::Receiver<Item>,
    cancel: CancellationToken,
) {
    let mut pending: Vec<Item> = Vec::new();
    let mut bytes: u64 = 0;
    let mut deadline: Option<Instant> = None;
    loop {
        let linger = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = input.recv() => match item {
                Some(item) => {
                    let size = item.line.text.len() as u64 + 1;
                    if !pending.is_empty() && bytes + size > settings.max_bytes {
                        flush(&webhook, &deliverer, &cancel, &mut pending, &mut bytes, &mut deadline);
                    }
                    if pending.is_empty() {
                        deadline = Some(Instant::now() + settings.linger);
                    }
                    bytes += size;
                    pending.push(item);
                    if pending.len() >= settings.max_events as usize || bytes >= settings.max_bytes {
                        flush(&webhook, &deliverer, &cancel, &mut pending, &mut bytes, &mut deadline);
                    }
                }
                None => {
                    flush(&webhook, &deliverer, &cancel, &mut pending, &mut bytes, &mut deadline);
                    return;
                }
            },
            _ = linger => {
                flush(&webhook, &deliverer, &cancel, &mut pending, &mut bytes, &mut deadline);
            }
        }
    }
}

/// Sends what is pending as one batch, in a task of its own so the next batch can fill.
fn flush(
    webhook: &Arc<Webhook>,
    deliverer: &Arc<Deliverer>,
    cancel: &CancellationToken,
    pending: &mut Vec<Item>,
    bytes: &mut u64,
    deadline: &mut Option<Instant>,
) {
    *bytes = 0;
    *deadline = None;
    if pending.is_empty() {
        return;
    }
    let items = std::mem::take(pending);
    let webhook = webhook.clone();
    let deliverer = deliverer.clone();
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let (lines, replies): (Vec<Line>, Vec<oneshot::Sender<Outcome>>) =
            items.into_iter().map(|i| (i.line, i.reply)).unzip();
        let outcomes = deliver(&deliverer, &webhook, &lines, &cancel).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    });
}

/// Delivers `lines` as one request and returns one outcome per line, in order. A 400 that
/// accepted no line is narrowed down by re-sending halves.
fn deliver<'a>(
    deliverer: &'a Deliverer,
    webhook: &'a Arc<Webhook>,
    lines: &'a [Line],
    cancel: &'a CancellationToken,
) -> std::pin::Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'a>> {
    Box::pin(async move {
        let mut body = String::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
        for line in lines {
            body.push_str(&line.text);
            body.push('\n');
        }
        let request = DeliveryRequest {
            webhook: webhook.clone(),
            event_id: batch_id(lines),
            body: body.into(),
            prior: None,
            batch_size: Some(lines.len()),
        };
        let finished = deliverer.finish(&request, webhook.delivery, cancel).await;
        let outcome = match refusal(&finished, lines.len()) {
            None => finished.outcome,
            Some(Refusal::Split) => {
                let (left, right) = lines.split_at(lines.len() / 2);
                let mut out = deliver(deliverer, webhook, left, cancel).await;
                out.extend(deliver(deliverer, webhook, right, cancel).await);
                return out;
            }
            Some(Refusal::DeadLetterAll(failure)) => Outcome::DeadLetter(failure),
        };
        lines
            .iter()
            .map(|line| per_line(&outcome, line, &webhook.delivery))
            .collect()
    })
}

/// What to do with a batch of several lines that a 400 refused.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// The listener accepted none of its lines: re-send it in halves.
    Split,
    /// It accepted some, or did not say how many: dead-letter every line with this failure,
    /// since re-sending would duplicate the accepted ones.
    DeadLetterAll(Failure),
}

/// What to do with a batch of `lines` lines that a 400 dead-lettered, when it has more than
/// one line. Logz.io's line counts come typed with the deciding attempt's error.
fn refusal(finished: &Finished, lines: usize) -> Option<Refusal> {
    let Outcome::DeadLetter(failure) = &finished.outcome else {
        return None;
    };
    if failure.last_status != Some(400) || lines < 2 {
        return None;
    }
    let accepted = finished.line_counts().map(|counts| counts.successful);
    if accepted == Some(0) {
        return Some(Refusal::Split);
    }
    let error = format!(
        "{}; the listener accepted {} of the batch's {lines} lines without saying which, so none \
         was re-sent",
        failure.last_error,
        accepted.map_or("an unknown number".into(), |n| n.to_string()),
    );
    Some(Refusal::DeadLetterAll(failure.clone().with_error(error)))
}

/// A batch's outcome for one line, with the line's own earlier attempts counted against the
/// budget.
fn per_line(outcome: &Outcome, line: &Line, settings: &DeliverySettings) -> Outcome {
    let prior_attempts = line.prior.map_or(0, |p| p.attempts);
    match outcome {
        Outcome::Delivered { attempts, status } => Outcome::Delivered {
            attempts: prior_attempts.saturating_add(*attempts),
            status: *status,
        },
        Outcome::DeadLetter(f) => Outcome::DeadLetter(
            f.clone()
                .with_attempts(prior_attempts.saturating_add(f.attempts)),
        ),
        Outcome::Park(p) => {
            let attempts = prior_attempts.saturating_add(p.state.attempts);
            let first_failure = line
                .prior
                .map_or(p.state.first_failure, |prior| prior.first_failure);
            let failing_for = SystemTime::now()
                .duration_since(first_failure)
                .unwrap_or(Duration::ZERO);
            if attempts >= settings.max_attempts
                || failing_for + p.next_delay >= settings.max_elapsed
            {
                Outcome::DeadLetter(p.clone().into_failure().with_attempts(attempts))
            } else {
                Outcome::Park(Parked {
                    state: RetryState {
                        attempts,
                        first_failure,
                    },
                    ..p.clone()
                })
            }
        }
    }
}

/// A batch's identity, stable for the same lines: used in its `Idempotency-Key`.
fn batch_id(lines: &[Line]) -> EventId {
    // FNV-1a: tiny, stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for byte in line.event_id.0.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    EventId(format!("batch-{hash:016x}-{}", lines.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::delivery::{AttemptError, LineCounts};

    #[test]
    fn lines_are_compact_json() {
        assert_eq!(to_line("{\"a\": 1}").unwrap(), "{\"a\": 1}");
        assert_eq!(
            to_line("{\n  \"a\": \"x\\ny\"\n}").unwrap(),
            "{\"a\":\"x\\ny\"}"
        );
        let e = to_line("{\"a\": }").unwrap_err();
        assert_eq!(e.reason, Reason::RenderFailed);
        let e = to_line("   ").unwrap_err();
        assert_eq!(e.reason, Reason::RenderFailed);
        let e = to_line("[1, 2]").unwrap_err();
        assert_eq!(e.reason, Reason::RenderFailed);
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_LINE_BYTES));
        let e = to_line(&big).unwrap_err();
        assert_eq!(e.reason, Reason::Rejected);
    }

    #[test]
    fn max_events_is_clamped_to_what_can_be_in_flight() {
        let settings = BatchSettings {
            max_events: 500,
            max_bytes: 5 << 20,
            linger: Duration::from_millis(200),
        };
        assert_eq!(effective(settings, 256).max_events, 256);
        assert_eq!(effective(settings, 1000).max_events, 500);
        let small = BatchSettings {
            max_events: 50,
            ..settings
        };
        assert_eq!(effective(small, 256).max_events, 50);
    }

    /// A batch dead-lettered after a 400 whose body said `counts`.
    fn refused_with(counts: Option<LineCounts>) -> Finished {
        let snippet =
            r#"{"malformedLines":1,"successfulLines":0,"oversizedLines":0,"emptyLogLines":0}"#;
        let error = AttemptError::Status {
            status: 400,
            snippet: snippet.into(),
            line_counts: counts,
        };
        Finished {
            outcome: Outcome::DeadLetter(
                Failure::new(Reason::Rejected, error.to_string())
                    .with_attempts(1)
                    .with_status(Some(400)),
            ),
            last_error: Some(error),
        }
    }

    fn counts(successful: u64) -> Option<LineCounts> {
        Some(LineCounts {
            successful,
            malformed: 1,
            oversized: 0,
            empty: 0,
        })
    }

    #[test]
    fn a_400_that_accepted_no_line_is_split() {
        assert_eq!(refusal(&refused_with(counts(0)), 3), Some(Refusal::Split));
        // One line cannot be split: its dead letter stands as it is.
        assert_eq!(refusal(&refused_with(counts(0)), 1), None);
    }

    #[test]
    fn a_400_that_accepted_some_lines_dead_letters_all_without_resending() {
        let Some(Refusal::DeadLetterAll(failure)) = refusal(&refused_with(counts(2)), 3) else {
            panic!("not dead-lettered");
        };
        assert_eq!(failure.reason, Reason::Rejected);
        assert_eq!(failure.last_status, Some(400));
        assert!(
            failure.last_error.starts_with("http 400 Bad Request: {"),
            "{}",
            failure.last_error
        );
        assert!(
            failure.last_error.ends_with(
                "; the listener accepted 2 of the batch's 3 lines without saying which, so none \
                 was re-sent"
            ),
            "{}",
            failure.last_error
        );
    }

    #[test]
    fn a_400_without_counts_is_an_unknown_number_accepted() {
        let Some(Refusal::DeadLetterAll(failure)) = refusal(&refused_with(None), 2) else {
            panic!("not dead-lettered");
        };
        assert!(
            failure
                .last_error
                .contains("accepted an unknown number of the batch's 2 lines"),
            "{}",
            failure.last_error
        );
    }

    #[test]
    fn only_a_400_dead_letter_is_refused() {
        let mut finished = refused_with(counts(0));
        finished.outcome = Outcome::DeadLetter(
            Failure::new(Reason::Rejected, "http 413 Payload Too Large").with_status(Some(413)),
        );
        assert_eq!(refusal(&finished, 3), None);
        finished.outcome = Outcome::Delivered {
            attempts: 1,
            status: 200,
        };
        assert_eq!(refusal(&finished, 3), None);
    }

    #[test]
    fn per_line_budget_counts_earlier_attempts() {
        let settings = DeliverySettings {
            max_attempts: 5,
            ..DeliverySettings::default()
        };
        let first = SystemTime::now() - Duration::from_secs(10);
        let line = Line {
            text: "{}".into(),
            event_id: EventId("e".into()),
            prior: Some(RetryState {
                attempts: 3,
                first_failure: first,
            }),
        };
        let state = RetryState {
            attempts: 1,
            first_failure: SystemTime::now(),
        };
        let parked = Outcome::Park(
            Parked::new(state, Duration::from_secs(1), "http 503").with_status(Some(503)),
        );
        match per_line(&parked, &line, &settings) {
            Outcome::Park(p) => {
                assert_eq!(p.state.attempts, 4);
                assert_eq!(p.state.first_failure, first);
            }
            other => panic!("{other:?}"),
        }
        let line = Line {
            prior: Some(RetryState {
                attempts: 4,
                first_failure: first,
            }),
            ..line
        };
        assert!(matches!(
            per_line(&parked, &line, &settings),
            Outcome::DeadLetter(Failure {
                reason: Reason::DeliveryFailed,
                attempts: 5,
                ..
            })
        ));
    }

    #[test]
    fn batch_ids_are_stable_and_distinct() {
        let line = |id: &str| Line {
            text: "{}".into(),
            event_id: EventId(id.into()),
            prior: None,
        };
        assert_eq!(
            batch_id(&[line("a"), line("b")]),
            batch_id(&[line("a"), line("b")])
        );
        assert_ne!(batch_id(&[line("a"), line("b")]), batch_id(&[line("ab")]));
    }
}
