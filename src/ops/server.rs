//! The operations HTTP server: `/metrics` (Prometheus text), `/healthz` (liveness: the
//! process and its runtime answer) and `/readyz` (readiness: connected to the broker and
//! consuming; 503 with a JSON reason otherwise, e.g. during a reconnect).

use super::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often histogram windows are drained.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The routes, for a worker's metrics and readiness.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(exposition))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// Serves until `shutdown` is cancelled, running the registry's upkeep meanwhile.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let upkeep = {
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(UPKEEP_INTERVAL) => metrics.run_upkeep(),
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    };
    let result = axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    upkeep.abort();
    result
}

async fn exposition(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> Response {
    let (status, body) = match metrics.readiness.check() {
        Ok(()) => (StatusCode::OK, serde_json::json!({"ready": true})),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "reason": reason}),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
