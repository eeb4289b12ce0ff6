//! The web config file as written: Prometheus' exporter-toolkit format (the file
//! node_exporter reads with `--web.config.file`), its serde mirror and its validation into
//! [`WebConfig`]. Pure: text in, typed values out; the certificate and key files it names
//! are read by [`super::tls`].
//!
//! Every key the toolkit defines is known here. The ones the agent cannot honour
//! (`rate_limit`, TLS 1.0/1.1, `CurveP521`, ciphers rustls does not implement) are refused
//! with the key named, never silently ignored; an unknown key is refused by serde.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::WebConfigError;

/// `tls_server_config` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// Server certificate (PEM chain), inline.
    pub cert: Option<String>,
    /// Server key (PEM), inline.
    pub key: Option<String>,
    /// CA certificates for client certificates (PEM), inline.
    pub client_ca: Option<String>,
    /// Server certificate chain file (PEM); relative to the web config file's directory.
    pub cert_file: Option<String>,
    /// Server key file (PEM).
    pub key_file: Option<String>,
    /// NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven,
    /// RequireAndVerifyClientCert.
    pub client_auth_type: Option<String>,
    /// CA certificates that sign accepted client certificates (PEM).
    pub client_ca_file: Option<String>,
    /// TLS 1.2 cipher suites, by Go name (TLS 1.3 suites are not configurable, as in Go).
    pub cipher_suites: Option<Vec<String>>,
    /// Key exchange groups: X25519, CurveP256, CurveP384.
    pub curve_preferences: Option<Vec<String>>,
    /// TLS12 or TLS13 (default TLS12).
    pub min_version: Option<String>,
    /// TLS12 or TLS13 (default TLS13).
    pub max_version: Option<String>,
    /// Whether the server's cipher order wins (rustls: the server's order unless false).
    pub prefer_server_cipher_suites: Option<bool>,
    /// A client certificate must carry one of these SANs (DNS, e-mail, IP or URI).
    pub client_allowed_sans: Option<Vec<String>>,
}

/// `http_server_config` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    /// Go's servers offer HTTP/2 over TLS; the agent answers HTTP/1.1, which every
    /// scraper speaks, so both values are accepted.
    pub http2: Option<bool>,
    /// Response headers, limited to the toolkit's security headers.
    pub headers: Option<BTreeMap<String, String>>,
}

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebConfig {
    pub tls_server_config: Option<FileTls>,
    pub http_server_config: Option<FileHttp>,
    /// Requests-per-interval limiter of newer toolkits: not implemented by the agent.
    pub rate_limit: Option<serde_yaml_ng::Value>,
    /// User name → bcrypt hash.
    pub basic_auth_users: Option<BTreeMap<String, String>>,
}

/// Where a PEM blob comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

/// TLS protocol versions rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// How client certificates are asked for and checked (the toolkit's `client_auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified against a CA.
    RequireAnyClientCert,
    /// Verified against `client_ca_file` when given.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// Key exchange groups rustls (ring) implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    X25519,
    P256,
    P384,
}

/// Validated `tls_server_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    /// TLS 1.2 suites by their IANA/Go name; empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    pub curves: Vec<Curve>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    pub prefer_server_cipher_suites: bool,
    pub client_allowed_sans: Vec<String>,
}

/// A validated web config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `None`: plain HTTP (basic auth and headers may still apply).
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Extra response headers (names as written).
    pub headers: Vec<(String, String)>,
}

/// Headers the toolkit lets a file set, with the values allowed (empty: any).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// TLS 1.2 suites rustls implements, by the names Go (and so the toolkit) uses.
pub const TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Go's older spellings of the ChaCha20 suites.
fn canonical_suite(name: &str) -> &str {
    match name {
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        other => other,
    }
}

