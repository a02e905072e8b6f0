//! webhook-relay: consumes access-request events from RabbitMQ, matches them against webhook
//! rules, renders a Handlebars body per matching webhook and delivers it over HTTPS, with
//! retries and a dead-letter queue. The input message is acked only once every matching
//! webhook has been delivered or its dead letter is confirmed by the broker.
//!
//! # Layout
//! - [`config`]: `relay.toml` + `webhooks/*.toml` + `RELAY__…` env, parsed and validated once.
//! - [`redact`]: secret values and URL/header redaction used by every printed string.
//! - [`event`]: the access-request event: typed view, identity, JSON Schema, samples.
//! - [`validate`]: checks a document against the event JSON Schema (`publish`).
//! - [`rules`]: which webhooks an event matches (pure, no I/O).
//! - [`template`]: Handlebars bodies compiled at load, with JSON-aware escaping (pure).
//! - [`batch`]: per-webhook NDJSON batching between template and delivery.
//! - [`delivery`]: the HTTP client, one attempt, its classification and the retry loop.
//! - [`outcome`]: how one delivery ended, and the dead-letter reasons.
//! - [`dead_letter`]: dead-letter reasons and the headers a dead letter carries.
//! - [`dlq`]: listing, replaying and purging dead letters without losing or reordering any.
//! - [`amqp`]: broker connection, topology, consuming into [`amqp::Inbound`], confirmed publishes.
//! - [`settle`]: joins the outcomes of one message and acks, dead-letters or requeues it.
//! - [`worker`]: the `run` loop: reconnects, bounded concurrency, graceful shutdown.
//! - [`lint`]: what `check` reports beyond load errors (template paths, JSON, duplicates).
//! - [`devcert`]: throwaway CA and server certificate for loopback HTTPS (demo, tests).
//! - [`local_logzio`]: a loopback HTTPS listener that answers like Logz.io (demo, tests).
//! - [`metrics`]: the Prometheus registry and readiness of one worker.
//! - [`server`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`demo`]: the built-in end-to-end demonstration.
//! - [`cli`]: command-line interface; `main.rs` only calls [`cli::main`].
//! - [`telemetry`]: the tracing subscriber.

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
