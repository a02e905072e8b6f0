//! Running the broker's command-line tools from the failure tests (`rabbitmqctl` in
//! `tests/chaos`, `scripts/cluster` in `tests/cluster`). Included only by those binaries
//! (`#[path]`).

use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `program args…` (named `name` in messages) off the async runtime, failing the test
/// if it fails or takes longer than `limit`; prints how long it took after `tag`. Returns
/// what it printed.
pub async fn run_tool(
    program: &Path,
    name: &str,
    args: &[&str],
    limit: Duration,
    tag: &str,
) -> std::process::Output {
    let program = program.to_path_buf();
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let shown = format!("{name} {}", owned.join(" "));
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(&owned)
            .stdin(std::process::Stdio::null())
            .output()
    });
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{shown}: no answer within {limit:?}"))
        .expect("tool task")
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "[{tag}]   {shown} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    output
}