/// Parses and validates the file's text. `dir` is the file's directory: relative paths in
/// it are taken from there, as the toolkit does.
pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
    let invalid = |key: &str, message: String| WebConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_string(),
        message,
    };
    // An empty file is a valid "nothing enabled" file for the toolkit too.
    let file: FileWebConfig = if text.trim().is_empty() {
        FileWebConfig::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| WebConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?
    };
    if file.rate_limit.is_some() {
        return Err(invalid(
            "rate_limit",
            "is not supported by vibe-agent; remove it (failed logins are counted in \
             vibe_agent_web_auth_failures_total and password checks are bounded)"
                .into(),
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_path = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            dir.join(p)
        }
    };

    let mut users = BTreeMap::new();
    for (user, hash) in file.basic_auth_users.unwrap_or_default() {
        if let Err(e) = hash.parse::<bcrypt::HashParts>() {
            return Err(invalid(
                &format!("basic_auth_users.{user}"),
                format!(
                    "not a bcrypt hash ({e}); write the output of `htpasswd -nBC 10 \"\" | tr -d ':\\n'` \
                     or Python's bcrypt.hashpw"
                ),
            ));
        }
        if user.contains(':') {
            return Err(invalid(
                &format!("basic_auth_users.{user}"),
                "a user name cannot contain ':' (HTTP basic auth splits on it)".into(),
            ));
        }
        users.insert(user, hash);
    }

    let http = file.http_server_config.unwrap_or_default();
    let mut headers = Vec::new();
    for (name, value) in http.headers.unwrap_or_default() {
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            return Err(invalid(
                &format!("http_server_config.headers.{name}"),
                format!(
                    "this header cannot be configured; the allowed ones are {}",
                    ALLOWED_HEADERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(invalid(
                &format!("http_server_config.headers.{name}"),
                format!("\"{value}\": write one of {allowed:?}"),
            ));
        }
        if axum::http::HeaderValue::from_str(&value).is_err() {
            return Err(invalid(
                &format!("http_server_config.headers.{name}"),
                "the value has characters a header cannot carry".into(),
            ));
        }
        headers.push((name, value));
    }

    let tls = match file.tls_server_config {
        None => None,
        Some(t) if is_empty(&t) => None,
        Some(t) => Some(tls_settings(t, &invalid, &file_path)?),
    };
    Ok(WebConfig {
        tls,
        users,
        headers,
    })
}

/// The toolkit serves plain HTTP when no TLS key is set at all.
fn is_empty(t: &FileTls) -> bool {
    t.cert.is_none()
        && t.key.is_none()
        && t.cert_file.as_deref().unwrap_or("").is_empty()
        && t.key_file.as_deref().unwrap_or("").is_empty()
        && t.client_ca_file.as_deref().unwrap_or("").is_empty()
        && t.client_ca.is_none()
        && t.client_auth_type.as_deref().unwrap_or("").is_empty()
}

fn tls_settings(
    t: FileTls,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
    file_path: &dyn Fn(&str) -> PathBuf,
) -> Result<TlsSettings, WebConfigError> {
    let key_name = |k: &str| format!("tls_server_config.{k}");
    let pem = |file: Option<String>, inline: Option<String>, fkey: &str, ikey: &str| match (
        file.filter(|f| !f.is_empty()),
        inline.filter(|i| !i.is_empty()),
    ) {
        (Some(f), None) => Ok(Some(Pem::File(file_path(&f)))),
        (None, Some(i)) => Ok(Some(Pem::Inline(i))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid(
            &key_name(fkey),
            format!("give {fkey} or {ikey}, not both"),
        )),
    };
    let cert = pem(t.cert_file, t.cert, "cert_file", "cert")?.ok_or_else(|| {
        invalid(
            &key_name("cert_file"),
            "TLS is configured but no certificate is given; write cert_file (PEM)".into(),
        )
    })?;
    let key = pem(t.key_file, t.key, "key_file", "key")?.ok_or_else(|| {
        invalid(
            &key_name("key_file"),
            "TLS is configured but no key is given; write key_file (PEM)".into(),
        )
    })?;
    let client_ca = pem(t.client_ca_file, t.client_ca, "client_ca_file", "client_ca")?;
    let client_auth = match t.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(invalid(
                &key_name("client_auth_type"),
                format!(
                    "\"{other}\": write NoClientCert, RequestClientCert, RequireAnyClientCert, \
                     VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let verifies = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(invalid(
            &key_name("client_ca_file"),
            "a client CA is given without a client_auth_type; write \
             client_auth_type: RequireAndVerifyClientCert"
                .into(),
        ));
    }
    if verifies && client_ca.is_none() {
        return Err(invalid(
            &key_name("client_ca_file"),
            format!(
                "client_auth_type {client_auth:?} verifies client certificates: give the CA that signs them"
            ),
        ));
    }
    let version = |k: &str, v: Option<String>, default: TlsVersion| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => Err(invalid(
            &key_name(k),
            format!("{old} is not supported (rustls speaks TLS 1.2 and 1.3); write TLS12 or TLS13"),
        )),
        Some(other) => Err(invalid(
            &key_name(k),
            format!("\"{other}\": write TLS12 or TLS13"),
        )),
    };
    let min_version = version("min_version", t.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", t.max_version, TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err(invalid(
            &key_name("min_version"),
            "is above max_version".into(),
        ));
    }
    let mut cipher_suites = Vec::new();
    for s in t.cipher_suites.unwrap_or_default() {
        let c = canonical_suite(&s);
        if !TLS12_SUITES.contains(&c) {
            return Err(invalid(
                &key_name("cipher_suites"),
                format!(
                    "\"{s}\" is not supported by rustls; write some of {}",
                    TLS12_SUITES.join(", ")
                ),
            ));
        }
        cipher_suites.push(c.to_string());
    }
    let mut curves = Vec::new();
    for c in t.curve_preferences.unwrap_or_default() {
        curves.push(match c.as_str() {
            "X25519" => Curve::X25519,
            "CurveP256" => Curve::P256,
            "CurveP384" => Curve::P384,
            other => {
                return Err(invalid(
                    &key_name("curve_preferences"),
                    format!("\"{other}\" is not supported; write X25519, CurveP256 or CurveP384"),
                ));
            }
        });
    }
    let client_allowed_sans = t.client_allowed_sans.unwrap_or_default();
    if !client_allowed_sans.is_empty()
        && !matches!(
            client_auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    {
        return Err(invalid(
            &key_name("client_allowed_sans"),
            "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert".into(),
        ));
    }
    Ok(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        cipher_suites,
        curves,
        min_version,
        max_version,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
        client_allowed_sans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$wIh8qC9tRj4ZkpPDfkB8Ye5FxJYE7nmcKKk8XJTNGxIoS2vk2X8/y";

    fn parse_at(text: &str) -> Result<WebConfig, WebConfigError> {
        parse(text, Path::new("/etc/vibe-agent/web.yml"))
    }

    #[test]
    fn node_exporter_style_file_is_accepted() {
        let text = format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /etc/k.pem\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             min_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\n  \
             client_allowed_sans: [scraper.example]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{HASH}'\n"
        );
        let c = parse_at(&text).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, Pem::File("/etc/vibe-agent/tls/server.crt".into()));
        assert_eq!(tls.key, Pem::File("/etc/k.pem".into()));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.curves, [Curve::X25519, Curve::P256]);
        assert_eq!(c.users["prometheus"], HASH);
        assert_eq!(c.headers, [("X-Frame-Options".into(), "deny".into())]);
    }

    #[test]
    fn empty_or_auth_only_files_mean_plain_http() {
        assert_eq!(parse_at("").unwrap().tls, None);
        assert_eq!(parse_at("tls_server_config: {}\n").unwrap().tls, None);
        let c = parse_at(&format!("basic_auth_users:\n  u: '{HASH}'\n")).unwrap();
        assert!(c.tls.is_none());
        assert_eq!(c.users.len(), 1);
    }

    /// Each refused file names its key.
    #[test]
    fn unknown_and_unsupported_keys_are_refused_by_name() {
        let cases: &[(&str, &[&str])] = &[
            (
                "tls_server_config:\n  cert_fil: x\n",
                &["cert_fil", "line 2"],
            ),
            ("tls_config:\n  cert_file: x\n", &["tls_config"]),
            (
                "rate_limit:\n  burst: 1\n  interval: 1s\n",
                &["rate_limit", "not supported"],
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n",
                &["tls_server_config.min_version", "TLS10"],
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  curve_preferences: [CurveP521]\n",
                &["curve_preferences", "CurveP521"],
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
                &["cipher_suites", "TLS_RSA_WITH_AES_128_CBC_SHA"],
            ),
            ("tls_server_config:\n  cert_file: c\n", &["key_file"]),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Maybe\n",
                &["client_auth_type", "Maybe"],
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
                &["client_ca_file", "client_auth_type"],
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n",
                &["client_ca_file"],
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_allowed_sans: [a]\n",
                &["client_allowed_sans"],
            ),
            (
                "basic_auth_users:\n  u: plain\n",
                &["basic_auth_users.u", "bcrypt"],
            ),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                &["http_server_config.headers.Server"],
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                &["X-Frame-Options", "allow"],
            ),
        ];
        for (text, wanted) in cases {
            let err = parse_at(text).expect_err(text).to_string();
            assert!(err.contains("/etc/vibe-agent/web.yml"), "{err}");
            for w in *wanted {
                assert!(err.contains(w), "error for {text:?} lacks {w:?}: {err}");
            }
        }
    }
}
