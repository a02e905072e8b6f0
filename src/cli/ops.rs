//! Commands for running the worker in containers: `healthcheck` (Docker HEALTHCHECK) and
//! `fake-logzio` (a stand-in listener for docker compose).

use crate::devtools::local_logzio::LocalLogzio;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
    pub url: String,
}

/// Exit 0 when `url` answers 200 within 5 seconds, 1 otherwise.
pub async fn healthcheck(args: &HealthcheckArgs) -> u8 {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: http client: {}", e.without_url());
            return super::EXIT_FAILED;
        }
    };
    match client.get(&args.url).send().await {
        Ok(r) if r.status().is_success() => super::EXIT_OK,
        Ok(r) => {
            eprintln!("unhealthy: {} answered {}", args.url, r.status());
            super::EXIT_FAILED
        }
        Err(e) => {
            eprintln!("unhealthy: {}: {}", args.url, e.without_url());
            super::EXIT_FAILED
        }
    }
}

/// Options of `fake-logzio`.
#[derive(Debug, Clone, clap::Args)]
pub struct FakeLogzioArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8071")]
    pub listen: SocketAddr,
    /// The token it accepts, read from this environment variable.
    #[arg(long, default_value = "LOGZIO_TOKEN")]
    pub token_env: String,
    /// Where to write its throwaway CA certificate (PEM), for the worker's `http.ca_file`.
    #[arg(long)]
    pub ca_out: PathBuf,
    /// Extra host names for its certificate (e.g. the compose service name).
    #[arg(long = "name")]
    pub names: Vec<String>,
}

/// Serves like Logz.io's listener until SIGTERM/SIGINT, logging a line per request received.
pub async fn fake_logzio(args: &FakeLogzioArgs) -> u8 {
    let Ok(token) = std::env::var(&args.token_env) else {
        eprintln!(
            "error: environment variable `{}` is not set",
            args.token_env
        );
        return super::EXIT_CONFIG;
    };
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    let listener = match LocalLogzio::start_on(args.listen, &token, &names).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e} ({})", args.listen);
            return super::EXIT_FAILED;
        }
    };
    if let Err(e) = std::fs::write(&args.ca_out, listener.ca_pem()) {
        eprintln!("error: cannot write {}: {e}", args.ca_out.display());
        return super::EXIT_FAILED;
    }
    tracing::info!(addr = %listener.addr(), ca = %args.ca_out.display(), "fake Logz.io listener ready");
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(shutdown.clone()));
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            requests = listener.wait_for_requests(seen + 1, Duration::from_secs(3600)) => {
                for r in requests.iter().skip(seen) {
                    tracing::info!(status = r.status, lines = r.accepted_lines.len(), body = %r.body_text(), "received");
                }
                seen = requests.len();
            }
        }
    }
    listener.shutdown().await;
    super::EXIT_OK
}
