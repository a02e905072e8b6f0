//! `webhook-relay dlq list | show | replay | purge`: the dead-letter queue, for operators.
//! Every subcommand reads the queue without acking; what it does not settle returns to the
//! queue, in order, when it disconnects.

use super::output::{Style, Table, print_json, truncate};
use crate::broker::Broker;
use crate::broker::dlq::{self, Entry, ReplayResult, Replayed, Selection};
use crate::broker::settle::{Fate, SettleContext, Settled, settle};
use crate::config::Config;
use crate::pipeline::delivery::Deliverer;
use crate::pipeline::outcome::Reason;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

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

fn parse_reason(text: &str) -> Result<Reason, String> {
    Reason::parse(text).ok_or_else(|| {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        format!(
            "unknown reason `{text}`, expected one of {}",
            all.join(", ")
        )
    })
}

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

/// Options of `dlq show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// A position from `dlq list`, or an event id.
    pub id: String,
}

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

fn line(entry: &Entry) -> Line<'_> {
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

async fn connect(config: &Config) -> Result<Broker, u8> {
    match Broker::connect(&config.amqp, &config.redactor).await {
        Ok(broker) => Ok(broker),
        Err(e) => {
            eprintln!("error: {e}");
            Err(super::EXIT_FAILED)
        }
    }
}

async fn read(broker: &Broker, config: &Config, scan_limit: usize) -> Result<Vec<Entry>, u8> {
    dlq::read_all(broker, &config.amqp.dead_letter_queue, scan_limit)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            super::EXIT_FAILED
        })
}

fn selection(filter: &FilterArgs, ids: Vec<String>) -> Selection {
    Selection {
        ids,
        webhook: filter.webhook.clone(),
        reason: filter.reason,
    }
}

/// Runs a `dlq` subcommand.
pub async fn run(config: &Config, command: &DlqCommand, json: bool) -> u8 {
    let broker = match connect(config).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let code = match command {
        DlqCommand::List(args) => list(&broker, config, args, json).await,
        DlqCommand::Show(args) => show(&broker, config, args, json).await,
        DlqCommand::Replay(args) => replay(&broker, config, args, json).await,
        DlqCommand::Purge(args) => purge(&broker, config, args, json).await,
    };
    // Closing returns every message that was read and not settled, in its original order.
    broker.close().await;
    code
}

async fn list(broker: &Broker, config: &Config, args: &ListArgs, json: bool) -> u8 {
    let entries = match read(broker, config, args.filter.scan_limit).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let selected = selection(&args.filter, Vec::new());
    let shown: Vec<&Entry> = entries
        .iter()
        .filter(|e| selected.matches(e))
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    if json {
        print_json(&shown.iter().map(|e| line(e)).collect::<Vec<_>>());
        return super::EXIT_OK;
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
        let l = line(entry);
        // The cells come from the message: never let them reach the terminal raw.
        let safe = |text: Option<&str>| terminal_safe(text.unwrap_or("-"), false);
        table.row([
            l.position.to_string(),
            safe(l.failed_at),
            safe(l.webhook),
            safe(l.reason),
            l.attempts.map_or("-".into(), |a| a.to_string()),
            l.last_status.map_or("-".into(), |s| s.to_string()),
            safe(l.event_id),
            safe(l.event_type),
            truncate(&terminal_safe(l.error.unwrap_or(""), false), 60),
        ]);
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
    super::EXIT_OK
}

async fn show(broker: &Broker, config: &Config, args: &ShowArgs, json: bool) -> u8 {
    let entries = match read(broker, config, DEFAULT_SCAN_LIMIT).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let selected = Selection {
        ids: vec![args.id.clone()],
        ..Selection::default()
    };
    let Some(entry) = entries.iter().find(|e| selected.matches(e)) else {
        eprintln!(
            "error: no dead letter at position or with event id `{}` in `{}`",
            args.id, config.amqp.dead_letter_queue
        );
        return super::EXIT_FAILED;
    };
    let properties = &entry.message.properties;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            let text = crate::broker::dead_letter::header_text(table, name.as_str())
                .or_else(|| {
                    crate::broker::dead_letter::header_number(table, name.as_str())
                        .map(|n| n.to_string())
                })
                .unwrap_or_else(|| format!("{value:?}"));
            headers.insert(name.as_str().to_string(), config.redactor.scrub(&text));
        }
    }
    let body: serde_json::Value = serde_json::from_slice(entry.body()).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(entry.body()).into())
    });
    if json {
        print_json(&serde_json::json!({
            "position": entry.position,
            "message_id": entry.message.message_id(),
            "routing_key": entry.info.routing_key,
            "headers": headers,
            "body": body,
        }));
        return super::EXIT_OK;
    }
    let style = Style::detect();
    println!(
        "{}",
        style.bold(&format!("dead letter #{}", entry.position))
    );
    // Everything below comes from the message: a hostile publisher or endpoint wrote it.
    if let Some(id) = entry.message.message_id() {
        println!("  message_id: {}", terminal_safe(id, false));
    }
    for (name, value) in &headers {
        println!(
            "  {}: {}",
            terminal_safe(name, false),
            terminal_safe(value, false)
        );
    }
    println!("{}", style.bold("body"));
    match serde_json::to_string_pretty(&body) {
        Ok(pretty) => println!("{}", terminal_safe(&pretty, true)),
        Err(_) => println!(
            "{}",
            terminal_safe(&String::from_utf8_lossy(entry.body()), true)
        ),
    }
    super::EXIT_OK
}

