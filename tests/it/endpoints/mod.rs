//! Endpoints beyond Logz.io, against real HTTPS endpoints on 127.0.0.1 (`tests/support/
//! endpoint.rs`): OAuth2 tokens, Standard Webhooks signatures, response validators and the
//! rate limit. Most drive the library's `Deliverer` directly, the worker's own delivery path
//! for the intake and the retry queue; the dead-letter test runs the whole worker.

use crate::endpoint_server::Endpoint;
use std::sync::Arc;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use webhook_relay::config::{self, Config, Env};
use webhook_relay::model::event::EventId;
use webhook_relay::pipeline::delivery::{Deliverer, DeliveryRequest};
use webhook_relay::pipeline::outcome::Outcome;

mod oauth;
mod rate;
mod signing;
mod validators;

/// A loaded config and the folder it lives in.
struct Setup {
    _dir: TempDir,
    config: Config,
}

impl Setup {
    /// A config whose webhooks are `webhooks`, trusting and allowing `endpoints`, with
    /// `[delivery]` set to `delivery` and `${VAR}`s from `env`.
    fn new(webhooks: &str, endpoints: &[&Endpoint], env: &[(&str, &str)], delivery: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca: String = endpoints.iter().map(|e| e.ca_pem().to_string()).collect();
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        let ports: Vec<String> = endpoints.iter().map(|e| e.port().to_string()).collect();
        let relay = format!(
            "[delivery]\n{delivery}\n[http]\nca_file = \"ca.pem\"\n[policy]\nallowed_ports = [{}]\n",
            ports.join(", ")
        );
        std::fs::write(dir.path().join("relay.toml"), relay).unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        std::fs::write(dir.path().join("webhooks/a.toml"), webhooks).unwrap();
        let config = config::load(dir.path(), &Env::from_pairs(env.iter().copied()))
            .unwrap_or_else(|e| panic!("test config does not load:\n{e}"));
        Setup { _dir: dir, config }
    }

    fn deliverer(&self) -> Arc<Deliverer> {
        Arc::new(Deliverer::new(&self.config).unwrap())
    }

    /// A first-attempt request of event `id` to webhook `name` with `body`.
    fn request(&self, name: &str, id: &str, body: &str) -> DeliveryRequest {
        DeliveryRequest {
            webhook: Arc::clone(self.config.webhook(name).unwrap()),
            event_id: EventId(id.to_string()),
            body: body.to_string().into(),
            prior: None,
            batch_size: None,
        }
    }
}

/// Delivers `request` with the webhook's own retry settings.
async fn deliver(deliverer: &Deliverer, request: &DeliveryRequest) -> Outcome {
    deliverer.deliver(request, &CancellationToken::new()).await
}

/// Short retries, a long enough window.
const QUICK: &str = "timeout = \"5s\"\nmax_attempts = 4\ninitial_backoff = \"50ms\"\n\
                     max_backoff = \"200ms\"\nretry_window = \"10s\"\n";
