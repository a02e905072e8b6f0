//! `relay.toml`: the shape of the file, and its small sections (`[http]`, `[policy]`,
//! `[shutdown]`, `[monitor]`, `[server]`, `[log]`), each validating itself. `[amqp]` and
//! `[delivery]` have modules of their own.

use super::amqp::RawAmqp;
use super::delivery::DeliveryOverrides;
use super::duration;
use super::problem::{Findings, Problem};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `relay.toml` as written (after `RELAY__…` overrides), before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRelay {
    pub amqp: RawAmqp,
    pub delivery: DeliveryOverrides,
    pub http: RawHttp,
    pub policy: Policy,
    pub shutdown: ShutdownSettings,
    pub monitor: RawMonitor,
    pub server: RawServer,
    pub log: RawLog,
}

/// `[http]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttp {
    pub ca_file: String,
}

/// `[http]`, validated.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// The extra root CAs file, if any.
    pub ca_file: Option<PathBuf>,
    /// Its PEM contents, read at load time.
    pub ca_pem: Option<Vec<u8>>,
}

impl RawHttp {
    /// Reads `ca_file` (relative to the config folder `dir`) and checks that it holds a PEM
    /// certificate. On a problem, records it against `file` and returns no extra CA.
    pub(crate) fn validate(&self, dir: &Path, file: &Path, found: &mut Findings) -> HttpSettings {
        let ca_file = match self.ca_file.trim() {
            "" => return HttpSettings::default(),
            ca_file => dir.join(ca_file),
        };
        let message = match std::fs::read(&ca_file) {
            Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
                return HttpSettings {
                    ca_file: Some(ca_file),
                    ca_pem: Some(pem),
                };
            }
            Ok(_) => format!("{} holds no PEM certificate", ca_file.display()),
            Err(e) => format!("cannot read {}: {e}", ca_file.display()),
        };
        found.push(Problem::field(file, "http.ca_file", message));
        HttpSettings::default()
    }
}

/// `[shutdown]`, as written and validated (any grace is valid).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// How long in-flight deliveries may run after SIGTERM before the worker exits and lets
    /// the broker redeliver what did not finish.
    #[serde(with = "duration")]
    pub grace: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            grace: Duration::from_secs(30),
        }
    }
}

/// `[monitor]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMonitor {
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for RawMonitor {
    fn default() -> Self {
        RawMonitor {
            interval: Duration::from_secs(30),
        }
    }
}

impl RawMonitor {
    /// The monitor interval; a zero interval is recorded as a problem of `file`.
    pub(crate) fn validate(&self, file: &Path, found: &mut Findings) -> Duration {
        if self.interval.is_zero() {
            found.push(Problem::field(
                file,
                "monitor.interval",
                "must be greater than 0",
            ));
        }
        self.interval
    }
}

/// `[server]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub listen: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

impl RawServer {
    /// The address to serve on, `None` for `""` (no server). An address that does not parse
    /// is recorded as a problem of `file` (and gives `None`).
    pub(crate) fn validate(&self, file: &Path, found: &mut Findings) -> Option<SocketAddr> {
        let text = self.listen.trim();
        if text.is_empty() {
            return None;
        }
        let addr = text.parse::<SocketAddr>();
        if addr.is_err() {
            found.push(Problem::field(
                file,
                "server.listen",
                format!(
                    "`{text}` is not an address like 127.0.0.1:9090 (\"\" turns the server off)"
                ),
            ));
        }
        addr.ok()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, human-readable when it is.
    #[default]
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]` as written; every format is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub format: LogFormat,
}

/// `[policy]`: the seed's URL rules. On by default: HTTPS only, no custom ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Refuse webhook URLs that are not `https://`.
    pub require_https: bool,
    /// Allow `run` to start with no active webhook. The worker then connects but consumes
    /// nothing (and reports not ready) until a reload brings an active webhook: without it,
    /// every event would be acked and dropped.
    pub allow_idle: bool,
    /// Ports besides the scheme's default that webhook URLs may name (e.g. `[8071]` for the
    /// Logz.io listener's TLS port). As an env override: `RELAY__POLICY__ALLOWED_PORTS=8071,8443`.
    #[serde(deserialize_with = "ports")]
    pub allowed_ports: Vec<u16>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require_https: true,
            allow_idle: false,
            allowed_ports: Vec::new(),
        }
    }
}

/// Accepts a TOML array of ports, or a comma-separated string (how an env override arrives).
fn ports<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ports {
        List(Vec<u16>),
        One(u16),
        Text(String),
    }
    match Ports::deserialize(d)? {
        Ports::List(list) => Ok(list),
        Ports::One(port) => Ok(vec![port]),
        Ports::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a port number")))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_file() -> &'static Path {
        Path::new("relay.toml")
    }

    fn errors(found: Findings) -> String {
        found
            .finish()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn server_listen_is_an_address_or_empty() {
        let mut found = Findings::default();
        let server = |listen: &str| RawServer {
            listen: listen.into(),
        };
        assert_eq!(
            server(" 127.0.0.1:9090 ").validate(relay_file(), &mut found),
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(server("").validate(relay_file(), &mut found), None);
        assert!(!found.has_errors());
        assert_eq!(server("nonsense").validate(relay_file(), &mut found), None);
        assert_eq!(
            errors(found),
            "relay.toml: server.listen: `nonsense` is not an address like 127.0.0.1:9090 \
             (\"\" turns the server off)"
        );
    }

    #[test]
    fn monitor_interval_must_be_positive() {
        let mut found = Findings::default();
        let monitor = RawMonitor {
            interval: Duration::ZERO,
        };
        monitor.validate(relay_file(), &mut found);
        assert_eq!(
            errors(found),
            "relay.toml: monitor.interval: must be greater than 0"
        );
    }

    #[test]
    fn the_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not.pem"), "hello").unwrap();
        let http = |ca_file: &str| RawHttp {
            ca_file: ca_file.into(),
        };
        let mut found = Findings::default();
        let none = http(" ").validate(dir.path(), relay_file(), &mut found);
        assert!(none.ca_file.is_none() && !found.has_errors());
        let refused = http("not.pem").validate(dir.path(), relay_file(), &mut found);
        assert!(refused.ca_pem.is_none());
        let message = errors(found);
        assert!(
            message.starts_with("relay.toml: http.ca_file: ")
                && message.ends_with("not.pem holds no PEM certificate"),
            "{message}"
        );

        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut found = Findings::default();
        let read = http("ca.pem").validate(dir.path(), relay_file(), &mut found);
        assert_eq!(read.ca_file, Some(dir.path().join("ca.pem")));
        assert!(read.ca_pem.is_some() && !found.has_errors());
    }

    #[test]
    fn ports_come_as_a_list_a_number_or_text() {
        let policy = |toml: &str| toml::from_str::<Policy>(toml).map(|p| p.allowed_ports);
        assert_eq!(policy("allowed_ports = [8071]").unwrap(), [8071]);
        assert_eq!(policy("allowed_ports = 8071").unwrap(), [8071]);
        assert_eq!(
            policy("allowed_ports = \"8071, 8443\"").unwrap(),
            [8071, 8443]
        );
        let err = policy("allowed_ports = \"8071,x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x` is not a port number"), "{err}");
    }
}
