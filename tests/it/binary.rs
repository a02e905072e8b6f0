//! The real binary, driven as a child process ([`crate::support::child`]: exactly the
//! environment a test gives it, its output collected by threads, and a guard that kills it if
//! the test ends first), plus what the integration tests read of it: SIGHUP, and the exit
//! with everything it printed.

pub use crate::support::child::Child as Relay;
use std::process::ExitStatus;
use std::time::Duration;

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
    /// Sends SIGHUP: the worker reloads its config.
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Waits for the exit, failing the test (with what was printed) if it takes too long.
    pub async fn exit_within(&mut self, timeout: Duration) -> Finished {
        match self.wait(timeout).await {
            Some(status) => Finished {
                status,
                stdout: self.stdout.text(),
                stderr: self.stderr.text(),
            },
            None => panic!(
                "webhook-relay still running after {timeout:?}; stderr so far:\n{}",
                self.stderr_so_far()
            ),
        }
    }
}
