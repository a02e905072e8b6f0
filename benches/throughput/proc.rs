//! The processes the bench starts (the release worker, `perf`) and what it reads about them
//! and the machine from `/proc`.

use crate::err;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use webhook_relay::config::{self, Env};

/// The release binary cargo built for this bench.
pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_webhook-relay");

/// The release worker, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Worker {
    child: Child,
    pub pid: u32,
    log: PathBuf,
}

impl Worker {
    pub fn spawn(dir: &Path, env: &Env, rust_log: &str) -> Result<Worker, String> {
        let log = dir.join("worker.log");
        let stderr = std::fs::File::create(&log).map_err(err)?;
        let mut command = Command::new(WORKER_BIN);
        command
            .arg("run")
            .arg("--config")
            .arg(dir)
            .env("RUST_LOG", rust_log)
            .env_remove(config::CONFIG_DIR_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RELAY__") {
                command.env_remove(name);
            }
        }
        for (name, value) in env.vars() {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {WORKER_BIN}: {e}"))?;
        Ok(Worker {
            pid: child.id(),
            child,
            log,
        })
    }

    /// The exit code once it has exited (`Some(None)` for a signal).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `utime + stime` so far.
    pub fn cpu(&self, clock_ticks: u64) -> Option<Duration> {
        proc_cpu(&format!("/proc/{}/stat", self.pid), clock_ticks)
    }

    /// `VmHWM`: the peak resident set size, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// The worker's `/metrics` (its `[server] listen` on 127.0.0.1:`port`), within 5s.
    pub async fn metrics(&self, port: u16) -> Result<String, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let get = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            Ok::<_, std::io::Error>(response)
        };
        match tokio::time::timeout(Duration::from_secs(5), get).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(format!("GET /metrics: {e}")),
            Err(_) => Err("GET /metrics: no answer within 5s".into()),
        }
    }

    /// SIGTERM, wait up to 40s (the worker's grace is 30s), then SIGKILL. The exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        if let Some(exit) = self.exited() {
            return exit;
        }
        signal(self.pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(exit) = self.exited() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("worker {} ignored SIGTERM for 40s; killing it", self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        signal(self.pid, "TERM");
        for _ in 0..250 {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The value of an unlabelled Prometheus series in a `/metrics` text.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(err)
}

/// `utime + stime` of a `/proc/<pid>/stat` file.
fn proc_cpu(path: &str, clock_ticks: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks as f64,
    ))
}

pub fn self_cpu(clock_ticks: u64) -> Option<Duration> {
    proc_cpu("/proc/self/stat", clock_ticks)
}

/// `getconf CLK_TCK`, 100 when it cannot be asked.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The 1, 5 and 15 minute load averages: the machine is shared, so every phase says how busy
/// it was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `perf record -g` of the worker, stopped with SIGINT.
pub struct Perf {
    child: Option<Child>,
}

impl Perf {
    pub fn start(dir: &Path, phase: &str, pid: u32) -> Perf {
        let _ = std::fs::create_dir_all(dir);
        let out = dir.join(format!("perf-{phase}-{pid}.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                eprintln!("perf: recording the worker into {}", out.display());
                Perf { child: Some(child) }
            }
            Err(e) => {
                eprintln!("perf: cannot start: {e}");
                Perf { child: None }
            }
        }
    }

    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT");
            for _ in 0..500 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
