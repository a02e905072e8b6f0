//! The command line. Each subcommand reads the same config as `run`. Output is aligned text
//! (colour only on a terminal), or JSON with `--json`. Exit codes: 0 ok, 1 the thing run or
//! checked failed, 2 a usage or config error.

mod check;
pub mod console;
mod dlq;
mod ops;
pub mod output;
mod publish;
mod render;
mod schema;
mod target;
mod test_webhook;
mod webhooks;

use crate::config::{self, CONFIG_DIR_ENV, Config, Env, LogFormat};
use crate::ops::metrics::Metrics;
use crate::redact::{self, Redactor, SharedRedactor};
use crate::worker;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Exit code: the command ran and succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: what was run or checked failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or an invalid config.
pub const EXIT_CONFIG: u8 = 2;

/// Relays access-request events from RabbitMQ to webhooks such as Logz.io.
#[derive(Debug, Parser)]
#[command(name = "webhook-relay", version, about)]
pub struct Cli {
    /// The config folder: relay.toml and webhooks/*.toml.
    #[arg(long, short = 'c', env = CONFIG_DIR_ENV, default_value = "config", global = true)]
    pub config: PathBuf,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker until SIGTERM or SIGINT.
    Run,
    /// Show the whole pipeline working against a built-in local HTTPS listener, then clean up.
    Demo(crate::devtools::demo::DemoArgs),
    /// Validate the whole config without touching the network.
    Check,
    /// The webhooks table: status, method, URL (redacted), triggers, filters, file.
    Webhooks,
    /// Print the exact request a webhook would send for an event, and whether it matches.
    Render(render::RenderArgs),
    /// Send one mock event to a webhook through the real delivery path and show the result.
    Test(test_webhook::TestArgs),
    /// Print the event payload's JSON Schema, or with --fields the template paths.
    Schema(schema::SchemaArgs),
    /// Publish events to the configured exchange with publisher confirms.
    Publish(publish::PublishArgs),
    /// Inspect, replay or purge the dead-letter queue.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Serve the operator console: webhooks, Test, schema and dead letters in a browser.
    Console(console::ConsoleArgs),
    /// Exit 0 when a running worker's /healthz answers 200 (for container health checks).
    Healthcheck(ops::HealthcheckArgs),
    /// Run a stand-in for the Logz.io listener (docker compose, trying things out).
    FakeLogzio(ops::FakeLogzioArgs),
}

/// The command line as parsed: [`Cli`] with the value of every option read from the
/// environment hidden from `--help` and errors, in every subcommand, since the environment
/// holds secrets (`RABBITMQ_URL` carries the broker password).
pub fn command() -> clap::Command {
    hide_env_values(Cli::command())
}

fn hide_env_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.hide_env_values(true))
        .mut_subcommands(hide_env_values)
}

/// Parses the command line, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli)))
}

/// Runs one command. Its log lines are scrubbed with `redactor`, which learns the secrets of
/// every config the command loads.
async fn dispatch(cli: Cli) -> u8 {
    let redactor = SharedRedactor::default();
    match cli.command {
        Command::Run => run(&cli.config, redactor).await,
        Command::Demo(args) => {
            redactor.learn(&Redactor::new(redact::url_text_secrets(&args.amqp_url)));
            let _telemetry = crate::ops::telemetry::init("error", LogFormat::Pretty, redactor);
            match crate::devtools::demo::run(args).await {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
            }
        }
        Command::Check => check::run(&cli.config, &Env::from_process(), cli.json),
        Command::Schema(args) => schema::run(&args, cli.json),
        Command::Healthcheck(args) => ops::healthcheck(&args).await,
        Command::FakeLogzio(args) => {
            if let Ok(token) = std::env::var(&args.token_env) {
                redactor.learn(&Redactor::new([token]));
            }
            let _telemetry = crate::ops::telemetry::init("info", LogFormat::Auto, redactor);
            ops::fake_logzio(&args).await
        }
        Command::Console(args) => {
            let config = match load_config(&cli.config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            redactor.learn(&config.redactor);
            // Info: the console's audit lines; the broker library only when it errs.
            let _telemetry = crate::ops::telemetry::init(
                "info,lapin=error",
                config.log_format,
                redactor.clone(),
            );
            console::run(config, &args, &redactor).await
        }
        command => {
            let _telemetry =
                crate::ops::telemetry::init("error", LogFormat::Pretty, redactor.clone());
            let config = match load_config(&cli.config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            redactor.learn(&config.redactor);
            match command {
                Command::Webhooks => webhooks::run(&config, cli.json),
                Command::Render(args) => render::run(&config, &args, cli.json),
                Command::Test(args) => test_webhook::run(&config, &args, cli.json).await,
                Command::Publish(args) => publish::run(&config, &args, cli.json).await,
                Command::Dlq(command) => dlq::run(&config, &command, cli.json).await,
                Command::Run
                | Command::Demo(_)
                | Command::Check
                | Command::Schema(_)
                | Command::Healthcheck(_)
                | Command::Console(_)
                | Command::FakeLogzio(_) => EXIT_CONFIG,
            }
        }
    }
}

/// [`EXIT_OK`] when the command succeeded, else [`EXIT_FAILED`].
fn exit_code(success: bool) -> u8 {
    if success { EXIT_OK } else { EXIT_FAILED }
}

/// Connects to the broker of `config`; on failure prints the error and returns its exit code.
async fn connect(config: &Config) -> Result<crate::broker::Broker, u8> {
    match crate::broker::Broker::connect(&config.amqp, &config.redactor).await {
        Ok(broker) => Ok(broker),
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_FAILED)
        }
    }
}

