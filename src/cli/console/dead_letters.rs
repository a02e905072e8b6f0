//! The dead letters: a paged, filtered list, the detail of one, and Replay and Purge of one,
//! the selected ones, or all that match the filter. Reading goes through
//! [`dlq::read_all`] like every `dlq` command (nothing acked, everything returned in order when
//! the connection closes); replay through the same loop as `dlq replay`
//! ([`replay_entries`]: only to the failed webhook, stopping before the broker's
//! `consumer_timeout`); purge through [`dlq::purge`], behind a confirmation naming the count.

use super::Console;
use super::auth::{Csrf, Who, page};
use super::pages::Chrome;
use crate::broker::Broker;
use crate::broker::dlq::{self, Entry, ReplayOptions, ReplayResult, Selection};
use crate::cli::dlq::replay::replay_entries;
use crate::cli::dlq::show;
use crate::config::Config;
use crate::pipeline::delivery::Deliverer;
use crate::pipeline::outcome::Reason;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Dead letters per page.
pub const PAGE_SIZE: usize = 50;

/// The list's filter, from the query string or a form.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filter {
    /// Only this webhook's.
    #[serde(default)]
    pub webhook: String,
    /// Only with this reason.
    #[serde(default)]
    pub reason: String,
    /// Failed at or after (UTC, `YYYY-MM-DDTHH:MM`).
    #[serde(default)]
    pub since: String,
    /// Failed at or before (UTC, same form).
    #[serde(default)]
    pub until: String,
    /// 1-based page.
    #[serde(default)]
    pub page: Option<usize>,
}

impl Filter {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Filter {
            webhook: get("webhook"),
            reason: get("reason"),
            since: get("since"),
            until: get("until"),
            page: None,
        }
    }

    /// The library's selection for the webhook and reason filters; `Err` names a reason that
    /// does not exist.
    fn selection(&self) -> Result<Selection, String> {
        let reason = match self.reason.as_str() {
            "" => None,
            text => Some(Reason::parse(text).ok_or_else(|| format!("unknown reason `{text}`"))?),
        };
        Ok(Selection {
            ids: Vec::new(),
            webhook: Some(self.webhook.clone()).filter(|w| !w.is_empty()),
            reason,
        })
    }

    /// Whether the dead letter failed inside the time range. `x-relay-failed-at` is RFC 3339
    /// UTC (`2025-11-25T10:00:00.000Z`), so comparing as text on the range's precision is
    /// comparing times. A dead letter without the header is outside any range.
    fn in_range(&self, entry: &Entry) -> bool {
        if self.since.is_empty() && self.until.is_empty() {
            return true;
        }
        let Some(at) = entry.info.failed_at.as_deref() else {
            return false;
        };
        let since_ok = self.since.is_empty() || at >= self.since.as_str();
        let until_ok = self.until.is_empty()
            || at.get(..self.until.len()).unwrap_or(at) <= self.until.as_str();
        since_ok && until_ok
    }

    /// Whether the filter is empty.
    fn is_empty(&self) -> bool {
        self.webhook.is_empty()
            && self.reason.is_empty()
            && self.since.is_empty()
            && self.until.is_empty()
    }

    /// The query string of this filter at `page`.
    fn query(&self, page: usize) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("webhook", &self.webhook),
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.append_pair("page", &page.to_string());
        query.finish()
    }
}

/// How the console names one dead letter across reads: `webhook/event id` (positions move as
/// dead letters come and go), or `#position` for one without those headers.
pub fn key(entry: &Entry) -> String {
    match (&entry.info.webhook, &entry.info.event_id) {
        (Some(webhook), Some(id)) => format!("{webhook}/{id}"),
        _ => format!("#{}", entry.position),
    }
}

/// One line of the list.
struct Row {
    key: String,
    failed_at: String,
    webhook: String,
    reason: String,
    status: String,
    event_id: String,
    friendly_id: String,
    event_type: String,
    error: String,
}

fn friendly_id(entry: &Entry) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(entry.body()).ok()?;
    Some(body.get("data")?.get("friendly_id")?.as_str()?.to_string())
}

fn row(entry: &Entry) -> Row {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    Row {
        key: key(entry),
        failed_at: text(&entry.info.failed_at),
        webhook: text(&entry.info.webhook),
        reason: entry.info.reason.map_or("-".into(), |r| r.as_str().into()),
        status: entry.info.last_status.map_or("-".into(), |s| s.to_string()),
        event_id: text(&entry.info.event_id),
        friendly_id: friendly_id(entry).unwrap_or_else(|| "-".into()),
        event_type: text(&entry.event_type),
        error: crate::cli::output::truncate(entry.info.last_error.as_deref().unwrap_or(""), 80),
    }
}

