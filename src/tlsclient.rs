//! Outbound TLS for health probes and forwarding, and the crypto provider every TLS
//! connection of the agent uses (a leaf: it imports nothing of the crate's): a rustls client configuration (ring)
//! that trusts the system's CA certificates, or only the ones of a `ca_file`, or (with
//! `insecure_skip_verify`) any certificate, and the reqwest client builder that uses it.
//!
//! Reads the CA file it is given (and /etc/ssl/certs once); owns no other state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

/// How an outbound connection checks the server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientTls {
    /// PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (the connection is still encrypted).
    pub insecure_skip_verify: bool,
}

impl ClientTls {
    /// True when nothing differs from the system's defaults.
    pub fn is_default(&self) -> bool {
        self.ca_file.is_none() && !self.insecure_skip_verify
    }

    /// Whether the setting can be used (for the config file's validation): not both keys,
    /// and a CA file that reads as PEM certificates.
    pub fn check(&self) -> Result<(), String> {
        if self.ca_file.is_some() && self.insecure_skip_verify {
            return Err("give ca_file or insecure_skip_verify = true, not both".into());
        }
        match &self.ca_file {
            Some(f) => read_ca_file(f).map(|_| ()),
            None => Ok(()),
        }
    }
}

fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no CA certificates found in the system's store; https to public hosts will fail (install ca-certificates or set ca_file)");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Every certificate in a PEM blob (at least one).
pub fn pem_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// The CA certificates of a PEM file, as a root store.
pub fn read_ca_file(path: &Path) -> Result<rustls::RootCertStore, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    let certs = pem_certs(&bytes).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| {
            format!(
                "ca_file {}: not a usable CA certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// Makes ring the process's rustls provider (once; later calls do nothing). reqwest is
/// built without a provider of its own, so any client built without
/// [`reqwest_builder`] needs this first.
pub fn install_default_provider() {
    let _ = ring_provider().install_default();
}

/// rustls over *ring*, the agent's one crypto provider (inbound and outbound). rustls
/// 0.23.48 marks it deprecated because *ring* has no post-quantum key exchange; its
/// alternative, aws-lc-rs, needs cmake and a C build of AWS-LC, while *ring* builds with
/// the C compiler alone. X25519 and the NIST curves are what scrapers and exporters use.
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider())
}

/// The rustls client configuration for `tls`.
pub fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &tls.ca_file {
            Some(path) => Arc::new(read_ca_file(path)?),
            None => system_roots(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest builder whose https uses `tls`.
pub fn reqwest_builder(tls: &ClientTls) -> Result<reqwest::ClientBuilder, String> {
    install_default_provider();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config(tls)?))
}

/// `insecure_skip_verify`: any certificate for any name, but the handshake signature is
/// still checked against the certificate's key.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
