//! How to reach PostgreSQL: a libpq connection URL, read into tokio-postgres's
//! configuration and a TLS setting. libpq's `sslmode` values `verify-ca` and
//! `verify-full` and its `sslrootcert` are read here (tokio-postgres knows only
//! `disable`, `prefer` and `require`); every other option goes to tokio-postgres as is.
//!
//! ```text
//! postgresql:///postern?host=/run/postgresql                  Unix socket directory
//! postgresql://postern:secret@db1.example.org/postern?sslmode=require
//! postgresql://postern@db1/postern?sslmode=verify-full&sslrootcert=/etc/postern/ca.pem
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::store::StoreError;

/// How long a new connection may take before the call fails as temporary.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the operator configured: `[database] url`, `password_file`, `pool_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub pool_size: usize,
}

/// libpq's `sslmode`, as far as postern follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS always, the certificate not checked (checked against `sslrootcert` when given,
    /// as libpq does).
    Require,
    /// TLS, the certificate signed by `sslrootcert`; any host name.
    VerifyCa,
    /// TLS, the certificate signed by `sslrootcert` and naming the host.
    VerifyFull,
}

/// A URL read into what the pool needs.
pub struct Parsed {
    pub config: tokio_postgres::Config,
    pub tls: ClientConfig,
    pub ssl: SslMode,
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::Options(message.into())
}

impl PgOptions {
    /// Reads the URL and the password file and builds the TLS setup. The error names
    /// what is wrong and never repeats a password.
    pub fn parse(&self) -> Result<Parsed, StoreError> {
        let (base, query) = match self.url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (self.url.as_str(), ""),
        };
        let mut ssl = SslMode::Prefer;
        let mut root: Option<PathBuf> = None;
        let mut rest: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    ssl = match value {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(bad(format!(
                                "sslmode `{other}` is not one of disable, prefer, require, \
                                 verify-ca, verify-full"
                            )))
                        }
                    }
                }
                "sslrootcert" => root = Some(PathBuf::from(percent_decode(value)?)),
                _ => rest.push(pair),
            }
        }
        let forwarded = if rest.is_empty() {
            base.to_owned()
        } else {
            let mut s = String::from(base);
            s.push('?');
            s.push_str(&rest.join("&"));
            s
        };
        if !(forwarded.starts_with("postgresql://") || forwarded.starts_with("postgres://")) {
            return Err(bad("the URL must start with postgresql://"));
        }
        let mut config = tokio_postgres::Config::from_str(&forwarded)
            .map_err(|e| bad(format!("the URL is not a PostgreSQL connection URL: {e}")))?;
        if config.get_dbname().is_none() {
            return Err(bad(
                "the URL names no database (postgresql://HOST/DATABASE or postgresql:///DATABASE?host=/run/postgresql)",
            ));
        }
        if config.get_hosts().is_empty() {
            // libpq's default: the Unix socket directory Debian's server uses.
            config.host_path("/run/postgresql");
        }
        if config.get_user().is_none() {
            let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .ok_or_else(|| bad("the URL names no user and the process user has no name"))?;
            config.user(&user);
        }
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| bad(format!("password_file {}: {e}", file.display())))?;
            config.password(text.trim_end_matches(['\n', '\r']));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.ssl_mode(match ssl {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if matches!(ssl, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
            return Err(bad(
                "sslmode verify-ca and verify-full need sslrootcert=CA-FILE",
            ));
        }
        let tls = tls_config(ssl, root.as_deref())?;
        Ok(Parsed { config, tls, ssl })
    }
}

/// `%2F` and friends in a query value (what libpq accepts in a URL).
fn percent_decode(s: &str) -> Result<String, StoreError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("a bad %-escape in the URL"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("the URL is not UTF-8 after %-decoding"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(ssl: SslMode, root: Option<&Path>) -> Result<ClientConfig, StoreError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?;
    let Some(root) = root else {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
            .with_no_client_auth());
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(root)
        .map_err(|e| bad(format!("sslrootcert {}: {e}", root.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("sslrootcert {}: {e}", root.display())))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("sslrootcert {}: {e}", root.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "sslrootcert {}: no certificate in the file",
            root.display()
        )));
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| bad(format!("sslrootcert {}: {e}", root.display())))?;
    if ssl == SslMode::VerifyFull {
        Ok(builder.with_webpki_verifier(webpki).with_no_client_auth())
    } else {
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
            .with_no_client_auth())
    }
}

/// `sslmode=require` without a CA: the connection is encrypted, the server not checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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

/// `verify-ca`: the chain must lead to the CA; the name in the certificate may differ.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Parsed, StoreError> {
        PgOptions {
            url: url.into(),
            password_file: None,
            pool_size: 4,
        }
        .parse()
    }

    #[test]
    fn unix_socket_directory_in_the_query() {
        let p = parse("postgresql:///postern?host=/run/postgresql&user=mail").expect("parses");
        assert_eq!(p.config.get_dbname(), Some("postern"));
        assert_eq!(p.config.get_user(), Some("mail"));
        assert_eq!(
            p.config.get_hosts(),
            &[tokio_postgres::config::Host::Unix("/run/postgresql".into())]
        );
        assert_eq!(p.ssl, SslMode::Prefer);
    }

    #[test]
    fn sslmode_verify_full_needs_a_root_certificate_and_unknown_modes_are_named() {
        let e = parse("postgresql://u@db/postern?sslmode=verify-full").err();
        assert!(e.is_some_and(|e| e.to_string().contains("sslrootcert")));
        let e = parse("postgresql://u@db/postern?sslmode=bogus").err();
        assert!(e.is_some_and(|e| e.to_string().contains("`bogus`")));
        let p = parse("postgresql://u:pw@db:5433/postern?sslmode=require").expect("parses");
        assert_eq!(p.ssl, SslMode::Require);
        assert_eq!(p.config.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn a_url_without_database_or_with_another_scheme_is_refused() {
        assert!(parse("postgresql://u@db").is_err());
        assert!(parse("mysql://u@db/postern").is_err());
    }

    #[test]
    fn the_password_file_wins_and_loses_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        let p = PgOptions {
            url: "postgresql://u@db/postern".into(),
            password_file: Some(file),
            pool_size: 4,
        }
        .parse()
        .expect("parses");
        assert_eq!(p.config.get_password(), Some(&b"s3cret"[..]));
    }
}
