//! `dlq purge`: deletes the selected dead letters, each settled as removed.

use super::FilterArgs;
use crate::broker::Broker;
use crate::broker::dlq;
use crate::cli::output::print_json;
use crate::config::Config;

/// Options of `dlq purge`.
#[derive(Debug, Clone, clap::Args)]
pub struct PurgeArgs {
    /// Selection.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Confirm the deletion.
    #[arg(long, required = true)]
    pub yes: bool,
}

/// Runs `dlq purge`; exit 1 when any deletion was lost.
pub(super) async fn run(broker: &Broker, config: &Config, args: &PurgeArgs, json: bool) -> u8 {
    let entries = match super::read(broker, config, args.filter.scan_limit).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            if json {
                print_json(&serde_json::json!({"deleted": 0, "errors": []}));
            }
            return crate::cli::EXIT_OK;
        }
        Err(code) => return code,
    };
    let selected = args.filter.selection(Vec::new());
    let chosen: Vec<&dlq::Entry> = entries.iter().filter(|e| selected.matches(e)).collect();
    let dlq::Purged { deleted, errors } = dlq::purge(&chosen).await;
    if json {
        print_json(&serde_json::json!({"deleted": deleted, "errors": errors}));
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        println!(
            "deleted {deleted} of {} dead letters in `{}`",
            entries.len(),
            config.amqp.dead_letter_queue
        );
    }
    crate::cli::exit_code(errors.is_empty())
}
