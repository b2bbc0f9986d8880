//! Trust and identity for TLS connections (`amqps://`, `rediss://`): the system's trust store
//! plus the PEM certificates of `SWITCHBOARD_TLS_CA_FILE`, and a client certificate from
//! `SWITCHBOARD_TLS_CERT_FILE` and `SWITCHBOARD_TLS_KEY_FILE`.
//!
//! The files are read and checked when the configuration loads, so a missing or broken file
//! stops the worker at start, and read again at each connection, so a renewed certificate
//! (a Kubernetes Secret updated in place) is used from the next reconnection on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretSlice};

use super::error::SettingError;

/// Where the TLS material is; nothing is read until [`TlsFiles::load`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// The material, read and checked.
pub struct ClientTls {
    /// The PEM text of the CAs trusted besides the system's, as read.
    extra_roots: Option<String>,
    identity: Option<Identity>,
}

/// A client certificate chain and its key, both PEM. The key is wiped when dropped.
struct Identity {
    chain: Vec<u8>,
    key: SecretSlice<u8>,
}

impl TlsFiles {
    /// Reads and checks every file given: readable, PEM, certificates that parse, a key that
    /// fits its certificate.
    pub fn load(&self) -> Result<ClientTls, SettingError> {
        // ring is the one crypto provider built in; rustls picks it up from there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let extra_roots = match &self.ca_file {
            Some(path) => {
                let text = read("tls_ca_file", path)?;
                trusted_roots("tls_ca_file", path, text.as_bytes())?;
                Some(text)
            }
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingError::new(
                    "tls_key_file",
                    "required with SWITCHBOARD_TLS_CERT_FILE (the client certificate's key)",
                ))
            }
            (None, Some(_)) => {
                return Err(SettingError::new(
                    "tls_cert_file",
                    "required with SWITCHBOARD_TLS_KEY_FILE (the key's client certificate)",
                ))
            }
            (Some(cert_path), Some(key_path)) => {
                let chain = read("tls_cert_file", cert_path)?.into_bytes();
                let key = SecretSlice::from(read("tls_key_file", key_path)?.into_bytes());
                check_identity(cert_path, &chain, key_path, key.expose_secret())?;
                Some(Identity { chain, key })
            }
        };
        Ok(ClientTls {
            extra_roots,
            identity,
        })
    }
}

impl ClientTls {
    /// lapin's form: rustls with the system's roots, plus the extra CAs and the identity.
    pub fn amqp(&self) -> lapin::tcp::OwnedTLSConfig {
        lapin::tcp::OwnedTLSConfig {
            identity: self
                .identity
                .as_ref()
                .map(|identity| lapin::tcp::OwnedIdentity::PKCS8 {
                    pem: identity.chain.clone(),
                    key: identity.key.expose_secret().to_vec(),
                }),
            cert_chain: self.extra_roots.clone(),
        }
    }

    /// redis-rs's form. Its `root_cert` replaces the system's roots instead of adding to
    /// them, so with a CA file it gets both: the system's roots written out as PEM, then the
    /// file's certificates.
    pub fn redis(&self) -> Result<redis::TlsCertificates, SettingError> {
        let root_cert = match &self.extra_roots {
            None => None,
            Some(extra) => {
                let mut pem = system_roots_pem()?;
                pem.push_str(extra);
                Some(pem.into_bytes())
            }
        };
        Ok(redis::TlsCertificates {
            client_tls: self
                .identity
                .as_ref()
                .map(|identity| redis::ClientTlsConfig {
                    client_cert: identity.chain.clone(),
                    client_key: identity.key.expose_secret().to_vec(),
                }),
            root_cert,
        })
    }

    /// Whether anything beyond the system's trust store is configured.
    pub fn is_custom(&self) -> bool {
        self.extra_roots.is_some() || self.identity.is_some()
    }
}

/// A TLS failure that needs the operator (a certificate not trusted, not for this host,
/// expired; the server refusing ours), said plainly, with the setting to look at. `None` for
/// anything else (a connection reset, a timeout), which heals by itself.
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return explain(tls);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return explain(tls);
            }
        }
        next = error.source();
    }
    // Some libraries (redis-rs) keep only the text of the TLS error.
    let text = error.to_string();
    if text.contains("invalid peer certificate") {
        return Some(if text.contains("NotValidForName") {
            format!("the server's certificate does not name the host of the URL ({text})")
        } else if text.contains("Expired") {
            format!("the server's certificate has expired ({text})")
        } else {
            format!(
                "the server's certificate is not trusted ({text}): SWITCHBOARD_TLS_CA_FILE must hold the CA that signed it"
            )
        });
    }
    if text.contains("received fatal alert") {
        return Some(format!(
            "the server refused the TLS handshake ({text}): does it want a client certificate (SWITCHBOARD_TLS_CERT_FILE)?"
        ));
    }
    None
}

