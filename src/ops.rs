//! Operator commands that inspect rather than serve: `doctor` and `healthcheck`.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::tls::CertificateFiles;

/// The outcome of one doctor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub check: &'static str,
    pub detail: String,
}

fn finding(verdict: Verdict, check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        verdict,
        check,
        detail: detail.into(),
    }
}

/// Checks what `serve` will need: the data dir, disk space, nats-server, the certificate.
pub fn doctor(config: &Config, now: time::OffsetDateTime) -> Vec<Finding> {
    let data_dir = &config.storage.data_dir;
    let mut findings = vec![
        check_data_dir(data_dir),
        check_free_space(data_dir),
        check_nats_server(&config.nats),
    ];
    findings.push(check_certificate(
        &CertificateFiles::resolve(&config.tls, data_dir),
        now,
    ));
    findings.push(match crate::datadir::lock_holder(data_dir) {
        Some(pid) => finding(
            Verdict::Ok,
            "serve",
            format!("running on this data dir (pid {pid})"),
        ),
        None => finding(Verdict::Ok, "serve", "not running on this data dir"),
    });
    findings
}

fn check_data_dir(data_dir: &Path) -> Finding {
    if !data_dir.exists() {
        return finding(
            Verdict::Ok,
            "data dir",
            format!(
                "{} does not exist yet; serve creates it",
                data_dir.display()
            ),
        );
    }
    if !data_dir.is_dir() {
        return finding(
            Verdict::Fail,
            "data dir",
            format!("{} is not a directory", data_dir.display()),
        );
    }
    let probe = data_dir.join(".doctor-probe");
    if let Err(error) = std::fs::write(&probe, b"probe") {
        return finding(
            Verdict::Fail,
            "data dir",
            format!("{} is not writable: {error}", data_dir.display()),
        );
    }
    let _ = std::fs::remove_file(&probe);
    match crate::datadir::is_shared(data_dir) {
        Ok(true) => finding(
            Verdict::Warn,
            "data dir",
            format!(
                "{} is readable by other users; run chmod 700 on it",
                data_dir.display()
            ),
        ),
        Ok(false) => finding(
            Verdict::Ok,
            "data dir",
            format!("{} is writable and private", data_dir.display()),
        ),
        Err(error) => finding(
            Verdict::Fail,
            "data dir",
            format!("cannot inspect {}: {error}", data_dir.display()),
        ),
    }
}

fn check_free_space(data_dir: &Path) -> Finding {
    let existing = data_dir
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    match rustix::fs::statvfs(existing) {
        Ok(stats) => {
            let free = stats.f_bavail.saturating_mul(stats.f_frsize);
            let mib = free / (1024 * 1024);
            let verdict = match mib {
                0..100 => Verdict::Fail,
                100..1024 => Verdict::Warn,
                _ => Verdict::Ok,
            };
            finding(
                verdict,
                "free disk",
                format!("{mib} MiB free at {}", existing.display()),
            )
        }
        Err(error) => finding(
            Verdict::Fail,
            "free disk",
            format!("cannot read {}: {error}", existing.display()),
        ),
    }
}

fn check_nats_server(nats: &crate::config::NatsSection) -> Finding {
    if nats.mode != "embedded" {
        return finding(
            Verdict::Ok,
            "nats-server",
            format!("not needed (nats.mode = {:?})", nats.mode),
        );
    }
    let Some(binary) = crate::management::nats::server_binary(nats) else {
        return finding(
            Verdict::Warn,
            "nats-server",
            "not found on PATH; agents and CDC over NATS need it (apt-get install nats-server)",
        );
    };
    match std::process::Command::new(&binary)
        .arg("--version")
        .output()
    {
        Ok(output) if output.status.success() => {
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            finding(Verdict::Ok, "nats-server", version)
        }
        Ok(output) => finding(
            Verdict::Warn,
            "nats-server",
            format!("`nats-server --version` exited with {}", output.status),
        ),
        Err(error) => finding(
            Verdict::Warn,
            "nats-server",
            format!("cannot run {}: {error}", binary.display()),
        ),
    }
}

fn check_certificate(files: &CertificateFiles, now: time::OffsetDateTime) -> Finding {
    if files.self_signed && !files.cert.exists() {
        return finding(
            Verdict::Ok,
            "certificate",
            "none yet; serve generates a self-signed one",
        );
    }
    match crate::tls::expiry(&files.cert) {
        Ok(not_after) => {
            let days = (not_after - now).whole_days();
            let verdict = match days {
                ..0 => Verdict::Fail,
                0..30 => Verdict::Warn,
                _ => Verdict::Ok,
            };
            let kind = if files.self_signed {
                "self-signed"
            } else {
                "operator"
            };
            finding(
                verdict,
                "certificate",
                format!("{kind} {} expires in {days} days", files.cert.display()),
            )
        }
        Err(error) => finding(Verdict::Fail, "certificate", format!("{error:#}")),
    }
}

/// GETs `url` and succeeds on a 2xx answer. With `ca_cert`, HTTPS trusts that certificate.
pub async fn healthcheck(
    url: &str,
    ca_cert: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        let certificate = reqwest::Certificate::from_pem(&pem).map_err(|error| {
            anyhow::anyhow!("{} is not a PEM certificate: {error}", path.display())
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    let client = builder.build()?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{url} did not answer: {error}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(format!("{status} {body}"))
    } else {
        anyhow::bail!("{url} answered {status}: {body}")
    }
}
