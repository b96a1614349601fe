//! The agent as a service of the machine, end to end: `install` registers and writes the
//! systemd unit (without the initial key), `doctor` checks everything it needs, the installed
//! agent installs a tool agent from a local asset (checksum verified, placeholders filled, its
//! installation, run and id commands executed, `installed-agent` and `tool-connection`
//! reported) and refuses a download whose checksum does not match, removes the tool when told,
//! and `uninstall` deregisters the machine and removes the unit and the state.

use reqwest::Method;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Output, Stdio};

use super::endpoint::{until, wait_for};
use super::support::{ORG, appliance_for_agents};
use crate::helpers::TestApp;
use crate::rest::call;

fn agent(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_openframe"));
    command
        .arg("agent")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn finished(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the agent command finished")
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A tool agent definition whose Linux build is `asset` on this appliance.
fn lab_tool(app: &TestApp, asset: &str, sha256: &str) -> Value {
    json!({
        "toolId": "meshcentral-server",
        "toolType": "MESHCENTRAL",
        "version": "1.0.0",
        "sessionType": "SERVICE",
        "downloadConfigurations": [{
            "os": "LINUX",
            "linkTemplate": app.https_url(&format!("/clients/tool-agent/{asset}")),
            "fileName": asset,
            "targetFileName": "lab-tool",
            "installationType": "SERVICE",
            "sha256": sha256,
        }],
        "assets": [{
            "id": "lab-config",
            "source": "OPENFRAME",
            "localFilenameConfiguration": [{"os": "LINUX", "filename": "lab.conf"}],
            "executable": false,
        }],
        "installationCommandArgs": ["install", "${client.serverUrl}", "${client.machineId}",
            "${client.openframeTokenPath}", "${client.assetPath.lab-config}"],
        "runCommandArgs": ["run"],
        "agentToolIdCommandArgs": ["id"],
        "uninstallationCommandArgs": ["uninstall", "${client.machineId}"],
        "status": "ENABLED",
    })
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[tokio::test]
async fn an_installed_agent_installs_a_tool_from_a_local_asset_and_uninstall_deregisters_it() {
    let dir = tempfile::TempDir::new().unwrap();
    let (mut app, admin, key) = appliance_for_agents(dir.path()).await;
    let server = format!("https://localhost:{}", app.https_addr.port());
    let state = dir.path().join("agent-state");
    let units = dir.path().join("units");
    let cert = app.cert_path().display().to_string();
    let state_arg = state.display().to_string();
    let units_arg = units.display().to_string();

    // install: registers with the key, proves the credential, writes the unit.
    let install = agent(&[
        "install",
        "--server",
        &server,
        "--initial-key",
        &key,
        "--org",
        ORG,
        "--state-dir",
        &state_arg,
        "--ca-file",
        &cert,
        "--hostname",
        "svc-host",
        "--unit-dir",
        &units_arg,
        "--no-start",
    ]);
    let installed = finished(install).await;
    let said = String::from_utf8_lossy(&installed.stderr);
    assert!(installed.status.success(), "{said}");
    assert!(said.contains("registered as machine"), "{said}");
    let unit = text(&units.join("openframe-agent.service"));
    let exec = format!(
        "ExecStart=\"{}\" \"agent\" \"run\" \"--server\" \"{server}\" \"--state-dir\" \"{state_arg}\" \"--ca-file\" \"{cert}\" \"--hostname\" \"svc-host\"",
        env!("CARGO_BIN_EXE_openframe")
    );
    assert!(unit.contains(&exec), "{unit}");
    assert!(unit.contains("RestartPreventExitStatus=2"), "{unit}");
    assert!(
        !unit.contains(&key),
        "the initial key stays out of the unit"
    );
    let credential: Value = serde_json::from_str(&text(&state.join("agent_config.json"))).unwrap();
    let machine = credential["machineId"].as_str().unwrap().to_owned();
    assert!(!credential["accessToken"].as_str().unwrap().is_empty());

    // doctor: everything it needs holds; a state dir without a credential fails with a hint.
    let doctor = |state: String| {
        let mut command = agent(&["doctor", "--state-dir", &state, "--unit-dir", &units_arg]);
        command.args(["--ca-file", &cert]);
        async move {
            let done = finished(command).await;
            let report = String::from_utf8_lossy(&done.stderr).into_owned();
            (done.status.code(), report)
        }
    };
    let (code, report) = doctor(state_arg.clone()).await;
    assert_eq!(code, Some(0), "{report}");
    for line in [
        "ok   credential: machine",
        "ok   server:",
        "ok   clock:",
        "ok   token:",
        "ok   NATS:",
        "ok   service: installed",
    ] {
        assert!(report.contains(line), "{line} missing from:\n{report}");
    }
    let (code, report) = doctor(dir.path().join("empty").display().to_string()).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("FAIL credential: none"), "{report}");

    // The service's command line serves without the key.
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut running = agent(&[
        "run",
        "--server",
        &server,
        "--state-dir",
        &state_arg,
        "--ca-file",
        &cert,
        "--hostname",
        "svc-host",
        "--heartbeat-seconds",
        "1",
    ])
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap();
    until(
        &app,
        &admin,
        &format!("{{ device(machineId: \"{machine}\") {{ status }} }}"),
        |found| found["device"]["status"] == "ONLINE",
    )
    .await;

    // A tool agent served by the appliance itself: a script that records how it was called.
    let out = dir.path().join("tool-out");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "#!/bin/sh\nout={}\ncase \"$1\" in\n  install) shift; echo \"$@\" > \"$out/installed\" ;;\n  run) echo started > \"$out/running\"; exec sleep 600 ;;\n  id) echo lab-node-1 ;;\n  uninstall) echo \"$2\" > \"$out/uninstalled\" ;;\nesac\n",
        out.display()
    );
    let assets = app.data_dir.join("tool-assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("lab-tool"), &script).unwrap();
    std::fs::write(assets.join("lab-config"), "mesh=lab\n").unwrap();
    let good = lab_tool(&app, "lab-tool", &sha256_hex(script.as_bytes()));
    // Its twin claims another checksum: the download must be refused.
    let bad = lab_tool(&app, "lab-tool", &"0".repeat(64));
    for (id, definition) in [("lab-agent", good), ("lab-bad", bad)] {
        let path = format!("/api/tool-agents/{id}");
        let (status, body) = call(&app, &admin, Method::PUT, &path, Some(definition)).await;
        assert_eq!(status, 200, "{body}");
    }
    for id in ["lab-bad", "lab-agent"] {
        let (status, body) = call(
            &app,
            &admin,
            Method::POST,
            &format!("/api/tool-agents/{id}/install"),
            Some(json!({"machineIds": [machine]})),
        )
        .await;
        assert_eq!((status, body), (202, json!({"published": 1})));
    }
    let shown = until(
        &app,
        &admin,
        &format!("{{ device(machineId: \"{machine}\") {{ toolConnections {{ toolType agentToolId status }} installedAgents {{ agentType version }} }} }}"),
        |found| {
            found["device"]["toolConnections"].as_array().is_some_and(|all| !all.is_empty())
                && found["device"]["installedAgents"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|agent| agent["agentType"] == "lab-agent"))
        },
    )
    .await;
    assert_eq!(
        shown["device"]["toolConnections"],
        json!([{"toolType": "MESHCENTRAL", "agentToolId": "node//lab-node-1", "status": "CONNECTED"}])
    );
    let agents = shown["device"]["installedAgents"].as_array().unwrap();
    assert!(
        agents.contains(&json!({"agentType": "lab-agent", "version": "1.0.0"})),
        "{agents:?}"
    );
    assert!(
        !agents.iter().any(|agent| agent["agentType"] == "lab-bad"),
        "{agents:?}"
    );
    // The placeholders were the agent's own values, and the asset sits beside the tool.
    let tool_dir = state.join("tools").join("lab-agent");
    let token_path = state.join("shared_token.enc");
    assert_eq!(
        text(&out.join("installed")).trim(),
        format!(
            "{server} {machine} {} {}",
            token_path.display(),
            tool_dir.join("lab.conf").display()
        )
    );
    assert_eq!(text(&tool_dir.join("lab.conf")), "mesh=lab\n");
    wait_for(|| out.join("running").exists(), "the run command started").await;
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // 12-byte nonce, then the token sealed with a 16-byte tag.
    let sealed = std::fs::read(&token_path).unwrap();
    assert!(sealed.len() > 28 + 100, "{}", sealed.len());
    assert!(
        !state
            .join("tools")
            .join("lab-bad")
            .join("lab-tool")
            .exists(),
        "a bad checksum is never installed"
    );

    // Uninstalling the tool runs its uninstall command and removes it.
    let (status, body) = call(
        &app,
        &admin,
        Method::POST,
        "/api/tool-agents/lab-agent/uninstall",
        Some(json!({"machineIds": [machine]})),
    )
    .await;
    assert_eq!((status, body), (202, json!({"published": 1})));
    wait_for(|| !tool_dir.exists(), "the tool's files are removed").await;
    assert_eq!(text(&out.join("uninstalled")).trim(), machine);

    // uninstall: deregisters (the credential stops working), removes the unit and the state.
    running.kill().await.unwrap();
    let uninstall = finished(agent(&[
        "uninstall",
        "--state-dir",
        &state_arg,
        "--ca-file",
        &cert,
        "--unit-dir",
        &units_arg,
        "--no-start",
    ]))
    .await;
    let said = String::from_utf8_lossy(&uninstall.stderr);
    assert!(uninstall.status.success(), "{said}");
    assert!(
        said.contains(&format!("machine {machine} deregistered")),
        "{said}"
    );
    assert!(!units.join("openframe-agent.service").exists());
    assert!(!state.exists(), "the state dir is removed");
    let refused = app
        .client
        .post(app.https_url("/clients/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", credential["clientId"].as_str().unwrap()),
            (
                "client_secret",
                credential["clientSecret"].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let gone = crate::graphql::support::data(
        &app,
        &admin,
        &format!("{{ device(machineId: \"{machine}\") {{ status }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(gone["device"]["status"], "DELETED");
    app.stop().await.unwrap();
}
