//! `dlq list`: one line per dead letter, as a table or JSON; the queue is left as it was.

use super::FilterArgs;
use crate::broker::Broker;
use crate::broker::dlq::Entry;
use crate::cli::output::{Style, Table, print_json, terminal_safe, truncate};
use crate::config::Config;

/// Options of `dlq list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Selection.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show at most this many lines.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// One dead letter as `dlq list` shows it (and prints it with `--json`).
#[derive(serde::Serialize)]
struct Line<'a> {
    position: usize,
    failed_at: Option<&'a str>,
    webhook: Option<&'a str>,
    reason: Option<&'static str>,
    attempts: Option<u32>,
    last_status: Option<u16>,
    event_id: Option<&'a str>,
    event_type: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> Line<'a> {
    fn of(entry: &'a Entry) -> Self {
        Line {
            position: entry.position,
            failed_at: entry.info.failed_at.as_deref(),
            webhook: entry.info.webhook.as_deref(),
            reason: entry.info.reason.map(|r| r.as_str()),
            attempts: entry.info.attempts,
            last_status: entry.info.last_status,
            event_id: entry.info.event_id.as_deref(),
            event_type: entry.event_type.as_deref(),
            error: entry.info.last_error.as_deref(),
        }
    }

    /// The table row. The cells come from the message: never let them reach the terminal raw.
    fn cells(&self) -> [String; 9] {
        let safe = |text: Option<&str>| terminal_safe(text.unwrap_or("-"), false);
        [
            self.position.to_string(),
            safe(self.failed_at),
            safe(self.webhook),
            safe(self.reason),
            self.attempts.map_or("-".into(), |a| a.to_string()),
            self.last_status.map_or("-".into(), |s| s.to_string()),
            safe(self.event_id),
            safe(self.event_type),
            truncate(&terminal_safe(self.error.unwrap_or(""), false), 60),
        ]
    }
}

/// Runs `dlq list`; returns the exit code.
pub(super) async fn run(broker: &Broker, config: &Config, args: &ListArgs, json: bool) -> u8 {
    let entries = match super::read(broker, config, args.filter.scan_limit).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            if json {
                print_json(&Vec::<Line>::new());
            }
            return crate::cli::EXIT_OK;
        }
        Err(code) => return code,
    };
    let selected = args.filter.selection(Vec::new());
    let shown: Vec<&Entry> = entries
        .iter()
        .filter(|e| selected.matches(e))
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    if json {
        print_json(&shown.iter().map(|e| Line::of(e)).collect::<Vec<_>>());
        return crate::cli::EXIT_OK;
    }
    let mut table = Table::new([
        "#",
        "FAILED AT",
        "WEBHOOK",
        "REASON",
        "ATTEMPTS",
        "STATUS",
        "EVENT ID",
        "TYPE",
        "ERROR",
    ]);
    for entry in &shown {
        table.row(Line::of(entry).cells());
    }
    let style = Style::detect();
    if !table.is_empty() {
        print!("{}", table.render());
    }
    println!(
        "{}",
        style.dim(&format!(
            "{} shown of {} dead letters in `{}`",
            shown.len(),
            entries.len(),
            config.amqp.dead_letter_queue
        ))
    );
    crate::cli::EXIT_OK
}
