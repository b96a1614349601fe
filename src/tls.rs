//! The HTTPS certificate: the operator's, or a self-signed one generated on first start.
//!
//! A generated certificate lives in `<data_dir>/tls/cert.pem` and `key.pem` (mode 0600) and is
//! reused across restarts, so browsers and agents that pinned it keep working. It names localhost,
//! 127.0.0.1, ::1 and the machine's hostname, and is regenerated when fewer than 30 days remain.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::config::TlsConfig;

/// Generated certificates are valid this long. Long enough that an air-gapped box is not
/// locked out by a forgotten renewal; we renew on start well before the end anyway.
const SELF_SIGNED_VALIDITY: Duration = Duration::days(825);
/// Regenerate a self-signed certificate with less than this left.
const RENEW_BEFORE: Duration = Duration::days(30);

/// Where the certificate in use comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// True for the generated certificate, which we may renew.
    pub self_signed: bool,
}

impl CertificateFiles {
    pub fn resolve(config: &TlsConfig, data_dir: &Path) -> CertificateFiles {
        if config.cert_file.is_empty() {
            let dir = data_dir.join("tls");
            CertificateFiles {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
                self_signed: true,
            }
        } else {
            CertificateFiles {
                cert: PathBuf::from(&config.cert_file),
                key: PathBuf::from(&config.key_file),
                self_signed: false,
            }
        }
    }
}

