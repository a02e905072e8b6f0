//! The real `webhook-relay run` binary as a named worker process ([`crate::support::child`])
//! that a test can SIGKILL, SIGTERM and read the logs of. Dropping it kills the process, so a
//! failing test leaves nothing behind.

use crate::support::child::Child;
use crate::support::harness::{TestApp, child_env};
use std::time::Duration;

/// A running worker process.
pub struct Relay {
    /// Its name in the test's output, also sent as the `X-Chaos-Worker` header value.
    pub name: String,
    process: Child,
}

impl Relay {
    /// Starts `run --config <app dir>` with the harness's variables, `CHAOS_WORKER=<name>` and
    /// `extra` (plus `PATH`).
    pub fn start(app: &TestApp, name: &str, extra: &[(&str, &str)]) -> Relay {
        let worker = [("CHAOS_WORKER", name)];
        let env = child_env(app, &[&worker[..], extra].concat());
        Relay {
            name: name.to_string(),
            process: Child::run(app.config_dir(), &env),
        }
    }

    /// What it has printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr_so_far()
    }

    /// The last `n` lines of stderr, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Prints its warnings and errors, grouped by message with a count each.
    pub fn print_problems(&self) {
        let log = self.stderr();
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for line in log.lines() {
            let Some((level, rest)) = [" WARN ", " ERROR "]
                .iter()
                .find_map(|l| line.split_once(l).map(|(_, rest)| (l.trim(), rest)))
            else {
                continue;
            };
            // The message without its fields (`key=value`), which differ line by line.
            let message = rest
                .split(' ')
                .take_while(|word| !word.contains('='))
                .collect::<Vec<_>>()
                .join(" ");
            *counts.entry(format!("{level} {message}")).or_insert(0) += 1;
        }
        for (message, n) in counts {
            println!("[chaos]     {}: {n} × {message}", self.name);
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns the exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.process.terminate();
        match self.process.wait(timeout).await {
            Some(status) => status.code(),
            None => panic!(
                "worker {} still running {timeout:?} after SIGTERM; stderr:\n{}",
                self.name,
                self.tail(40)
            ),
        }
    }
}
