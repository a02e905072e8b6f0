//! `webhook-relay check`: loads the whole config and runs the config lint
//! ([`config::lint`]) without touching the network; prints one line per problem (load
//! errors, load warnings and lint findings alike), naming file, webhook and field.

use super::output::{Style, plural, print_json};
use super::webhooks::EndpointSettings;
use crate::config::{self, Env, Problem, Severity, lint};
use std::path::Path;

/// What `check --json` prints.
#[derive(serde::Serialize)]
struct Report {
    ok: bool,
    errors: usize,
    warnings: usize,
    webhooks: usize,
    active: usize,
    findings: Vec<Problem>,
    /// Each webhook's auth type, signing, validators and rate limit, by name.
    endpoints: Vec<serde_json::Value>,
}

/// Runs `check` on the config folder `dir`; exit 0 when there is no error (warnings allowed),
/// 1 otherwise.
pub fn run(dir: &Path, env: &Env, json: bool) -> u8 {
    let style = Style::detect();
    let mut endpoints = Vec::new();
    let mut lines = Vec::new();
    let (findings, webhooks, active) = match config::load(dir, env) {
        Ok(config) => {
            let mut findings = config.warnings.clone();
            findings.extend(lint::lint(&config));
            let active = config.webhooks.iter().filter(|w| w.is_active()).count();
            for w in &config.webhooks {
                let mut settings = serde_json::to_value(EndpointSettings::of(w))
                    .unwrap_or_else(|_| serde_json::json!({}));
                settings["webhook"] = serde_json::Value::String(w.name.clone());
                endpoints.push(settings);
                if let Some(line) = EndpointSettings::line(w) {
                    lines.push(format!("webhook `{}`: {line}", w.name));
                }
            }
            (findings, config.webhooks.len(), active)
        }
        Err(e) => (e.problems, 0, 0),
    };
    let errors = findings.iter().filter(|f| f.is_error()).count();
    let warnings = findings.len() - errors;
    if json {
        print_json(&Report {
            ok: errors == 0,
            errors,
            warnings,
            webhooks,
            active,
            findings,
            endpoints,
        });
    } else {
        for finding in &findings {
            let label = match finding.severity {
                Severity::Error => style.bad("error"),
                Severity::Warning => style.warn("warning"),
            };
            println!("{label}: {finding}");
        }
        for line in &lines {
            println!("{line}");
        }
        let summary = format!(
            "{}: {} ({active} active), {}, {}",
            dir.display(),
            plural(webhooks, "webhook"),
            plural(errors, "error"),
            plural(warnings, "warning")
        );
        if errors == 0 {
            println!("{} {summary}", style.good("ok"));
        } else {
            println!("{} {summary}", style.bad("failed"));
        }
    }
    super::exit_code(errors == 0)
}
