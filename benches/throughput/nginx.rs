//! The HTTPS sink of the drain phases: nginx answering `200` on 127.0.0.1, and its access log,
//! which counts the events answered.

use crate::proc::{free_port, signal};
use crate::{err, first_line};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use webhook_relay::devtools::devcert::DevCert;

/// nginx in the foreground, answering 200 on 127.0.0.1 over TLS; stopped when dropped.
pub struct Nginx {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(tmp: &Path, cert: &DevCert) -> Result<Nginx, String> {
        let binary = std::env::var("NGINX").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nginx").exists() {
                "/usr/sbin/nginx".into()
            } else {
                "nginx".into()
            }
        });
        let dir = tmp.join("nginx");
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::write(dir.join("cert.pem"), cert.cert_pem()).map_err(err)?;
        std::fs::write(dir.join("key.pem"), cert.key_pem()).map_err(err)?;
        let port = free_port()?;
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf(&dir, port)).map_err(err)?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e} (scripts/bench installs it)"))?;
        let mut nginx = Nginx {
            child: Some(child),
            port,
            dir,
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    /// Waits up to 10s for the port to accept; when nginx exits or does not listen by then,
    /// stops it and says what it printed.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let mut stderr = String::new();
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                }
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(format!(
                    "nginx did not start: {} {}",
                    first_line(&stderr),
                    first_line(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn access_log(&self) -> Result<AccessLog, String> {
        AccessLog::open(&self.dir.join("access.log"))
    }

    /// SIGQUIT (graceful), then SIGTERM, then SIGKILL, each with a bounded wait.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        for sig in ["QUIT", "TERM"] {
            signal(child.id(), sig);
            for _ in 0..250 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The config: one worker process, TLS on `127.0.0.1:<port>`, `200` for everything, and an
/// access log line per request of `$status $http_x_relay_batch_size $connection`.
fn conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"# written by benches/throughput
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$status $http_x_relay_batch_size $connection';
    access_log {d}/access.log bench;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{ return 200; }}
    }}
}}
"#
    )
}

/// nginx's access log read as it grows: one line per request,
/// `<status> <x-relay-batch-size or -> <connection serial>`.
pub struct AccessLog {
    file: std::fs::File,
    partial: String,
    /// The connections seen since the last [`AccessLog::skip_to_end`].
    pub connections: std::collections::HashSet<u64>,
    /// Events in requests answered 200 (a line without a batch size is one event).
    pub events: u64,
    /// Requests answered 200.
    pub requests: u64,
    /// Requests answered anything else.
    pub rejected: u64,
}

impl AccessLog {
    fn open(path: &Path) -> Result<AccessLog, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AccessLog {
            file,
            partial: String::new(),
            connections: Default::default(),
            events: 0,
            requests: 0,
            rejected: 0,
        })
    }

    pub fn skip_to_end(&mut self) -> Result<(), String> {
        self.file.seek(SeekFrom::End(0)).map_err(err)?;
        self.partial.clear();
        self.connections.clear();
        Ok(())
    }

    /// Reads what was appended since the last call.
    pub fn read(&mut self) -> Result<(), String> {
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes).map_err(err)?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let complete = match self.partial.rfind('\n') {
            Some(end) => end + 1,
            None => return Ok(()),
        };
        let text: String = self.partial.drain(..complete).collect();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let status = parts.next().unwrap_or("");
            let size = parts.next().unwrap_or("-");
            if let Some(connection) = parts.next().and_then(|c| c.parse().ok()) {
                self.connections.insert(connection);
            }
            if status == "200" {
                self.requests += 1;
                self.events += size.parse::<u64>().unwrap_or(1);
            } else if !status.is_empty() {
                self.rejected += 1;
            }
        }
        Ok(())
    }
}