/// Every dead letter, read once on a connection of its own: `Ok(None)` when the queue does
/// not exist yet. The caller closes the broker, which returns what it did not settle.
async fn read(config: &Config, broker: &Broker) -> Result<Option<Vec<Entry>>, String> {
    match dlq::read_all(
        broker,
        &config.amqp.dead_letter_queue,
        crate::cli::dlq::DEFAULT_SCAN_LIMIT,
    )
    .await
    {
        Ok(entries) => Ok(Some(entries)),
        Err(dlq::ReadError::Missing(_)) => Ok(None),
        Err(e) => Err(config.redactor.scrub(&e.to_string())),
    }
}

async fn connect(config: &Config) -> Result<Broker, String> {
    Broker::connect(&config.amqp, &config.redactor)
        .await
        .map_err(|e| config.redactor.scrub(&e.to_string()))
}

#[derive(Template)]
#[template(path = "console/dead_letters.html")]
struct ListPage {
    chrome: Chrome,
    filter: Filter,
    webhooks: Vec<String>,
    reasons: Vec<&'static str>,
    rows: Vec<Row>,
    total: usize,
    matching: usize,
    page: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
    note: Option<String>,
    queue: String,
}

/// `GET /dead-letters`: the paged list.
pub async fn list(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    Query(filter): Query<Filter>,
) -> Response {
    let config = &console.config;
    let mut note = None;
    let (mut rows, mut total, mut matching) = (Vec::new(), 0, 0);
    let page_number = filter.page.unwrap_or(1).max(1);
    let reading = console.dead_letters.lock().await;
    match filter.selection() {
        Err(e) => note = Some(e),
        Ok(selection) => match connect(config).await {
            Err(e) => note = Some(e),
            Ok(broker) => {
                match read(config, &broker).await {
                    Err(e) => note = Some(e),
                    Ok(None) => {
                        note = Some(
                            dlq::ReadError::Missing(config.amqp.dead_letter_queue.clone())
                                .to_string(),
                        );
                    }
                    Ok(Some(entries)) => {
                        total = entries.len();
                        let chosen: Vec<&Entry> = entries
                            .iter()
                            .filter(|e| selection.matches(e) && filter.in_range(e))
                            .collect();
                        matching = chosen.len();
                        rows = chosen
                            .iter()
                            .skip((page_number - 1) * PAGE_SIZE)
                            .take(PAGE_SIZE)
                            .map(|e| row(e))
                            .collect();
                    }
                }
                broker.close().await;
            }
        },
    }
    drop(reading);
    let pages = matching.div_ceil(PAGE_SIZE).max(1);
    page(ListPage {
        chrome: Chrome::new(&console, csrf, "dead-letters"),
        webhooks: config.webhooks.iter().map(|w| w.name.clone()).collect(),
        reasons: Reason::ALL.iter().map(|r| r.as_str()).collect(),
        rows,
        total,
        matching,
        page: page_number,
        pages,
        prev: (page_number > 1).then(|| filter.query(page_number - 1)),
        next: (page_number < pages).then(|| filter.query(page_number + 1)),
        note,
        queue: config.amqp.dead_letter_queue.clone(),
        filter,
    })
}

/// `?key=` of the detail page.
#[derive(serde::Deserialize)]
pub struct KeyQuery {
    key: String,
}

#[derive(Template)]
#[template(path = "console/dead_letter.html")]
struct DetailPage {
    chrome: Chrome,
    key: String,
    position: usize,
    message_id: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

/// `GET /dead-letters/show?key=`: every header and the pretty-printed event, as `dlq show`
/// shows them; text from the message is escaped by the template like any other value.
pub async fn show(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    Query(query): Query<KeyQuery>,
) -> Response {
    let config = &console.config;
    let _reading = console.dead_letters.lock().await;
    let broker = match connect(config).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let response = match read(config, &broker).await {
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Ok(entries) => {
            let entries = entries.unwrap_or_default();
            match entries.iter().find(|e| key(e) == query.key) {
                None => (
                    StatusCode::NOT_FOUND,
                    format!(
                        "no dead letter `{}` in `{}`\n",
                        query.key, config.amqp.dead_letter_queue
                    ),
                )
                    .into_response(),
                Some(entry) => {
                    let body = show::body(entry);
                    page(DetailPage {
                        chrome: Chrome::new(&console, csrf, "dead-letters"),
                        key: key(entry),
                        position: entry.position,
                        message_id: entry.message.message_id().map(str::to_string),
                        headers: show::headers(entry, config).into_iter().collect(),
                        body: serde_json::to_string_pretty(&body)
                            .unwrap_or_else(|_| String::from_utf8_lossy(entry.body()).into()),
                    })
                }
            }
        }
    };
    broker.close().await;
    response
}

/// What a Replay or Purge form asks for.
struct Action {
    /// `one`, `selected` (the `id` fields) or `filter` (all that match).
    scope: String,
    /// Keys of the chosen dead letters (scopes `one` and `selected`).
    keys: Vec<String>,
    filter: Filter,
    /// For purge: the count the operator confirmed.
    confirm: Option<usize>,
}

impl Action {
    fn parse(body: &[u8]) -> Self {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        Action {
            scope: get("scope").unwrap_or_default(),
            keys: pairs
                .iter()
                .filter(|(n, _)| n == "id")
                .map(|(_, v)| v.clone())
                .collect(),
            filter: Filter::from_pairs(&pairs),
            confirm: get("confirm").and_then(|c| c.parse().ok()),
        }
    }

