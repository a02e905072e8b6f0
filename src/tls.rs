//! TLS plumbing every layer shares: the one process-wide rustls crypto provider (ring), which
//! reqwest (built without a default provider), the OTLP exporter and the local listeners need
//! before they make their first TLS object.

/// Installs rustls' ring provider as the process default, once. Idempotent: later calls (and
/// a provider installed by someone else first) are fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
