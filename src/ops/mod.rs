//! Operations: the metrics registry and readiness, the `/metrics` `/healthz` `/readyz` server,
//! and the tracing subscriber. They observe values handed to them and reach into no stage.

pub mod metrics;
pub mod server;
pub mod telemetry;