fn explain(error: &rustls::Error) -> Option<String> {
    use rustls::{AlertDescription as Alert, CertificateError, Error};
    match error {
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => Some(format!(
            "the server's certificate does not name the host of the URL ({error})"
        )),
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            Some(format!("the server's certificate has expired ({error})"))
        }
        Error::InvalidCertificate(_) => Some(format!(
            "the server's certificate is not trusted ({error}): SWITCHBOARD_TLS_CA_FILE must hold the CA that signed it"
        )),
        Error::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::AccessDenied,
        ) => Some(format!(
            "the server refused this worker's client certificate ({error}): check SWITCHBOARD_TLS_CERT_FILE"
        )),
        _ => None,
    }
}

fn read(field: &str, path: &Path) -> Result<String, SettingError> {
    std::fs::read_to_string(path).map_err(|error| {
        SettingError::new(field, format!("cannot read {}: {error}", path.display()))
    })
}

/// The certificates of a CA file, each usable as a trust anchor.
fn trusted_roots(
    field: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, SettingError> {
    let certificates = certificates(field, path, pem)?;
    let mut store = rustls::RootCertStore::empty();
    for (i, certificate) in certificates.iter().enumerate() {
        store.add(certificate.clone()).map_err(|error| {
            SettingError::new(
                field,
                format!(
                    "{}: certificate {} is not a usable CA certificate: {error}",
                    path.display(),
                    i + 1
                ),
            )
        })?;
    }
    Ok(certificates)
}

fn certificates(
    field: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, SettingError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            SettingError::new(field, format!("{}: not PEM: {error}", path.display()))
        })?;
    if certificates.is_empty() {
        return Err(SettingError::new(
            field,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certificates)
}

/// The chain parses, the key parses, and the key is the certificate's.
fn check_identity(
    cert_path: &Path,
    chain: &[u8],
    key_path: &Path,
    key: &[u8],
) -> Result<(), SettingError> {
    let chain = certificates("tls_cert_file", cert_path, chain)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
        SettingError::new(
            "tls_key_file",
            format!(
                "{} holds no private key (unencrypted PKCS#8, PKCS#1 or SEC1 PEM)",
                key_path.display()
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map_err(|error| {
            SettingError::new(
                "tls_key_file",
                format!(
                    "{} does not fit the certificate of {}: {error}",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
    Ok(())
}

/// The system's trusted roots (what rustls-native-certs finds), as PEM text.
fn system_roots_pem() -> Result<String, SettingError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        if let Some(error) = found.errors.first() {
            return Err(SettingError::new(
                "tls_ca_file",
                format!("the system's trust store cannot be read: {error}"),
            ));
        }
    }
    let mut pem = String::new();
    for certificate in found.certs {
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> TlsFiles {
        TlsFiles {
            ca_file: ca.map(Path::to_path_buf),
            cert_file: cert.map(Path::to_path_buf),
            key_file: key.map(Path::to_path_buf),
        }
    }

    #[test]
    fn nothing_configured_means_the_system_trust_store() {
        let tls = TlsFiles::default().load().unwrap();
        assert!(!tls.is_custom());
        assert!(tls.redis().unwrap().root_cert.is_none());
        assert!(tls.amqp().cert_chain.is_none());
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let missing = Path::new("/nonexistent/ca.pem");
        let error = files(Some(missing), None, None).load().err().unwrap();
        assert_eq!(
            error.to_string(),
            "SWITCHBOARD_TLS_CA_FILE: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
        );
        let empty = std::env::temp_dir().join(format!("sb-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = files(Some(&empty), None, None).load().err().unwrap();
        let _ = std::fs::remove_file(&empty);
        assert!(
            error.problem.ends_with("holds no PEM certificate"),
            "{error}"
        );
        let error = files(None, Some(missing), None).load().err().unwrap();
        assert_eq!(error.setting, "SWITCHBOARD_TLS_KEY_FILE");
    }

    #[test]
    fn system_roots_are_written_as_pem_that_parses_back() {
        let pem = system_roots_pem().unwrap();
        let parsed = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(
            parsed.len(),
            rustls_native_certs::load_native_certs().certs.len()
        );
    }
}
