//! The tracing subscriber: human-readable lines on stderr, levels from `RUST_LOG` (default
//! `info`). Stdout stays free for command output.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing. `default_filter` applies when
/// `RUST_LOG` is unset, e.g. `"info"` or `"warn,webhook_relay=info"`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
