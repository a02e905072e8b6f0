//! `dlq replay`: re-delivers the selected dead letters, each to the webhook named in its
//! `x-relay-webhook` header only, and reports what became of them. A replay stops early, and
//! leaves the rest queued, rather than run past the broker's `consumer_timeout`.

use super::FilterArgs;
use crate::broker::Broker;
use crate::broker::dlq::{self, Entry, ReplayOptions, ReplayResult, Replayed};
use crate::cli::output::{Style, print_json};
use crate::config::Config;
use crate::pipeline::delivery::Deliverer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Options of `dlq replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Positions from `dlq list`, or event ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every dead letter (that the filters select).
    #[arg(long)]
    pub all: bool,
    /// Selection.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be replayed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Attempts per dead letter (default: the webhook's delivery.max_attempts).
    #[arg(long)]
    pub attempts: Option<u32>,
}

/// Runs `dlq replay`; exit 1 when an id selected nothing or any dead letter was not
/// delivered (failed again, skipped or not attempted).
pub(super) async fn run(broker: &Broker, config: &Config, args: &ReplayArgs, json: bool) -> u8 {
    // The broker's consumer_timeout runs from the first basic.get: past it, RabbitMQ closes
    // the channel and takes every dead letter read back, so an ack after that fails.
    let read_at = Instant::now();
    let entries = match super::read(broker, config, args.filter.scan_limit).await {
        Ok(Some(e)) => e,
        // Nothing to replay; ids named nothing.
        Ok(None) => return crate::cli::exit_code(args.ids.is_empty()),
        Err(code) => return code,
    };
    let selected = args.filter.selection(args.ids.clone());
    let chosen: Vec<&Entry> = entries.iter().filter(|e| selected.matches(e)).collect();
    // An id that selects nothing is a mistake to report, not an empty success.
    let not_found = not_found(&args.ids, &chosen);
    if !json {
        print_not_found(&not_found, config, &args.filter);
    }
    let deliverer = match Deliverer::new(config) {
        Ok(d) => d,
        Err(e) => return crate::cli::usage_error(&e.to_string()),
    };
    let (results, stopped) =
        replay_all(broker, config, args, &deliverer, &chosen, read_at, json).await;
    let report = Report {
        results: &results,
        chosen: chosen.len(),
        dry_run: args.dry_run,
        not_found: &not_found,
        stopped: stopped.as_deref(),
    };
    let code = report.print(json);
    if not_found.is_empty() {
        code
    } else {
        crate::cli::EXIT_FAILED
    }
}

/// The ids that select none of the `chosen` dead letters.
fn not_found(ids: &[String], chosen: &[&Entry]) -> Vec<String> {
    ids.iter()
        .filter(|id| {
            let one = super::one(id);
            !chosen.iter().any(|e| one.matches(e))
        })
        .cloned()
        .collect()
}

fn print_not_found(not_found: &[String], config: &Config, filter: &FilterArgs) {
    for id in not_found {
        eprintln!(
            "error: no dead letter at position or with event id `{id}` in `{}`{}",
            config.amqp.dead_letter_queue,
            if filter.webhook.is_some() || filter.reason.is_some() {
                " that the filters select"
            } else {
                ""
            }
        );
    }
}

/// Replays the `chosen` dead letters in order, until they are done or the replay must stop
/// (a signal, a closed channel, or the broker's `consumer_timeout` ahead). Returns what became
/// of each one attempted, and why it stopped early, if it did.
async fn replay_all(
    broker: &Broker,
    config: &Config,
    args: &ReplayArgs,
    deliverer: &Deliverer,
    chosen: &[&Entry],
    read_at: Instant,
    json: bool,
) -> (Vec<Replayed>, Option<String>) {
    let cancel = CancellationToken::new();
    tokio::spawn(crate::cli::cancel_on_signal(cancel.clone()));
    let options = ReplayOptions {
        dry_run: args.dry_run,
        attempts: args.attempts,
    };
    let progress = progress_bar(chosen.len() as u64, json);
    let done = replay_entries(
        broker,
        config,
        options,
        deliverer,
        chosen,
        read_at,
        &cancel,
        || progress.inc(1),
    )
    .await;
    progress.finish_and_clear();
    done
}

/// Replays `chosen` in order with [`dlq::replay_one`], until they are done or the replay must
/// stop (`cancel`, a closed channel, or the broker's `consumer_timeout` ahead, counted from
/// `read_at`, the first read). Calls `each` after every one. Returns what became of each one
/// attempted, and why it stopped early, if it did. What `dlq replay` and the console's Replay
/// both run.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn replay_entries(
    broker: &Broker,
    config: &Config,
    options: ReplayOptions,
    deliverer: &Deliverer,
    chosen: &[&Entry],
    read_at: Instant,
    cancel: &CancellationToken,
    mut each: impl FnMut(),
) -> (Vec<Replayed>, Option<String>) {
    let mut results: Vec<Replayed> = Vec::new();
    let mut stopped = None;
    for entry in chosen {
        if cancel.is_cancelled() {
            stopped = Some("interrupted".to_string());
            break;
        }
        if let Some(why) = must_stop(broker, config, entry, read_at, options.dry_run) {
            stopped = Some(why);
            break;
        }
        let result = dlq::replay_one(entry, config, deliverer, options, cancel).await;
        each();
        results.push(result);
    }
    (results, stopped)
}

/// Why the replay must stop before `entry`, if it must: the channel holding the dead letters
/// is gone, or the entry's worst-case delivery time would run past the broker's
/// `consumer_timeout`, counted from the first read. A delivery that ended after that could not
/// remove its dead letter, and it would be delivered again by the next replay.
fn must_stop(
    broker: &Broker,
    config: &Config,
    entry: &Entry,
    read_at: Instant,
    dry_run: bool,
) -> Option<String> {
    if dry_run {
        return None;
    }
    if !broker.channel().status().connected() {
        return Some("the broker closed the channel; the rest are back in the queue".into());
    }
    let hold = entry
        .info
        .webhook
        .as_deref()
        .and_then(|name| config.webhook(name))
        .map_or(Duration::ZERO, |w| w.delivery.worst_case_hold());
    let limit = config.amqp.consumer_timeout;
    (read_at.elapsed() + hold >= limit).then(|| {
        format!(
            "stopped before the broker's consumer_timeout ({}) could close the channel; \
             run the command again for the rest",
            humantime::format_duration(limit)
        )
    })
}

fn progress_bar(len: u64, json: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || len < 10 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

/// What a replay did, to print.
struct Report<'a> {
    /// One per dead letter attempted, in order.
    results: &'a [Replayed],
    /// How many dead letters were selected; more than `results` when the replay stopped early.
    chosen: usize,
    dry_run: bool,
    /// Ids that selected nothing.
    not_found: &'a [String],
    /// Why the replay stopped early, if it did.
    stopped: Option<&'a str>,
}

/// The results counted by outcome; failures and skips also by their cause.
struct Tally {
    delivered: usize,
    would_replay: usize,
    /// `reason` or `reason (http STATUS)` → how many.
    failed: BTreeMap<String, usize>,
    /// Why skipped → how many.
    skipped: BTreeMap<String, usize>,
    failed_total: usize,
    skipped_total: usize,
    /// Selected but not attempted: the replay stopped early.
    not_attempted: usize,
}

impl Report<'_> {
    /// Prints the report as text or JSON and returns the exit code: 0 only when every selected
    /// dead letter was delivered (or, dry, would be replayed).
    fn print(&self, json: bool) -> u8 {
        let tally = self.tally();
        if json {
            self.print_json(&tally);
        } else {
            self.print_text(&tally);
        }
        crate::cli::exit_code(tally.failed_total + tally.skipped_total + tally.not_attempted == 0)
    }

    fn tally(&self) -> Tally {
        let mut tally = Tally {
            delivered: 0,
            would_replay: 0,
            failed: BTreeMap::new(),
            skipped: BTreeMap::new(),
            failed_total: 0,
            skipped_total: 0,
            not_attempted: self.chosen.saturating_sub(self.results.len()),
        };
        for r in self.results {
            match &r.result {
                ReplayResult::Delivered { .. } => tally.delivered += 1,
                ReplayResult::WouldReplay => tally.would_replay += 1,
                ReplayResult::FailedAgain(f) => {
                    let key = match f.last_status {
                        Some(status) => format!("{} (http {status})", f.reason),
                        None => f.reason.to_string(),
                    };
                    *tally.failed.entry(key).or_default() += 1;
                    tally.failed_total += 1;
                }
                ReplayResult::Skipped(why) => {
                    *tally.skipped.entry(why.clone()).or_default() += 1;
                    tally.skipped_total += 1;
                }
            }
        }
        tally
    }

    fn print_json(&self, tally: &Tally) {
        let items: Vec<serde_json::Value> = self.results.iter().map(result_json).collect();
        let (chosen, dry_run) = (self.chosen, self.dry_run);
        print_json(&serde_json::json!({
            "selected": chosen, "delivered": tally.delivered, "failed_again": tally.failed_total,
            "skipped": tally.skipped_total, "dry_run": dry_run, "results": items,
            "not_found": self.not_found, "not_attempted": tally.not_attempted,
            "stopped": self.stopped,
        }));
    }

    fn print_text(&self, tally: &Tally) {
        let chosen = self.chosen;
        if self.dry_run {
            for r in self.results {
                if let ReplayResult::WouldReplay = r.result {
                    println!(
                        "would replay #{} {} → {}",
                        r.position,
                        r.event_id.as_deref().unwrap_or("-"),
                        r.webhook.as_deref().unwrap_or("-")
                    );
                }
            }
            println!(
                "dry run: {} of {chosen} selected dead letters would be replayed",
                tally.would_replay
            );
        } else {
            let style = Style::detect();
            let attempted = if self.results.len() < chosen {
                format!("{} of {chosen}", self.results.len())
            } else {
                chosen.to_string()
            };
            println!(
                "replayed {attempted}: {} delivered, {} failed again, {} skipped",
                style.good(&tally.delivered.to_string()),
                if tally.failed_total > 0 {
                    style.bad(&tally.failed_total.to_string())
                } else {
                    tally.failed_total.to_string()
                },
                tally.skipped_total
            );
        }
        for (why, n) in &tally.failed {
            println!("  failed again: {n} × {why} (new dead letters replace the old ones)");
        }
        for (why, n) in &tally.skipped {
            println!("  skipped: {n} × {why}");
        }
        if tally.not_attempted > 0 {
            println!(
                "  not attempted: {}, still queued ({})",
                tally.not_attempted,
                self.stopped.unwrap_or("stopped")
            );
        }
    }
}

/// One replayed dead letter as `--json` prints it.
fn result_json(r: &Replayed) -> serde_json::Value {
    let (result, detail) = match &r.result {
        ReplayResult::Delivered { attempts } => {
            ("delivered", serde_json::json!({"attempts": attempts}))
        }
        ReplayResult::FailedAgain(f) => (
            "failed_again",
            serde_json::json!({"reason": f.reason.as_str(), "attempts": f.attempts,
                "last_status": f.last_status, "error": f.last_error}),
        ),
        ReplayResult::Skipped(why) => ("skipped", serde_json::json!({"why": why})),
        ReplayResult::WouldReplay => ("would_replay", serde_json::Value::Null),
    };
    serde_json::json!({"position": r.position, "event_id": r.event_id,
        "webhook": r.webhook, "result": result, "detail": detail})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::outcome::{Failure, Reason};

    fn replayed(position: usize, result: ReplayResult) -> Replayed {
        Replayed {
            position,
            event_id: None,
            webhook: None,
            result,
        }
    }

    #[test]
    fn tally_counts_by_outcome_and_cause() {
        let rejected = || Failure::new(Reason::Rejected, "http 401").with_status(Some(401));
        let results = [
            replayed(1, ReplayResult::Delivered { attempts: 1 }),
            replayed(2, ReplayResult::FailedAgain(rejected())),
            replayed(3, ReplayResult::FailedAgain(rejected())),
            replayed(4, ReplayResult::Skipped("no webhook".into())),
        ];
        let report = Report {
            results: &results,
            chosen: 6,
            dry_run: false,
            not_found: &[],
            stopped: Some("interrupted"),
        };
        let tally = report.tally();
        assert_eq!((tally.delivered, tally.would_replay), (1, 0));
        assert_eq!((tally.failed_total, tally.skipped_total), (2, 1));
        assert_eq!(tally.failed.get("rejected (http 401)"), Some(&2));
        assert_eq!(tally.skipped.get("no webhook"), Some(&1));
        assert_eq!(tally.not_attempted, 2);
    }
}
