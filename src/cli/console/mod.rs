//! `webhook-relay console`: the operator console, a small web UI over the same library
//! functions as the CLI (`webhooks`, `test`, `render`, `schema` and `dlq`). A process of its
//! own, so the worker stays lean; it reads the same config, broker settings and redaction.
//!
//! - [`auth`]: who may use it: loopback-only without a token; with `RELAY_CONSOLE_TOKEN`, a
//!   login form and an `HttpOnly`, `SameSite=Strict` session cookie; a CSRF token on every
//!   POST; security headers (a strict Content-Security-Policy) on every response.
//! - [`pages`]: the webhooks table, a webhook's detail with Test and Render, the schema.
//! - [`dead_letters`]: the paged dead-letter list, its detail, Replay and Purge.
//!
//! Pages are server-rendered from askama templates (`templates/console/`, checked at compile
//! time, every value escaped); the CSS and the little JavaScript are embedded assets. Reading
//! works without JavaScript. Every action is logged (`console` target: who, what, which
//! messages) and counted in `relay_console_actions_total` on the console's `/metrics`.

mod auth;
mod dead_letters;
mod pages;

use crate::config::Config;
use crate::ops::metrics::Metrics;
use crate::redact::Redactor;
use axum::Router;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The variable holding the console's login token.
pub const TOKEN_ENV: &str = "RELAY_CONSOLE_TOKEN";

/// Where the console listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8088";

/// The console's actions, counted by action and result.
pub const ACTIONS: &str = "relay_console_actions_total";

/// Dead letters touched by the console's actions, by action.
pub const ACTION_MESSAGES: &str = "relay_console_action_messages_total";

/// Options of `console`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Address to serve on. Any address but a loopback one needs RELAY_CONSOLE_TOKEN.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Hide and refuse Test, Replay and Purge: look, change nothing.
    #[arg(long)]
    pub read_only: bool,
}

/// What every request handler shares.
pub struct Console {
    /// The config, as loaded at start.
    pub config: Arc<Config>,
    /// Hide and refuse the actions.
    pub read_only: bool,
    /// Sessions and CSRF tokens.
    pub auth: auth::Auth,
    /// The console's own registry (`/metrics`).
    pub metrics: Metrics,
    /// Held while a request has the dead letters out of the queue (read, unacked): two
    /// requests of this console reading at once would each see the other's as missing.
    pub dead_letters: tokio::sync::Mutex<()>,
}

impl Console {
    /// Counts one action and the dead letters it touched.
    fn count(&self, action: &'static str, result: &'static str, messages: usize) {
        use ::metrics::Label;
        self.metrics
            .counter(
                ACTIONS,
                vec![Label::new("action", action), Label::new("result", result)],
            )
            .increment(1);
        if messages > 0 {
            self.metrics
                .counter(ACTION_MESSAGES, vec![Label::new("action", action)])
                .increment(messages as u64);
        }
    }
}

/// Why the console does not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A non-loopback address without a token would open the dead letters to the network.
    #[error(
        "--listen {0}: not a loopback address, and {TOKEN_ENV} is not set; set it to require a \
         login, or listen on 127.0.0.1"
    )]
    Exposed(SocketAddr),
    /// The token is too short to be a secret.
    #[error("{TOKEN_ENV} must be at least 16 characters")]
    WeakToken,
    /// Binding failed.
    #[error("--listen {addr}: cannot listen: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// The console's state for `config`, after the safety checks on `listen` and `token`.
pub fn console(
    config: Arc<Config>,
    listen: SocketAddr,
    token: Option<String>,
    read_only: bool,
) -> Result<Console, StartError> {
    let token = token.filter(|t| !t.is_empty());
    match &token {
        None if !listen.ip().is_loopback() => return Err(StartError::Exposed(listen)),
        Some(t) if t.len() < 16 => return Err(StartError::WeakToken),
        _ => {}
    }
    Ok(Console {
        config,
        read_only,
        auth: auth::Auth::new(token),
        metrics: Metrics::new(),
        dead_letters: tokio::sync::Mutex::new(()),
    })
}

/// The routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::webhooks))
        .route("/webhooks/{name}", get(pages::webhook))
        .route("/webhooks/{name}/test", post(pages::test))
        .route("/webhooks/{name}/render", post(pages::render))
        .route("/schema", get(pages::schema))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/show", get(dead_letters::show))
        .route("/dead-letters/replay", post(dead_letters::replay))
        .route("/dead-letters/purge", post(dead_letters::purge))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/metrics", get(pages::metrics))
        .route("/assets/console.css", get(pages::css))
        .route("/assets/console.js", get(pages::js))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// Runs `console`: checks the address, binds, prints the URL and serves until SIGTERM or
/// SIGINT. Returns the exit code.
pub async fn run(
    config: Config,
    args: &ConsoleArgs,
    redactor: &crate::redact::SharedRedactor,
) -> u8 {
    let token = std::env::var(TOKEN_ENV).ok();
    if let Some(token) = token.as_deref().filter(|t| !t.is_empty()) {
        redactor.learn(&Redactor::new([token.to_string()]));
    }
    let console = match console(Arc::new(config), args.listen, token, args.read_only) {
        Ok(console) => Arc::new(console),
        Err(e) => return super::usage_error(&e.to_string()),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            return super::usage_error(
                &StartError::Bind {
                    addr: args.listen,
                    error,
                }
                .to_string(),
            );
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    println!(
        "console on http://{addr}/{}",
        if args.read_only { " (read-only)" } else { "" }
    );
    tracing::info!(%addr, read_only = args.read_only, login = console.auth.required(), "console started");
    let shutdown = CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(shutdown.clone()));
    match serve(listener, console, shutdown).await {
        Ok(()) => super::EXIT_OK,
        Err(e) => {
            eprintln!("error: console: {e}");
            super::EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests;
