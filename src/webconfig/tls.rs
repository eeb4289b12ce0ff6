//! The server side of TLS: a [`rustls::ServerConfig`] built from a validated
//! `tls_server_config` (certificate chain, key, client certificate policy, versions, suites,
//! groups), and what the served certificate says (validity, names) for `vibe-agent check`
//! and the expiry metric.
//!
//! Reads the PEM files the settings name; owns no state. Reloading is [`super::guard`]'s.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::error::WebConfigError;
use super::file::{ClientAuth, Curve, Pem, TlsSettings, TlsVersion};

/// What the served certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject, e.g. "CN=vibe-1".
    pub subject: String,
    /// Subject alternative names as text ("DNS:host", "IP:10.0.0.1").
    pub names: Vec<String>,
    /// Validity window, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// A server configuration and the certificate it serves.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert: CertInfo,
}

/// The ring provider narrowed to the settings' TLS 1.2 suites and groups.
fn provider(s: &TlsSettings) -> CryptoProvider {
    let mut p = crate::tlsclient::ring_provider();
    if !s.cipher_suites.is_empty() {
        p.cipher_suites.retain(|suite| {
            suite.version() == &rustls::version::TLS13
                || s.cipher_suites
                    .iter()
                    .any(|name| format!("{:?}", suite.suite()) == *name)
        });
    }
    if !s.curves.is_empty() {
        use rustls::crypto::ring::kx_group;
        p.kx_groups = s
            .curves
            .iter()
            .map(|c| match c {
                Curve::X25519 => kx_group::X25519,
                Curve::P256 => kx_group::SECP256R1,
                Curve::P384 => kx_group::SECP384R1,
            })
            .collect();
    }
    p
}

fn key_name(pem: &Pem, file_key: &str, inline_key: &str) -> String {
    match pem {
        Pem::File(_) => format!("tls_server_config.{file_key}"),
        Pem::Inline(_) => format!("tls_server_config.{inline_key}"),
    }
}

/// The bytes of a PEM blob; `what` names it in errors.
fn read(pem: &Pem, web: &std::path::Path, key: &str) -> Result<Vec<u8>, WebConfigError> {
    match pem {
        Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        Pem::File(path) => std::fs::read(path).map_err(|e| WebConfigError::Invalid {
            path: web.to_owned(),
            key: key.to_string(),
            message: format!(
                "cannot read {}: {e}; the agent runs as user vibe-agent: make the file \
                 readable by it (e.g. chgrp vibe-agent and chmod 0640)",
                path.display()
            ),
        }),
    }
}

/// What a DER certificate says.
pub fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            use x509_parser::extensions::GeneralName;
            match n {
                GeneralName::DNSName(d) => names.push(format!("DNS:{d}")),
                GeneralName::IPAddress(ip) => {
                    if let Some(ip) = ip_text(ip) {
                        names.push(format!("IP:{ip}"));
                    }
                }
                GeneralName::RFC822Name(m) => names.push(format!("email:{m}")),
                GeneralName::URI(u) => names.push(format!("URI:{u}")),
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(raw).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?).to_string()),
        _ => None,
    }
}

/// Builds the server configuration; `web` is the web config file, for messages.
pub fn server_config(s: &TlsSettings, web: &std::path::Path) -> Result<ServerTls, WebConfigError> {
    let invalid = |key: String, message: String| WebConfigError::Invalid {
        path: web.to_owned(),
        key,
        message,
    };
    let cert_key = key_name(&s.cert, "cert_file", "cert");
    let key_key = key_name(&s.key, "key_file", "key");
    let certs = crate::tlsclient::pem_certs(&read(&s.cert, web, &cert_key)?)
        .map_err(|e| invalid(cert_key.clone(), e))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&s.key, web, &key_key)?).map_err(|e| {
        invalid(
            key_key.clone(),
            format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let info = cert_info(&certs[0]).map_err(|e| invalid(cert_key.clone(), e))?;
    let provider = Arc::new(provider(s));
    let certified = rustls::sign::CertifiedKey::from_der(certs, key, &provider).map_err(|e| {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => {
                "the key does not match the certificate's public key; give the key the \
                 certificate was issued for"
                    .to_string()
            }
            other => format!("unusable key: {other}"),
        };
        invalid(key_key.clone(), message)
    })?;

    let verifier: Arc<dyn ClientCertVerifier> = match s.client_auth {
        ClientAuth::NoClientCert => Arc::new(NoClientAuth),
        ClientAuth::RequestClientCert => Arc::new(AnyClientCert {
            provider: provider.clone(),
            mandatory: false,
        }),
        ClientAuth::RequireAnyClientCert => Arc::new(AnyClientCert {
            provider: provider.clone(),
            mandatory: true,
        }),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let ca = s
                .client_ca
                .as_ref()
                .expect("validated: a verifying policy has a CA");
            let ca_key = key_name(ca, "client_ca_file", "client_ca");
            let mut roots = rustls::RootCertStore::empty();
            for c in crate::tlsclient::pem_certs(&read(ca, web, &ca_key)?)
                .map_err(|e| invalid(ca_key.clone(), e))?
            {
                roots.add(c).map_err(|e| {
                    invalid(ca_key.clone(), format!("not a usable CA certificate: {e}"))
                })?;
            }
            let mut b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if s.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b = b.allow_unauthenticated();
            }
            b.build().map_err(|e| {
                invalid(
                    ca_key.clone(),
                    format!("cannot verify clients with it: {e}"),
                )
            })?
        }
    };
    let verifier: Arc<dyn ClientCertVerifier> = if s.client_allowed_sans.is_empty() {
        verifier
    } else {
        Arc::new(AllowedSans {
            inner: verifier,
            allowed: s.client_allowed_sans.clone(),
        })
    };

    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (s.min_version..=s.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            invalid(
                "tls_server_config.cipher_suites".into(),
                format!("no cipher suite left for the TLS versions allowed: {e}"),
            )
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.ignore_client_order = s.prefer_server_cipher_suites;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        cert: info,
    })
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate is taken (as Go does),
/// but the handshake signature is still checked, so the client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: the inner policy, then one of the client certificate's SANs must
/// be listed (compared as text, as the toolkit does).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let info = cert_info(end_entity).map_err(rustls::Error::General)?;
        let found = info.names.iter().any(|n| {
            let value = n.split_once(':').map_or(n.as_str(), |(_, v)| v);
            self.allowed.iter().any(|a| a == value)
        });
        if found {
            Ok(ok)
        } else {
            Err(rustls::Error::General(
                "the client certificate has none of client_allowed_sans".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
