//! webhook-relay: consumes access-request events from RabbitMQ, matches them against webhook
//! rules, renders a Handlebars body per matching webhook and delivers it over HTTPS, with
//! retries and a dead-letter queue. The input message is acked only once every matching
//! webhook has been delivered or its dead letter is confirmed by the broker.
//!
//! # Layout
//!
//! Folders are layers. A module may use the layers below it, never one above, and no two
//! modules use each other (`layers` below checks the first rule on every build of the tests).
//!
//! ```text
//!  cli ─────────────── the binary's commands; main.rs only calls cli::main; cli::console
//!                      is the web console, a command like the others over the same functions
//!  devtools ────────── demo, local Logz.io listener, throwaway certificates
//!  worker ──────────── the run loop: Worker (what a run shares), Connection (one connection's
//!                      intake, flow, retry consumers, monitor), Message (one message from
//!                      decode to settle), Pipeline (the stages built from one config)
//!  broker ──────────── RabbitMQ: connection, topology, flow (memory budget), intake,
//!                      publish, inbound, settle (every ack/nack), dead letters, dlq
//!  pipeline ────────── rules, batch, delivery (HTTP, retries, circuit breaker), outcome
//!  ops ─────────────── metrics and readiness, /metrics /healthz /readyz, tracing subscriber
//!  config ──────────── relay.toml + webhooks/*.toml + RELAY__… env, validated per section,
//!                      and `check`'s lint
//!  model ───────────── the event (triggers, identity, decoding, views, schema, samples) and
//!                      the compiled body template: pure, used by config at load
//!  redact, tls ─────── secrets and their masking; the process's crypto provider
//! ```
//!
//! - [`model`]: what an access-request event is and how a body is rendered from it.
//! - [`config`]: the validated config, swapped whole on reload; [`config::lint`] is `check`.
//! - [`ops`]: observes through values handed to it; no stage reaches into another to count.
//! - [`pipeline`]: decode is in [`model::event`]; [`pipeline::rules`] picks the webhooks,
//!   [`pipeline::delivery`] sends one request and classifies the answer (it never acks),
//!   [`pipeline::batch`] groups NDJSON lines, [`pipeline::outcome`] is how a delivery ended.
//! - [`broker`]: nothing outside it sees a delivery tag; [`broker::settle`] alone decides a
//!   message's fate.
//! - [`worker`]: consume → decode → match → render → deliver → settle, one way.
//! - [`devtools`], [`cli`]: clients of the library; [`cli::console`] serves in a browser what
//!   the other commands print, through the same functions.

pub mod broker;
pub mod cli;
pub mod config;
pub mod devtools;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod redact;
pub mod tls;
pub mod worker;

#[cfg(test)]
mod layers {
    //! The layer rule of the crate docs, checked on the source text: no `crate::` path in a
    //! module's code (tests excluded) names a layer above the module's own.

    const LAYERS: [&[&str]; 9] = [
        &["redact", "tls"],
        &["model"],
        &["config"],
        &["ops"],
        &["pipeline"],
        &["broker"],
        &["worker"],
        &["devtools"],
        &["cli"],
    ];

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_module_uses_a_layer_above_its_own() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut violations = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&root).unwrap();
            let top = relative.iter().next().unwrap().to_str().unwrap();
            let Some(own) = layer(top.trim_end_matches(".rs")) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for used in line.split("crate::").skip(1) {
                    let name: String = used
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if layer(&name).is_some_and(|l| l > own) {
                        violations.push(format!("{}: {}", relative.display(), line.trim()));
                    }
                }
            }
        }
        assert!(
            violations.is_empty(),
            "uses of a higher layer:\n{}",
            violations.join("\n")
        );
    }
}