/// Prints a usage problem and returns its exit code.
fn usage_error(message: &str) -> u8 {
    eprintln!("error: {message}");
    EXIT_CONFIG
}

/// `●` for an active webhook, `○` for an inactive one, with the word.
fn status_dot(style: &output::Style, webhook: &crate::config::Webhook) -> String {
    if webhook.is_active() {
        style.good("● active")
    } else {
        "○ inactive".to_string()
    }
}

/// Loads the config, printing every problem on its own line on failure.
pub fn load_config(dir: &std::path::Path) -> Result<Config, u8> {
    match config::load(dir, &Env::from_process()) {
        Ok(config) => Ok(config),
        Err(e) => {
            for problem in &e.problems {
                eprintln!("error: {problem}");
            }
            Err(EXIT_CONFIG)
        }
    }
}

async fn run(dir: &std::path::Path, redactor: SharedRedactor) -> u8 {
    let config = match load_config(dir) {
        Ok(config) => Arc::new(config),
        Err(code) => return code,
    };
    redactor.learn(&config.redactor);
    let _telemetry = crate::ops::telemetry::init("info", config.log_format, redactor.clone());
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let server = match config.server_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
                Some(tokio::spawn(crate::ops::server::serve(
                    listener,
                    metrics.clone(),
                    shutdown.clone(),
                )))
            }
            Err(e) => {
                eprintln!(
                    "error: {}: server.listen: cannot listen on {addr}: {e}",
                    dir.join("relay.toml").display()
                );
                return EXIT_CONFIG;
            }
        },
    };
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let (reloads, reload_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(reload_on_sighup(
        dir.to_path_buf(),
        reloads,
        metrics.clone(),
        redactor.clone(),
    ));
    let result = worker::run_with_reloads(config, shutdown.clone(), metrics, reload_rx).await;
    shutdown.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {}", redactor.current().scrub(&e.to_string()));
            EXIT_FAILED
        }
    }
}

/// On every SIGHUP, loads the config folder again and hands the new config to the worker. An
/// invalid config is refused with one log line per problem; the running one stays. The log
/// redactor learns a loaded config's secrets before anything else happens with it, so no
/// line about the new config can show them.
async fn reload_on_sighup(
    dir: PathBuf,
    reloads: tokio::sync::mpsc::Sender<worker::Reload>,
    metrics: Arc<Metrics>,
    redactor: SharedRedactor,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; config reload is unavailable");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(config = %dir.display(), "SIGHUP received: reloading the config");
        match config::load(&dir, &Env::from_process()) {
            Ok(config) => {
                redactor.learn(&config.redactor);
                for warning in &config.warnings {
                    tracing::warn!("{warning}");
                }
                if reloads.send(Arc::new(config)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                metrics.record_reload(false);
                for problem in &e.problems {
                    tracing::error!("config reload refused: {problem}");
                }
                tracing::error!("config reload refused; the old config stays in force");
            }
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the worker with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option that clap may read from the environment, in every subcommand, has its
    /// value hidden from `--help`.
    #[test]
    fn env_values_are_hidden_everywhere() {
        fn walk(command: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    assert!(
                        arg.is_hide_env_values_set(),
                        "{path} --{}: the value of {env:?} would be printed",
                        arg.get_id()
                    );
                    found.push(format!("{path}:{}", env.to_string_lossy()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), found);
            }
        }
        let mut command = command();
        command.build();
        let mut found = Vec::new();
        walk(&command, "webhook-relay", &mut found);
        assert!(
            found.contains(&"webhook-relay demo:RABBITMQ_URL".to_string()),
            "{found:?}"
        );
        assert!(
            found.contains(&format!("webhook-relay run:{CONFIG_DIR_ENV}")),
            "global options reach the subcommands: {found:?}"
        );
    }
}
