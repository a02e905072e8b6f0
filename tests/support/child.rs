//! The real `webhook-relay` binary as a child process, for both test binaries: exactly the
//! environment a test gives it, stdout and stderr collected by threads, signals, waiting for
//! the exit with a deadline, and a guard that kills it if the test ends first.
//!
//! Each suite adds its own helpers on top: `tests/it/binary.rs` (SIGHUP, the exit with what
//! was printed) and `tests/chaos/relay.rs` (named workers, their log's tail and problems).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `webhook-relay`, its stdout and stderr collected by two threads. Dropping it
/// kills the process, so a failing test leaves nothing behind.
pub struct Child {
    process: std::process::Child,
    /// What it has printed on stdout.
    pub stdout: Captured,
    /// What it has printed on stderr (the log).
    pub stderr: Captured,
    /// Set once it has exited and been reaped.
    status: Option<ExitStatus>,
}

/// One output stream of the child, read by a thread of its own as it comes.
pub struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    fn collect(mut pipe: impl Read + Send + 'static) -> Captured {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let into = bytes.clone();
        let reader = std::thread::spawn(move || {
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
        });
        Captured {
            bytes,
            reader: Some(reader),
        }
    }

    /// Everything printed so far (all of it once the process has exited), as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Waits for the reader to reach the end of the stream; call it after the exit (the pipe
    /// closes with the process).
    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Child {
    /// Starts the binary with `args` and exactly the variables in `env` (plus `PATH`), stdin
    /// empty.
    pub fn spawn<K: AsRef<str>, V: AsRef<str>>(args: &[&str], env: &[(K, V)]) -> Child {
        Child::spawn_with_stdin(args, env, None)
    }

    /// [`Child::spawn`], with `stdin` (when given) written to the process's stdin by a thread
    /// of its own, which then closes it.
    pub fn spawn_with_stdin<K: AsRef<str>, V: AsRef<str>>(
        args: &[&str],
        env: &[(K, V)],
        stdin: Option<Vec<u8>>,
    ) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-relay"));
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
        let mut process = command.spawn().expect("spawn webhook-relay");
        if let (Some(input), Some(mut pipe)) = (stdin, process.stdin.take()) {
            // Dropping the pipe at the end closes it: the child sees end of input.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = Captured::collect(process.stdout.take().expect("stdout piped"));
        let stderr = Captured::collect(process.stderr.take().expect("stderr piped"));
        Child {
            process,
            stdout,
            stderr,
            status: None,
        }
    }

    /// Starts `run --config <dir>` with `env`.
    pub fn run<K: AsRef<str>, V: AsRef<str>>(dir: &Path, env: &[(K, V)]) -> Child {
        let dir = dir.to_str().expect("temp dir path is UTF-8");
        Child::spawn(&["run", "--config", dir], env)
    }

    /// The process id, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// What it has printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// Sends the signal `name` (e.g. `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM (and does not wait).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Whether the process is still running. Once it has exited, it is reaped and its output
    /// is complete.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.process.try_wait().expect("try_wait");
            if self.status.is_some() {
                self.stdout.finish();
                self.stderr.finish();
            }
        }
        self.status.is_none()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.status
    }

    /// SIGKILL, then reaps the process; its output is complete afterwards. Nothing to do once
    /// it has exited.
    pub fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        let _ = self.process.kill();
        if let Ok(status) = self.process.wait() {
            self.status = Some(status);
            self.stdout.finish();
            self.stderr.finish();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
