//! The real binary, driven as a child process: exactly the environment a test gives it, its
//! output collected by threads, and a guard that kills it if the test ends first.

use crate::harness::TestApp;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `webhook-relay`, its output collected by two threads. Dropping it kills the
/// process, so a failing test leaves nothing behind.
pub struct Relay {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// What a finished run printed.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl Relay {
    /// The process id, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the binary with `args` and exactly the variables in `env` (plus `PATH`), stdin
    /// empty.
    pub fn spawn<K: AsRef<str>, V: AsRef<str>>(args: &[&str], env: &[(K, V)]) -> Relay {
        Relay::spawn_with_stdin(args, env, None)
    }

    /// [`Relay::spawn`], with `stdin` (when given) written to the process's stdin by a thread
    /// of its own, which then closes it.
    pub fn spawn_with_stdin<K: AsRef<str>, V: AsRef<str>>(
        args: &[&str],
        env: &[(K, V)],
        stdin: Option<Vec<u8>>,
    ) -> Relay {
        let mut command = Command::new(TestApp::binary());
        command
            .args(args)
            .env_clear()
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        for (name, value) in env {
            command.env(name.as_ref(), value.as_ref());
        }
        let mut child = command.spawn().expect("spawn webhook-relay");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Dropping the pipe at the end closes it: the child sees end of input.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout piped"), stdout.clone()),
            collect(child.stderr.take().expect("stderr piped"), stderr.clone()),
        ];
        Relay {
            child,
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    /// Starts `run --config <dir>` with `env`.
    pub fn run<K: AsRef<str>, V: AsRef<str>>(dir: &Path, env: &[(K, V)]) -> Relay {
        let dir = dir.to_str().expect("temp dir path is UTF-8");
        Relay::spawn(&["run", "--config", dir], env)
    }

    /// What it has printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        text(&self.stderr)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGHUP: the worker reloads its config.
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Sends the signal `name` (e.g. `TERM`).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait(&mut self, timeout: Duration) -> Option<Finished> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                // The pipes close with the process: the readers end.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(Finished {
                    status,
                    stdout: text(&self.stdout),
                    stderr: text(&self.stderr),
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit, failing the test (with what was printed) if it takes too long.
    pub async fn exit_within(&mut self, timeout: Duration) -> Finished {
        match self.wait(timeout).await {
            Some(finished) => finished,
            None => panic!(
                "webhook-relay still running after {timeout:?}; stderr so far:\n{}",
                self.stderr_so_far()
            ),
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

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// The harness's variables for the child, plus `extra`.
pub fn child_env(app: &TestApp, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = app.env.clone();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}