async fn replay(broker: &Broker, config: &Config, args: &ReplayArgs, json: bool) -> u8 {
    // The broker's consumer_timeout runs from the first basic.get: past it, RabbitMQ closes
    // the channel and takes every dead letter read back, so an ack after that fails.
    let read_at = Instant::now();
    let entries = match read(broker, config, args.filter.scan_limit).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let selected = selection(&args.filter, args.ids.clone());
    let chosen: Vec<&Entry> = entries.iter().filter(|e| selected.matches(e)).collect();
    // An id that selects nothing is a mistake to report, not an empty success.
    let not_found: Vec<String> = args
        .ids
        .iter()
        .filter(|id| {
            let one = Selection {
                ids: vec![(*id).clone()],
                ..Selection::default()
            };
            !chosen.iter().any(|e| one.matches(e))
        })
        .cloned()
        .collect();
    if !json {
        for id in &not_found {
            eprintln!(
                "error: no dead letter at position or with event id `{id}` in `{}`{}",
                config.amqp.dead_letter_queue,
                if args.filter.webhook.is_some() || args.filter.reason.is_some() {
                    " that the filters select"
                } else {
                    ""
                }
            );
        }
    }
    let deliverer = match Deliverer::new(config) {
        Ok(d) => d,
        Err(e) => return super::usage_error(&e.to_string()),
    };
    let cancel = CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(cancel.clone()));
    let progress = progress_bar(chosen.len() as u64, json);
    let mut results: Vec<Replayed> = Vec::new();
    let mut stopped = None;
    for entry in &chosen {
        if cancel.is_cancelled() {
            stopped = Some("interrupted".to_string());
            break;
        }
        if let Some(why) = must_stop(broker, config, entry, read_at, args.dry_run) {
            stopped = Some(why);
            break;
        }
        let result = dlq::replay_one(
            entry,
            config,
            &deliverer,
            dlq::ReplayOptions {
                dry_run: args.dry_run,
                attempts: args.attempts,
            },
            &cancel,
        )
        .await;
        progress.inc(1);
        results.push(result);
    }
    progress.finish_and_clear();
    let code = report(
        &results,
        chosen.len(),
        args.dry_run,
        &not_found,
        stopped.as_deref(),
        json,
    );
    if not_found.is_empty() {
        code
    } else {
        super::EXIT_FAILED
    }
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

fn report(
    results: &[Replayed],
    chosen: usize,
    dry_run: bool,
    not_found: &[String],
    stopped: Option<&str>,
    json: bool,
) -> u8 {
    let delivered = results
        .iter()
        .filter(|r| matches!(r.result, ReplayResult::Delivered { .. }))
        .count();
    let would = results
        .iter()
        .filter(|r| matches!(r.result, ReplayResult::WouldReplay))
        .count();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        match &r.result {
            ReplayResult::FailedAgain(f) => {
                let key = match f.last_status {
                    Some(status) => format!("{} (http {status})", f.reason),
                    None => f.reason.to_string(),
                };
                *failed.entry(key).or_default() += 1;
            }
            ReplayResult::Skipped(why) => *skipped.entry(why.clone()).or_default() += 1,
            _ => {}
        }
    }
    // Fewer results than selected dead letters: the replay stopped early (`stopped` says why).
    let not_attempted = chosen.saturating_sub(results.len());
    let failed_total: usize = failed.values().sum();
    let skipped_total: usize = skipped.values().sum();
    if json {
        let items: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
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
            })
            .collect();
        print_json(&serde_json::json!({
            "selected": chosen, "delivered": delivered, "failed_again": failed_total,
            "skipped": skipped_total, "dry_run": dry_run, "results": items,
            "not_found": not_found, "not_attempted": not_attempted, "stopped": stopped,
        }));
    } else {
        let style = Style::detect();
        if dry_run {
            for r in results {
                if let ReplayResult::WouldReplay = r.result {
                    println!(
                        "would replay #{} {} → {}",
                        r.position,
                        r.event_id.as_deref().unwrap_or("-"),
                        r.webhook.as_deref().unwrap_or("-")
                    );
                }
            }
            println!("dry run: {would} of {chosen} selected dead letters would be replayed");
        } else {
            let attempted = if results.len() < chosen {
                format!("{} of {chosen}", results.len())
            } else {
                chosen.to_string()
            };
            println!(
                "replayed {attempted}: {} delivered, {} failed again, {} skipped",
                style.good(&delivered.to_string()),
                if failed_total > 0 {
                    style.bad(&failed_total.to_string())
                } else {
                    failed_total.to_string()
                },
                skipped_total
            );
        }
        for (why, n) in &failed {
            println!("  failed again: {n} × {why} (new dead letters replace the old ones)");
        }
        for (why, n) in &skipped {
            println!("  skipped: {n} × {why}");
        }
        if not_attempted > 0 {
            println!(
                "  not attempted: {not_attempted}, still queued ({})",
                stopped.unwrap_or("stopped")
            );
        }
    }
    if failed_total + skipped_total + not_attempted == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    }
}