    /// The dead letters the action applies to, in queue order.
    fn choose<'e>(&self, entries: &'e [Entry]) -> Result<Vec<&'e Entry>, String> {
        match self.scope.as_str() {
            "one" | "selected" => {
                if self.keys.is_empty() {
                    return Err("no dead letter selected".into());
                }
                Ok(entries
                    .iter()
                    .filter(|e| self.keys.contains(&key(e)))
                    .collect())
            }
            "filter" => {
                let selection = self.filter.selection()?;
                Ok(entries
                    .iter()
                    .filter(|e| selection.matches(e) && self.filter.in_range(e))
                    .collect())
            }
            other => Err(format!("unknown scope `{other}`")),
        }
    }

    /// How the scope reads in the log and on the page.
    fn scope_text(&self) -> String {
        match self.scope.as_str() {
            "filter" if self.filter.is_empty() => "all dead letters".into(),
            "filter" => "all that match the filter".into(),
            "one" => "one dead letter".into(),
            _ => "the selected dead letters".into(),
        }
    }
}

/// Event ids (or keys) of `entries`, for the audit log.
fn ids(entries: &[&Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.info.event_id.clone().unwrap_or_else(|| key(e)))
        .collect()
}

#[derive(Template)]
#[template(path = "console/replayed.html")]
struct ReplayedPage {
    chrome: Chrome,
    scope: String,
    chosen: usize,
    delivered: usize,
    failed: usize,
    skipped: usize,
    not_attempted: usize,
    stopped: Option<String>,
    results: Vec<(String, String, String)>,
}

/// Runs a state-changing `action` in a task of its own: a browser that goes away must not
/// stop it half-way.
async fn detached(
    what: &'static str,
    action: impl std::future::Future<Output = Response> + Send + 'static,
) -> Response {
    tokio::spawn(action).await.unwrap_or_else(|e| {
        tracing::error!(target: "console", "{what} failed: {e}");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed; see the console's log\n"),
        )
            .into_response()
    })
}

fn refused_read_only(console: &Console, action: &'static str) -> Response {
    console.count(action, "refused", 0);
    (StatusCode::FORBIDDEN, "the console is read-only\n").into_response()
}

/// `POST /dead-letters/replay`: re-delivers the chosen dead letters, each to the webhook it
/// failed for only, and shows what became of each.
pub async fn replay(
    State(console): State<Arc<Console>>,
    axum::Extension(who): axum::Extension<Who>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    body: Bytes,
) -> Response {
    if console.read_only {
        return refused_read_only(&console, "replay");
    }
    detached(
        "replay",
        run_replay(console, who, csrf, Action::parse(&body)),
    )
    .await
}

/// Connects and reads every dead letter, for an action on some of them: the broker, the
/// entries, and when the reading began (the broker's `consumer_timeout` runs from the first
/// `basic.get`). `Err` is the answer to send.
async fn open_dead_letters(config: &Config) -> Result<(Broker, Vec<Entry>, Instant), Response> {
    let unavailable =
        |e: String| (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
    let broker = connect(config).await.map_err(unavailable)?;
    let read_at = Instant::now();
    match read(config, &broker).await {
        Ok(entries) => Ok((broker, entries.unwrap_or_default(), read_at)),
        Err(e) => {
            broker.close().await;
            Err(unavailable(e))
        }
    }
}

/// The entries `action` names; `Err` (the broker closed) is the answer to send.
async fn choose<'e>(
    broker: &Broker,
    action: &Action,
    entries: &'e [Entry],
) -> Result<Vec<&'e Entry>, Response> {
    match action.choose(entries) {
        Ok(chosen) => Ok(chosen),
        Err(e) => {
            broker.close().await;
            Err((StatusCode::BAD_REQUEST, format!("{e}\n")).into_response())
        }
    }
}

