//! `webhook-relay dlq list | show | replay | purge`: the dead-letter queue, for operators.
//! Every subcommand reads the queue without acking; what it does not settle returns to the
//! queue, in order, when it disconnects.
//!
//! This module holds what the subcommands share (the filters, connecting, reading and
//! selecting); each subcommand lives in its own module.

mod list;
mod purge;
pub(crate) mod replay;
pub(crate) mod show;

pub use list::ListArgs;
pub use purge::PurgeArgs;
pub use replay::ReplayArgs;
pub use show::ShowArgs;

use crate::broker::Broker;
use crate::broker::dlq::{self, Entry, Selection};
use crate::config::Config;
use crate::pipeline::outcome::Reason;

/// Most dead letters one command reads, unless `--scan-limit` says otherwise.
pub const DEFAULT_SCAN_LIMIT: usize = 100_000;

/// `dlq` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter; the queue is left exactly as it was.
    List(ListArgs),
    /// Every header and the pretty-printed body of one dead letter.
    Show(ShowArgs),
    /// Re-deliver dead letters to the webhook named in their x-relay-webhook header only.
    Replay(ReplayArgs),
    /// Delete dead letters.
    Purge(PurgeArgs),
}

/// Filters shared by the subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only dead letters for this webhook.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Only dead letters with this reason (delivery_failed, rejected, render_failed, invalid_event).
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<Reason>,
    /// Read at most this many messages of the queue.
    #[arg(long, default_value_t = DEFAULT_SCAN_LIMIT)]
    pub scan_limit: usize,
}

impl FilterArgs {
    /// The dead letters these filters select, among those named by `ids` (all when empty).
    fn selection(&self, ids: Vec<String>) -> Selection {
        Selection {
            ids,
            webhook: self.webhook.clone(),
            reason: self.reason,
        }
    }
}

fn parse_reason(text: &str) -> Result<Reason, String> {
    Reason::parse(text).ok_or_else(|| {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        format!(
            "unknown reason `{text}`, expected one of {}",
            all.join(", ")
        )
    })
}

/// Runs a `dlq` subcommand.
pub async fn run(config: &Config, command: &DlqCommand, json: bool) -> u8 {
    let broker = match super::connect(config).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let code = match command {
        DlqCommand::List(args) => list::run(&broker, config, args, json).await,
        DlqCommand::Show(args) => show::run(&broker, config, args, json).await,
        DlqCommand::Replay(args) => replay::run(&broker, config, args, json).await,
        DlqCommand::Purge(args) => purge::run(&broker, config, args, json).await,
    };
    // Closing returns every message that was read and not settled, in its original order.
    broker.close().await;
    code
}

/// Reads up to `scan_limit` dead letters without acking them. A dead-letter queue that does
/// not exist yet is said in one line and reads as `None` (each subcommand decides what that
/// means for its exit code); on any other failure prints the error and returns the exit code.
async fn read(
    broker: &Broker,
    config: &Config,
    scan_limit: usize,
) -> Result<Option<Vec<Entry>>, u8> {
    match dlq::read_all(broker, &config.amqp.dead_letter_queue, scan_limit).await {
        Ok(entries) => Ok(Some(entries)),
        Err(e @ dlq::ReadError::Missing(_)) => {
            eprintln!("{e}");
            Ok(None)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(super::EXIT_FAILED)
        }
    }
}

/// The selection of the single dead letter at position or with event id `id`.
pub(crate) fn one(id: &str) -> Selection {
    Selection {
        ids: vec![id.to_string()],
        ..Selection::default()
    }
}
