//! The shared HTTP client every delivery goes through.

use super::error::DeliveryError;
use super::request::USER_AGENT;
use crate::config::HttpSettings;
use std::time::Duration;

/// The shared HTTP client: rustls with the system roots plus `http.ca_file`, connection
/// reuse, and no redirects, since a token in the URL must not travel to another host.
pub fn build_client(http: &HttpSettings) -> Result<reqwest::Client, DeliveryError> {
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(pem) = &http.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(DeliveryError::ca_file)?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(DeliveryError::client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_source() {
        let http = HttpSettings {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..HttpSettings::default()
        };
        let err = build_client(&http).unwrap_err();
        assert!(matches!(err, DeliveryError::CaFile { .. }), "{err:?}");
        assert!(err.to_string().starts_with("http.ca_file: "), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
