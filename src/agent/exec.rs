//! Running what the server sends: OpenFrame's `ScriptMessage` (a script body written to a file in
//! the work dir, run with its shell and arguments) and `CommandMessage` (a command line), with
//! environment variables, a timeout, cancellation, and output cut at 64 KiB per stream.
//!
//! Linux runs `SHELL` (sh), `BASH` and `PYTHON` (python3); other shells answer with an error
//! result rather than running something else.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

/// What an execution keeps of each output stream (the server's cap).
pub const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// A script or a command, as the server sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub execution_id: String,
    #[serde(default)]
    pub machine_id: Option<String>,
    #[serde(default)]
    pub script_id: Option<String>,
    #[serde(default)]
    pub schedule_id: Option<String>,
    pub code: String,
    pub shell: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Scripts say `timeoutSeconds`, commands `timeout`.
    #[serde(default, alias = "timeout")]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
}

/// How a job ended, as OpenFrame's agent reports it (snake_case).
pub fn result(job: &Job, machine_id: &str, outcome: &Outcome) -> Value {
    json!({
        "execution_id": job.execution_id,
        "machine_id": machine_id,
        "script_id": job.script_id,
        "schedule_id": job.schedule_id,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "exit_code": outcome.exit_code,
        "execution_time_ms": outcome.execution_time_ms,
        "timed_out": outcome.timed_out,
        "error": outcome.error,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub execution_time_ms: u64,
    pub timed_out: bool,
    pub error: Option<String>,
}

fn failed(error: impl Into<String>) -> Outcome {
    Outcome {
        error: Some(error.into()),
        ..Outcome::default()
    }
}

/// Reads a stream to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn capped(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..read.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Kills the job's whole process group (the shell and everything it started).
pub async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
}

/// Runs a job: a script (`script = true`) from a file in `work`, or a command line.
pub async fn run(job: &Job, script: bool, work: &Path, cancel: CancellationToken) -> Outcome {
    let interpreter = match job.shell.to_ascii_uppercase().as_str() {
        "SHELL" => "sh",
        "BASH" => "bash",
        "PYTHON" => "python3",
        other => return failed(format!("the {other} shell does not run on Linux")),
    };
    let mut command = tokio::process::Command::new(interpreter);
    let file = work.join(format!(
        "{}.script",
        job.execution_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
    ));
    if script {
        if let Err(error) = crate::agent::state::write_atomically(&file, job.code.as_bytes()) {
            return failed(format!("cannot write the script: {error}"));
        }
        command.arg(&file).args(&job.args);
    } else {
        command.arg("-c").arg(&job.code);
    }
    for var in &job.env_vars {
        command.env(&var.name, var.value.as_deref().unwrap_or_default());
    }
    command.current_dir(work);
    let timeout = Duration::from_secs(job.timeout_seconds.unwrap_or(300).clamp(1, 86_400));
    let outcome = run_process(command, timeout, cancel).await;
    if script {
        let _ = std::fs::remove_file(&file);
    }
    outcome
}

/// Runs a prepared command in its own process group, keeping the first [`MAX_OUTPUT`] bytes of
/// each output stream, until it exits, `timeout` passes or `cancel` fires (the group is killed).
pub async fn run_process(
    mut command: tokio::process::Command,
    timeout: Duration,
    cancel: CancellationToken,
) -> Outcome {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout or a cancel ends whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return failed(format!("cannot start {program}: {error}")),
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return failed("the process has no output pipes");
    };
    let outputs = tokio::spawn(async move { tokio::join!(capped(stdout), capped(stderr)) });
    let (exit_code, timed_out, error) = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => (status.code(), false, None),
            Err(error) => (None, false, Some(format!("waiting for the process: {error}"))),
        },
        () = tokio::time::sleep(timeout) => {
            kill_group(&mut child).await;
            (None, true, Some(format!("timed out after {} s", timeout.as_secs())))
        }
        () = cancel.cancelled() => {
            kill_group(&mut child).await;
            (None, false, Some("cancelled".to_owned()))
        }
    };
    let (stdout, stderr) = outputs.await.unwrap_or_default();
    Outcome {
        stdout,
        stderr,
        exit_code,
        execution_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        timed_out,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(shell: &str, code: &str, timeout: u64) -> Job {
        Job {
            execution_id: "e-1".into(),
            machine_id: None,
            script_id: None,
            schedule_id: None,
            code: code.into(),
            shell: shell.into(),
            args: vec!["world".into()],
            timeout_seconds: Some(timeout),
            env_vars: vec![EnvVar {
                name: "GREETING".into(),
                value: Some("hello".into()),
            }],
        }
    }

    #[tokio::test]
    async fn scripts_get_args_and_env_and_floods_and_hangs_are_contained() {
        let work = tempfile::TempDir::new().unwrap();
        let done = run(
            &job("BASH", "echo \"$GREETING $1\"; echo oops >&2; exit 3", 10),
            true,
            work.path(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(done.stdout, "hello world\n");
        assert_eq!(done.stderr, "oops\n");
        assert_eq!(done.exit_code, Some(3));
        let flood = run(
            &job("SHELL", "head -c 1000000 /dev/zero | tr '\\0' x", 10),
            false,
            work.path(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(flood.stdout.len(), MAX_OUTPUT);
        assert_eq!(flood.exit_code, Some(0));
        let hang = run(
            &job("SHELL", "sleep 30", 1),
            false,
            work.path(),
            CancellationToken::new(),
        )
        .await;
        assert!(hang.timed_out);
        assert_eq!(hang.exit_code, None);
        let other = run(
            &job("POWERSHELL", "Get-Date", 1),
            false,
            work.path(),
            CancellationToken::new(),
        )
        .await;
        assert!(other.error.unwrap().contains("POWERSHELL"));
        assert!(
            std::fs::read_dir(work.path()).unwrap().next().is_none(),
            "scripts are removed"
        );
    }
}