/// Makes sure a usable certificate exists (generating the self-signed one when needed) and
/// builds the rustls server configuration from it.
pub fn server_config(
    files: &CertificateFiles,
    now: OffsetDateTime,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    if files.self_signed {
        ensure_self_signed(files, now)?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", files.cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a private key from {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the certificate {} and key {} do not form a usable pair",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// When the first certificate in `cert` expires.
pub fn expiry(cert: &Path) -> anyhow::Result<OffsetDateTime> {
    let der = CertificateDer::from_pem_file(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|error| {
        anyhow::anyhow!(
            "{} is not a valid X.509 certificate: {error}",
            cert.display()
        )
    })?;
    Ok(parsed.validity().not_after.to_datetime())
}

fn ensure_self_signed(files: &CertificateFiles, now: OffsetDateTime) -> anyhow::Result<()> {
    match (files.cert.exists(), files.key.exists()) {
        (true, true) => {
            let not_after = expiry(&files.cert)?;
            if not_after - now > RENEW_BEFORE {
                return Ok(());
            }
            tracing::warn!(cert = %files.cert.display(), %not_after, "the self-signed certificate is about to expire; generating a new one");
        }
        (false, false) => {}
        // The key is written first: a start killed between the two writes leaves the key alone.
        // Finish that generation with the same key.
        (false, true) => {
            let pem = std::fs::read_to_string(&files.key)
                .with_context(|| format!("cannot read {}", files.key.display()))?;
            let key_pair = rcgen::KeyPair::from_pem(&pem).with_context(|| {
                format!(
                    "{} is not a private key, and {} is missing; remove both to generate a new self-signed certificate",
                    files.key.display(),
                    files.cert.display()
                )
            })?;
            tracing::warn!(key = %files.key.display(), "the self-signed certificate's key has no certificate (an interrupted start); certifying it now");
            return certify(files, &key_pair, now);
        }
        (true, false) => bail!(
            "{} exists but {} does not; restore it, or remove both to generate a new self-signed certificate",
            files.cert.display(),
            files.key.display()
        ),
    }
    generate_self_signed(files, now)
}

fn generate_self_signed(files: &CertificateFiles, now: OffsetDateTime) -> anyhow::Result<()> {
    let key_pair = rcgen::KeyPair::generate().context("generating the TLS key")?;
    let dir = files.cert.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    // Key first: a start killed between the two writes leaves a key without a certificate, which
    // the next start certifies (see `ensure_self_signed`).
    write_atomically(&files.key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    certify(files, &key_pair, now)
}

/// Writes a self-signed certificate for `key_pair` and the appliance's names.
fn certify(
    files: &CertificateFiles,
    key_pair: &rcgen::KeyPair,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !hostname.is_empty() && hostname != "localhost" {
        names.push(hostname.clone());
    }
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("OpenFrame Appliance ({hostname})"),
    );
    params.not_before = now - Duration::days(1);
    params.not_after = now + SELF_SIGNED_VALIDITY;
    let certificate = params
        .self_signed(key_pair)
        .context("self-signing the certificate")?;
    write_atomically(&files.cert, certificate.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %files.cert.display(), "generated a self-signed TLS certificate");
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place, so a
/// crash leaves either the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> CertificateFiles {
        CertificateFiles::resolve(&TlsConfig::default(), dir)
    }

    #[test]
    fn a_self_signed_certificate_is_generated_once_and_reused() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = files(dir.path());
        let now = OffsetDateTime::now_utc();
        server_config(&files, now).unwrap();
        let first = std::fs::read(&files.cert).unwrap();
        let key_mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        server_config(&files, now).unwrap();
        assert_eq!(
            std::fs::read(&files.cert).unwrap(),
            first,
            "restarts reuse the certificate"
        );

        let der = CertificateDer::from_pem_file(&files.cert).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let names = &parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        use x509_parser::extensions::GeneralName;
        assert!(
            names.contains(&GeneralName::DNSName("localhost")),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])),
            "{names:?}"
        );
        let ipv6_loopback = std::net::Ipv6Addr::LOCALHOST.octets();
        assert!(
            names.contains(&GeneralName::IPAddress(&ipv6_loopback)),
            "{names:?}"
        );
        let days_left = (expiry(&files.cert).unwrap() - now).whole_days();
        assert!((820..=825).contains(&days_left), "{days_left}");
    }

    #[test]
    fn a_certificate_near_expiry_is_renewed() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = files(dir.path());
        let long_ago = OffsetDateTime::now_utc() - Duration::days(820);
        server_config(&files, long_ago).unwrap();
        let old = std::fs::read(&files.cert).unwrap();
        server_config(&files, OffsetDateTime::now_utc()).unwrap();
        assert_ne!(std::fs::read(&files.cert).unwrap(), old);
    }

    #[test]
    fn a_lone_certificate_without_its_key_is_an_error_not_a_silent_regeneration() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = files(dir.path());
        server_config(&files, OffsetDateTime::now_utc()).unwrap();
        std::fs::remove_file(&files.key).unwrap();
        let error = server_config(&files, OffsetDateTime::now_utc())
            .unwrap_err()
            .to_string();
        assert!(error.contains("key.pem does not"), "{error}");
    }

    #[test]
    fn a_key_left_alone_by_an_interrupted_start_gets_its_certificate() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = files(dir.path());
        server_config(&files, OffsetDateTime::now_utc()).unwrap();
        // A start killed between writing the key and the certificate.
        std::fs::remove_file(&files.cert).unwrap();
        let key = std::fs::read_to_string(&files.key).unwrap();
        server_config(&files, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&files.key).unwrap(),
            key,
            "the key is kept"
        );
        let der = CertificateDer::from_pem_file(&files.cert).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let pair = rcgen::KeyPair::from_pem(&key).unwrap();
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            pair.public_key_raw(),
            "certified for that key"
        );

        std::fs::remove_file(&files.cert).unwrap();
        std::fs::write(&files.key, "not a key").unwrap();
        let error = server_config(&files, OffsetDateTime::now_utc())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("key.pem is not a private key") && error.contains("remove both"),
            "{error}"
        );
    }

    #[test]
    fn operator_files_that_are_not_pem_are_named_in_the_error() {
        let dir = tempfile::TempDir::new().unwrap();
        let cert = dir.path().join("mine.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let files = CertificateFiles {
            cert: cert.clone(),
            key: dir.path().join("mine.key"),
            self_signed: false,
        };
        let error = format!(
            "{:#}",
            server_config(&files, OffsetDateTime::now_utc()).unwrap_err()
        );
        assert!(error.contains("mine.pem"), "{error}");
    }
}