async fn purge(broker: &Broker, config: &Config, args: &PurgeArgs, json: bool) -> u8 {
    let entries = match read(broker, config, args.filter.scan_limit).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let selected = selection(&args.filter, Vec::new());
    let mut deleted = 0;
    let mut errors = Vec::new();
    let context = SettleContext::standalone(CancellationToken::new());
    for entry in entries.iter().filter(|e| selected.matches(e)) {
        match settle(&entry.message, Fate::Remove, &context).await {
            Settled::Lost(e) => errors.push(e.to_string()),
            _ => deleted += 1,
        }
    }
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
    if errors.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    }
}

/// `text` made safe to print on a terminal: every character that is not printable is written
/// as an escape, so a dead letter cannot move the cursor, clear the screen, set the title,
/// rewrite the line (`\r`) or reorder text (bidirectional overrides).
///
/// Escaped: C0 controls (`\x1b`, `\r`, `\t`, …; `\n` too unless `keep_newlines`), DEL
/// (`\x7f`), C1 controls (`\u{9b}`, the one-byte CSI, …), and the invisible format and
/// separator characters (`\u{202e}`, `\u{200b}`, `\u{2028}`, `\u{feff}`, …). Everything else,
/// other scripts and emoji included, is kept; backslashes are kept as they are, so the escapes
/// are for reading, not for parsing back.
fn terminal_safe(text: &str, keep_newlines: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = u32::from(c);
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ if code < 0x20 || code == 0x7f => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if (0x80..0xa0).contains(&code) || is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Unicode format characters and separators a terminal draws as nothing (or acts on):
/// bidirectional marks, embeddings, overrides and isolates, the zero-width space, the line
/// and paragraph separators, the byte-order mark and the interlinear annotation marks. The
/// zero-width joiners (U+200C, U+200D) stay: emoji and other scripts are built with them.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{200e}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            terminal_safe("a\x1b[2Jb\rc\td\u{7}e\u{0}\u{7f}", false),
            r"a\x1b[2Jb\rc\td\x07e\x00\x7f"
        );
        assert_eq!(terminal_safe("x\ny", false), r"x\ny");
        assert_eq!(terminal_safe("x\ny", true), "x\ny");
        // C1 controls, among them the one-character CSI and OSC.
        assert_eq!(
            terminal_safe("\u{9b}31m\u{9d}0;title\u{9c}\u{85}", true),
            r"\u{9b}31m\u{9d}0;title\u{9c}\u{85}"
        );
        // Invisible reordering and separators.
        assert_eq!(
            terminal_safe("ab\u{202e}cd\u{2066}\u{200b}\u{2028}\u{feff}", true),
            r"ab\u{202e}cd\u{2066}\u{200b}\u{2028}\u{feff}"
        );
    }

    #[test]
    fn printable_text_is_kept() {
        for text in [
            "plain ascii ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
            "ünïcödé 日本語 עברית 🚀👩‍💻 \u{a0}nbsp",
            r"C:\path\x1b is text",
        ] {
            assert_eq!(terminal_safe(text, false), text);
        }
    }

    #[test]
    fn nothing_below_space_survives() {
        for code in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0) {
            let c = char::from_u32(code).unwrap();
            let out = terminal_safe(&format!("a{c}b"), false);
            assert!(
                out.chars().all(|c| u32::from(c) >= 0x20
                    && u32::from(c) != 0x7f
                    && !(0x80..0xa0).contains(&u32::from(c))),
                "{code:#x}: {out:?}"
            );
        }
    }
}
