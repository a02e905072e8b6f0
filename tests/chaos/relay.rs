//! The real `webhook-relay run` binary as a child process that a test can SIGKILL, SIGTERM and
//! read the logs of. Dropping it kills the process, so a failing test leaves nothing behind.

use crate::support::harness::TestApp;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running worker process.
pub struct Relay {
    /// Its name in the test's output, also sent as the `X-Chaos-Worker` header value.
    pub name: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Relay {
    /// Starts `run --config <app dir>` with the harness's variables, `CHAOS_WORKER=<name>` and
    /// `extra` (plus `PATH`).
    pub fn start(app: &TestApp, name: &str, extra: &[(&str, &str)]) -> Relay {
        let dir = app.config_dir().to_str().expect("temp dir path is UTF-8");
        let mut command = Command::new(TestApp::binary());
        command
            .args(["run", "--config", dir])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        for (k, v) in &app.env {
            command.env(k, v);
        }
        command.env("CHAOS_WORKER", name);
        for (k, v) in extra {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn webhook-relay");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let reader = collect(child.stderr.take().expect("stderr piped"), stderr.clone());
        Relay {
            name: name.to_string(),
            child,
            stderr,
            reader: Some(reader),
            status: None,
        }
    }

    /// What it has printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
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
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(status) => {
                self.status = Some(status);
                false
            }
            None => true,
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for the killed worker");
        self.status = Some(status);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns the exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "worker {} still running {timeout:?} after SIGTERM; stderr:\n{}",
                self.name,
                self.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}