async fn run_replay(console: Arc<Console>, who: Who, csrf: Csrf, action: Action) -> Response {
    let config = &console.config;
    let _reading = console.dead_letters.lock().await;
    let (broker, entries, read_at) = match open_dead_letters(config).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    let chosen = match choose(&broker, &action, &entries).await {
        Ok(chosen) => chosen,
        Err(response) => return response,
    };
    let deliverer = match Deliverer::new(config) {
        Ok(d) => d,
        Err(e) => {
            broker.close().await;
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
    };
    let (results, stopped) = replay_entries(
        &broker,
        config,
        ReplayOptions::default(),
        &deliverer,
        &chosen,
        read_at,
        &CancellationToken::new(),
        || {},
    )
    .await;
    broker.close().await;
    let count = |f: fn(&ReplayResult) -> bool| results.iter().filter(|r| f(&r.result)).count();
    let delivered = count(|r| matches!(r, ReplayResult::Delivered { .. }));
    let failed = count(|r| matches!(r, ReplayResult::FailedAgain(_)));
    let skipped = count(|r| matches!(r, ReplayResult::Skipped(_)));
    let not_attempted = chosen.len().saturating_sub(results.len());
    tracing::info!(
        target: "console",
        who = who.0,
        action = "replay",
        scope = action.scope_text(),
        count = chosen.len(),
        ids = ?ids(&chosen),
        delivered,
        failed_again = failed,
        skipped,
        not_attempted,
        "replayed dead letters"
    );
    let all_delivered = delivered == chosen.len();
    console.count(
        "replay",
        if all_delivered { "ok" } else { "failed" },
        results.len(),
    );
    page(ReplayedPage {
        chrome: Chrome::new(&console, csrf, "dead-letters"),
        scope: action.scope_text(),
        chosen: chosen.len(),
        delivered,
        failed,
        skipped,
        not_attempted,
        stopped,
        results: results
            .iter()
            .map(|r| {
                let outcome = match &r.result {
                    ReplayResult::Delivered { attempts } => {
                        format!("delivered ({attempts} attempts)")
                    }
                    ReplayResult::FailedAgain(f) => format!(
                        "failed again: {}{}; a new dead letter replaced it",
                        f.reason,
                        f.last_status
                            .map_or(String::new(), |s| format!(" (http {s})"))
                    ),
                    ReplayResult::Skipped(why) => format!("skipped: {why}"),
                    ReplayResult::WouldReplay => "would replay".into(),
                };
                (
                    r.event_id
                        .clone()
                        .unwrap_or_else(|| format!("#{}", r.position)),
                    r.webhook.clone().unwrap_or_else(|| "-".into()),
                    config.redactor.scrub(&outcome),
                )
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "console/confirm_purge.html")]
struct ConfirmPage {
    chrome: Chrome,
    scope: String,
    scope_value: String,
    keys: Vec<String>,
    filter: Filter,
    count: usize,
    changed: bool,
    sample: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/purged.html")]
struct PurgedPage {
    chrome: Chrome,
    deleted: usize,
    errors: Vec<String>,
}

/// `POST /dead-letters/purge`: without a confirmation naming the current count, asks for it;
/// with it, deletes the chosen dead letters.
pub async fn purge(
    State(console): State<Arc<Console>>,
    axum::Extension(who): axum::Extension<Who>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    body: Bytes,
) -> Response {
    if console.read_only {
        return refused_read_only(&console, "purge");
    }
    detached("purge", run_purge(console, who, csrf, Action::parse(&body))).await
}

async fn run_purge(console: Arc<Console>, who: Who, csrf: Csrf, action: Action) -> Response {
    let config = &console.config;
    let _reading = console.dead_letters.lock().await;
    let (broker, entries, _) = match open_dead_letters(config).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    let chosen = match choose(&broker, &action, &entries).await {
        Ok(chosen) => chosen,
        Err(response) => return response,
    };
    // The operator confirms a number; if the selection no longer has that many, ask again.
    if action.confirm != Some(chosen.len()) {
        let response = page(ConfirmPage {
            chrome: Chrome::new(&console, csrf, "dead-letters"),
            scope: action.scope_text(),
            scope_value: action.scope.clone(),
            keys: action.keys.clone(),
            count: chosen.len(),
            changed: action.confirm.is_some(),
            sample: chosen.iter().take(20).map(|e| row(e)).collect(),
            filter: action.filter,
        });
        broker.close().await;
        return response;
    }
    let purged = dlq::purge(&chosen).await;
    broker.close().await;
    tracing::info!(
        target: "console",
        who = who.0,
        action = "purge",
        scope = action.scope_text(),
        count = chosen.len(),
        ids = ?ids(&chosen),
        deleted = purged.deleted,
        errors = purged.errors.len(),
        "purged dead letters"
    );
    console.count(
        "purge",
        if purged.errors.is_empty() {
            "ok"
        } else {
            "failed"
        },
        purged.deleted,
    );
    page(PurgedPage {
        chrome: Chrome::new(&console, csrf, "dead-letters"),
        deleted: purged.deleted,
        errors: purged
            .errors
            .iter()
            .map(|e| config.redactor.scrub(e))
            .collect(),
    })
}
