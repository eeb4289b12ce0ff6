//! Throwaway certificate authorities for the TLS tests, made with the `openssl` command
//! (Debian's `openssl`, which scripts/test installs): a CA, server certificates for
//! 127.0.0.1 and localhost, client certificates, and the rustls client configurations
//! that trust them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run openssl ({e}): install Debian's `openssl` (`bash scripts/test` does)"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority in a directory of its own.
pub struct Ca {
    pub dir: PathBuf,
    pub name: String,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA under `dir/name/` (P-256 keys, valid two days).
    pub fn new(dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Self {
            dir,
            name: name.to_string(),
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `file.crt`/`file.key` for `cn` with the given extensions, valid `days` days
    /// from now ("-1": it expired a day before it was made).
    fn issue(&self, file: &str, cn: &str, ext: &str, days: &str) -> Issued {
        std::fs::write(self.dir.join(format!("{file}.ext")), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{file}.crt"),
                "-days",
                days,
                "-extfile",
                &format!("{file}.ext"),
            ],
        );
        Issued {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, file: &str, cn: &str) -> Issued {
        self.issue(
            file,
            cn,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
            "2",
        )
    }

    /// A server certificate that has expired.
    pub fn expired_server(&self, file: &str, cn: &str) -> Issued {
        self.issue(
            file,
            cn,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
            "-1",
        )
    }

    /// A client certificate with SAN `DNS:<cn>`.
    pub fn client(&self, file: &str, cn: &str) -> Issued {
        self.issue(
            file,
            cn,
            &format!(
                "subjectAltName=DNS:{cn}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            ),
            "2",
        )
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A rustls client configuration trusting `ca` (and presenting `identity` when given).
pub fn client_config(ca: &Path, identity: Option<&Issued>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        vibe_agent::tlsclient::ring_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                certs(&id.cert),
                PrivateKeyDer::from_pem_file(&id.key).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A reqwest client over `config`, with a generous timeout and no proxy.
pub fn https_client(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("reqwest client over rustls")
}

/// The subject (e.g. "CN=vibe-1") of the certificate a TLS server at `addr` presents now.
pub async fn served_subject(addr: std::net::SocketAddr, ca: &Path) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, None)));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no peer certificate")?[0]
        .clone();
    let info = vibe_agent::webconfig::tls::cert_info(&der)?;
    Ok(info.subject)
}
