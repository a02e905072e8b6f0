//! Throwaway certificates for loopback HTTPS: a self-signed CA and a server certificate it
//! signs for `127.0.0.1` and `localhost`.
//!
//! Used by [`crate::devtools::local_logzio`] (the demo and the tests), so that the relay talks real TLS
//! to a local listener and verifies it against an extra root ([`DevCert::ca_pem`]) instead of
//! switching verification off. Nothing here is persisted: every [`DevCert::generate`] makes new
//! keys, and the private keys never leave the process.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The subject alternative names of the server certificate (an IP SAN and a DNS SAN).
const SERVER_SANS: [&str; 2] = ["127.0.0.1", "localhost"];

/// Why a [`DevCert`] could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// rcgen failed to generate a key pair or to sign a certificate.
    #[error("dev certificate: generating {what}")]
    Generate {
        /// Which step failed (for example `CA certificate`).
        what: &'static str,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the generated certificate or key.
    #[error("dev certificate: building the TLS server config")]
    Tls(#[source] rustls::Error),
    /// The CA PEM could not be written to a file.
    #[error("dev certificate: writing {path}")]
    Write {
        /// The file that could not be written.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A throwaway CA plus a server certificate it signed for `127.0.0.1` and `localhost`, with the
/// rustls server configuration that presents it.
///
/// Clients trust [`ca_pem`](Self::ca_pem) as an extra root; servers use
/// [`server_config`](Self::server_config).
pub struct DevCert {
    /// PEM of the CA certificate: the only thing a client needs.
    ca_pem: String,
    /// PEM of the server certificate followed by the CA certificate (the chain a server
    /// presents), for servers configured from files such as nginx.
    cert_pem: String,
    /// PEM (PKCS#8) of the server's private key. Never printed by `Debug`.
    key_pem: String,
    /// Ready-made server config (built once, so every accept shares it).
    server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for DevCert {
    // The server config holds the private key; print only what is public.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCert")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

impl DevCert {
    /// Generates a new CA and a server certificate signed by it (ECDSA P-256 keys, generated
    /// with ring), and builds the rustls server config.
    ///
    /// The server config uses the ring provider explicitly, so no process-wide default
    /// provider has to be installed, and offers ALPN `http/1.1` only.
    pub fn generate() -> Result<DevCert, DevCertError> {
        Self::generate_for(&[])
    }

    /// [`DevCert::generate`], with `extra_names` (host names or IPs, e.g. a compose service
    /// name) in the server certificate besides `127.0.0.1` and `localhost`.
    pub fn generate_for(extra_names: &[&str]) -> Result<DevCert, DevCertError> {
        let generate = |what| move |source| DevCertError::Generate { what, source };

        // The CA: self-signed, allowed to sign certificates (and nothing else).
        let ca_key = KeyPair::generate().map_err(generate("CA key"))?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("webhook-relay throwaway dev CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca =
            CertifiedIssuer::self_signed(ca_params, ca_key).map_err(generate("CA certificate"))?;

        // The server certificate: a leaf for the loopback names, signed by the CA. Its subject
        // must differ from the CA's or path building may take it for self-issued.
        let server_key = KeyPair::generate().map_err(generate("server key"))?;
        // `CertificateParams::new` makes an IP SAN of what parses as an IP, a DNS SAN otherwise.
        let names: Vec<String> = SERVER_SANS
            .iter()
            .chain(extra_names)
            .map(|n| n.to_string())
            .collect();
        let mut server_params =
            CertificateParams::new(names).map_err(generate("server certificate names"))?;
        server_params.distinguished_name = dn("webhook-relay local listener");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .map_err(generate("server certificate"))?;

        // Present the leaf and the CA, as a real server presents its chain.
        let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone(), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(DevCertError::Tls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(DevCertError::Tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];

        let ca_pem = ca.pem();
        Ok(DevCert {
            cert_pem: format!("{}{ca_pem}", server_cert.pem()),
            key_pem: server_key.serialize_pem(),
            ca_pem,
            server_config: Arc::new(config),
        })
    }

    /// PEM of the CA certificate: what a client adds as an extra trusted root.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// PEM of the server certificate chain: the leaf for `127.0.0.1` and `localhost`, then
    /// the CA. What a server configured from files presents (nginx `ssl_certificate`).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// PEM (PKCS#8) of the server certificate's private key (nginx `ssl_certificate_key`).
    /// Throwaway like everything here; write it only to a private temp dir.
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// The rustls server configuration presenting the server certificate (and the CA, as
    /// its chain), with ALPN `http/1.1`.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server_config)
    }

    /// Writes [`ca_pem`](Self::ca_pem) to `path`, replacing the file if it exists.
    pub fn write_ca_pem(&self, path: impl AsRef<Path>) -> Result<(), DevCertError> {
        let path = path.as_ref();
        std::fs::write(path, self.ca_pem.as_bytes()).map_err(|source| DevCertError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A distinguished name with just a common name.
fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_ca_pem_and_a_server_config() {
        let cert = DevCert::generate().expect("generate");
        assert!(cert.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let config = cert.server_config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn cert_pem_is_the_chain_and_key_pem_its_key() {
        use rustls::pki_types::pem::PemObject;
        let cert = DevCert::generate().expect("generate");
        let chain_pem = cert.cert_pem();
        // The leaf first, the CA last.
        assert!(chain_pem.ends_with(cert.ca_pem()));
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("chain PEM");
        assert_eq!(chain.len(), 2);
        let key_pem = cert.key_pem();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
        let provider = rustls::crypto::ring::default_provider();
        let certified =
            rustls::sign::CertifiedKey::from_der(chain, key, &provider).expect("key loads");
        certified.keys_match().expect("the key is the leaf's");
        assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn two_generations_differ() {
        let a = DevCert::generate().expect("generate a");
        let b = DevCert::generate().expect("generate b");
        assert_ne!(a.ca_pem(), b.ca_pem());
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let cert = DevCert::generate().expect("generate");
        let printed = format!("{cert:?}");
        assert!(!printed.contains("PRIVATE KEY"));
        assert!(!printed.contains("server_config"));
    }

    #[test]
    fn write_ca_pem_writes_the_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        let cert = DevCert::generate().expect("generate");
        cert.write_ca_pem(&path).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), cert.ca_pem());
    }

    #[test]
    fn write_ca_pem_reports_the_path() {
        let cert = DevCert::generate().expect("generate");
        let err = cert
            .write_ca_pem("/nonexistent-dir/ca.pem")
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "dev certificate: writing /nonexistent-dir/ca.pem"
        );
    }
}
