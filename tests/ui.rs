//! `aptc ui`: the real binary serving the dashboard's JSON API (docs/ui.md), asked over HTTP as
//! the page asks it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{Reaper, copy_tree, root, wait_for};

/// A running `aptc ui` and the address it printed.
struct Dashboard {
    _server: Reaper,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The token it printed, if it needs one.
    token: Option<String>,
}

/// `aptc ui --listen LISTEN ARGS`, run in the repository, its output in `dir`.
fn start(dir: &Path, listen: &str, args: &[&str]) -> Dashboard {
    serve(dir, listen, args, &[])
}

/// [`start`] on loopback, with `env` set for the server's process.
fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Dashboard {
    serve(dir, "127.0.0.1:0", args, env)
}

fn serve(dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Dashboard {
    let log = dir.join("ui.log");
    let server = Reaper::spawn(
        Command::new(env!("CARGO_BIN_EXE_aptc"))
            .args(["ui", "--listen", listen, "--target", "render"])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(root())
            .env_remove("APTC_LOG"),
        &log,
        &dir.join("ui.err"),
    );
    let line = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("aptc ui: "))
            .map(str::to_string)
    };
    assert!(
        wait_for(30, || line().is_some()),
        "aptc ui did not start: {}",
        std::fs::read_to_string(dir.join("ui.err")).unwrap_or_default()
    );
    let url = line().unwrap();
    let rest = url.trim_start_matches("aptc ui: http://");
    let (addr, query) = rest.split_once('/').unwrap();
    let token = query.strip_prefix("?token=").map(str::to_string);
    // An unspecified address is reached on loopback.
    let addr = addr.replace("0.0.0.0", "127.0.0.1");
    Dashboard { _server: server, addr, token }
}

/// One HTTP/1.1 exchange: the status and the body.
fn exchange(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

impl Dashboard {
    fn request(&self, method: &str, path: &str, body: Option<&str>, host: &str) -> (u16, String) {
        let auth = self.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let body = body.unwrap_or("");
        let kind = if body.is_empty() { String::new() } else { "Content-Type: application/json\r\n".to_string() };
        exchange(
            &self.addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// `GET path` as JSON, which must succeed.
    fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None, "127.0.0.1");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, body) = self.request("POST", path, Some(body), "127.0.0.1");
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {path}: {e}: {body}")))
    }
}

/// `value` with what differs between runs (times, durations, scratch paths) replaced.
fn stable(value: &Value, dir: &Path) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "time" | "duration_ms" | "started_ms" => Value::String(format!("[{k}]")),
                        _ => stable(v, dir),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| stable(v, dir)).collect()),
        Value::String(s) => Value::String(s.replace(&dir.display().to_string(), "[scratch]")),
        other => other.clone(),
    }
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("ui-tests", name)
}

#[test]
fn the_api_on_twitter_analytics() {
    let dir = scratch("twitter");
    let state = dir.join("state.db");
    let ui = start(&dir, "127.0.0.1:0", &["--state", state.to_str().unwrap(), "examples/twitter-analytics"]);
    let summary = stable(&ui.get("/api/v1/policy"), &dir);
    insta::assert_json_snapshot!("policy", summary);
    let graph = ui.get("/api/v1/graph");
    insta::assert_json_snapshot!("graph", graph);
    // The rejected claim, with its reason and where the rule is.
    let carol = ui.get("/api/v1/claims/social.carol_dev");
    insta::assert_json_snapshot!("claim_rejected", carol);
    assert_eq!(carol["claims"][0]["status"], "rejected");
    // The same document as `aptc explain --format json`.
    let explained = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["explain", "social.carol_dev", "examples/twitter-analytics", "--format", "json"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(carol, serde_json::from_slice::<Value>(&explained.stdout).unwrap());
    let name = graph["instances"].as_array().unwrap().iter().find(|i| i["kind"] == "chart").unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    insta::assert_json_snapshot!("instance", ui.get(&format!("/api/v1/instances/{name}")));
    let file = carol["claims"][0]["reason_origin"]["file"].as_str().unwrap();
    let source = ui.get(&format!("/api/v1/source?file={file}"));
    assert_eq!(source["text"], std::fs::read_to_string(root().join(file)).unwrap());
    assert_eq!(ui.get("/api/v1/revisions"), Value::Array(Vec::new()));
    assert_eq!(ui.get("/api/v1/session")["read_only"], true);
    // Only the policy's own files, and only what exists.
    for path in ["/api/v1/source?file=/etc/passwd", "/api/v1/source?file=Cargo.toml", "/api/v1/claims/social.nobody"] {
        assert_eq!(ui.request("GET", path, None, "127.0.0.1").0, 404, "{path}");
    }
    // Read-only: no rollback.
    let (status, refused) = ui.post("/api/v1/rollback/1", "{}");
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("--allow-rollback"), "{refused}");
    // A page elsewhere that rebinds its name to 127.0.0.1 is not answered.
    assert_eq!(ui.request("GET", "/api/v1/graph", None, "evil.example:80").0, 403);
}

#[test]
fn beyond_loopback_every_request_needs_the_token() {
    let dir = scratch("token");
    let state = dir.join("state.db");
    let ui = start(&dir, "0.0.0.0:0", &["--state", state.to_str().unwrap(), "examples/quickstart"]);
    let log = std::fs::read_to_string(dir.join("ui.log")).unwrap();
    assert!(log.contains("every API request must carry the token"), "{log}");
    let token = ui.token.clone().expect("a token is printed");
    assert_eq!(token.len(), 48);
    let plain =
        |path: &str| exchange(&ui.addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).0;
    assert_eq!(plain("/api/v1/graph"), 401);
    assert_eq!(plain("/api/v1/events"), 401);
    // The app itself (no data) loads without it, so the page can start and read the token.
    assert_eq!(plain("/"), 200);
    assert_eq!(plain("/api/v1/graph?token=wrong"), 401);
    assert_eq!(plain(&format!("/api/v1/graph?token={token}")), 200);
    assert!(ui.get("/api/v1/policy")["claims"]["total"].as_u64().unwrap() > 0);
}

#[test]
fn events_say_when_a_policy_file_changes() {
    let dir = scratch("events");
    let policy = dir.join("policy");
    copy_tree(&root().join("examples/quickstart"), &policy);
    let state = dir.join("state.db");
    let ui = start(&dir, "127.0.0.1:0", &["--state", state.to_str().unwrap(), policy.to_str().unwrap()]);
    let mut stream = TcpStream::connect(&ui.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut next_event = || lines.find_map(|l| l.unwrap().strip_prefix("event: ").map(str::to_string)).unwrap();
    assert_eq!(next_event(), "hello");
    let file = std::fs::read_dir(&policy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "apt"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n// edited\n")).unwrap();
    assert_eq!(next_event(), "change");
}

fn deploy(dir: &Path, policy: &Path, user: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["deploy", "--yes", "--as", user, "--target", "render"])
        .args(["--state", dir.join("state.db").to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
        .arg(policy)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn history_diff_and_a_confirmed_rollback() {
    let dir = scratch("rollback");
    let policy = dir.join("policy");
    copy_tree(&root().join("examples/quickstart"), &policy);
    deploy(&dir, &policy, "ada@example.com");
    let hello = policy.join("hello.apt");
    let text = std::fs::read_to_string(&hello).unwrap();
    assert!(text.contains("label replicas: int = 1"), "{text}");
    std::fs::write(&hello, text.replace("label replicas: int = 1", "label replicas: int = 3")).unwrap();
    deploy(&dir, &policy, "ada@example.com");
    let state = dir.join("state.db");
    let out = dir.join("out");
    let args = |user: &str| -> Vec<String> {
        [
            "--state",
            state.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--as",
            user,
            "--allow-rollback",
            policy.to_str().unwrap(),
        ]
        .map(str::to_string)
        .to_vec()
    };
    let ui_args = args("ada@example.com");
    let ui = start(&dir, "127.0.0.1:0", &ui_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ui.get("/api/v1/session")["rollback_as"], "ada@example.com");
    let revisions = ui.get("/api/v1/revisions");
    assert_eq!(revisions.as_array().unwrap().len(), 2);
    insta::assert_json_snapshot!("revision_2", stable(&ui.get("/api/v1/revisions/2"), &dir)["actions"]);
    insta::assert_json_snapshot!("diff_1_2", ui.get("/api/v1/diff?from=1&to=2"));
    insta::assert_json_snapshot!("drift_none", stable(&ui.get("/api/v1/drift/now"), &dir));

    // Step 1: the plan, nothing applied.
    let (status, plan) = ui.post("/api/v1/rollback/1", "{}");
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["report"]["status"], "dry_run");
    assert_eq!(ui.get("/api/v1/revisions").as_array().unwrap().len(), 2);
    insta::assert_json_snapshot!("rollback_plan", stable(&plan["report"]["actions"], &dir));
    // A confirmation of another plan is refused.
    let (status, stale) = ui.post("/api/v1/rollback/1", r#"{"digest":"sha256:0000"}"#);
    assert_eq!(status, 409, "{stale}");
    // Step 2: the plan the user saw, applied.
    let (status, done) = ui.post("/api/v1/rollback/1", &serde_json::json!({ "digest": plan["digest"] }).to_string());
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["report"]["status"], "applied", "{done}");
    let last = ui.get("/api/v1/revisions/3");
    assert_eq!(last["cause"], serde_json::json!({ "type": "rollback", "to": 1 }));
    assert_eq!(last["user"], "ada@example.com");

    // A user the policy gives no role: refused as `aptc rollback --as` refuses.
    drop(ui);
    let stranger_args = args("mallory@example.com");
    let ui = start(&dir, "127.0.0.1:0", &stranger_args.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, refused) = ui.post("/api/v1/rollback/2", "{}");
    assert_eq!(status, 403, "{refused}");
    let cli = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["rollback", "2", "--dry-run", "--as", "mallory@example.com", "--target", "render"])
        .args(["--state", state.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout).into_owned() + &String::from_utf8_lossy(&cli.stderr);
    let first_refusal = refused["error"].as_str().unwrap().lines().nth(1).unwrap().to_string();
    assert!(said.contains(first_refusal.trim()), "the CLI: {said}\nthe dashboard: {refused}");
}

#[test]
fn a_chart_instance_shows_what_helm_renders_with_secrets_redacted() {
    let dir = scratch("chart");
    let policy = dir.join("policy");
    copy_tree(&root().join("examples/quickstart"), &policy);
    // The greeting is a secret: it reaches neither Helm nor the page.
    let hello = policy.join("hello.apt");
    let text = std::fs::read_to_string(&hello).unwrap();
    let secret = r#"text = secret_env("APTC_UI_TEST_GREETING")"#;
    std::fs::write(&hello, text.replace(r#"text = "Hello from ${instance.name} (${labels.env})""#, secret)).unwrap();
    let state = dir.join("state.db");
    let ui = start_with_env(
        &dir,
        &["--state", state.to_str().unwrap(), policy.to_str().unwrap()],
        &[("APTC_UI_TEST_GREETING", "the-secret-greeting")],
    );
    let graph = ui.get("/api/v1/graph");
    let named = |kind: &str| -> Vec<String> {
        graph["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == kind)
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let chart = &named("chart")[0];
    let rendered = ui.get(&format!("/api/v1/instances/{chart}/manifests"));
    let text = rendered["files"][0]["text"].as_str().unwrap().to_string();
    assert!(!text.contains("the-secret-greeting"), "{text}");
    assert!(text.contains("-text=***"), "{text}");
    let mut shown = rendered.clone();
    shown["helm"] = Value::String("[helm version]".to_string());
    insta::assert_json_snapshot!("chart_manifests", stable(&shown, &dir));
    // A manifests instance: its rendered templates.
    let templates = ui.get(&format!("/api/v1/instances/{}/manifests", named("manifests")[0]));
    assert_eq!(templates["renderer"], "templates");
    assert!(templates["files"][0]["text"].as_str().unwrap().contains("kind: ConfigMap"), "{templates}");
    // A template Helm cannot render: its message, not a failed request.
    let broken = policy.join("charts/hello/templates/broken.yaml");
    std::fs::write(&broken, "{{ include \"no-such-template\" . }}\n").unwrap();
    let failed = ui.get(&format!("/api/v1/instances/{chart}/manifests"));
    assert_eq!(failed["files"], Value::Array(Vec::new()));
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("helm template failed") && error.contains("no-such-template"), "{error}");
    assert_eq!(ui.request("GET", "/api/v1/instances/nothing-like-it/manifests", None, "127.0.0.1").0, 404);
}

#[test]
fn the_last_drift_check_is_kept_in_the_store_and_served() {
    let dir = scratch("drift");
    let policy = dir.join("policy");
    copy_tree(&root().join("examples/quickstart"), &policy);
    deploy(&dir, &policy, "ada@example.com");
    let (state, out) = (dir.join("state.db"), dir.join("out"));
    let args = ["--state", state.to_str().unwrap(), "--out", out.to_str().unwrap(), policy.to_str().unwrap()];
    let ui = start(&dir, "127.0.0.1:0", &args);
    insta::assert_json_snapshot!("drift_not_checked", ui.get("/api/v1/drift"));
    // A rendered file edited by hand.
    let hello = out.join("local/hello");
    let mut instances: Vec<PathBuf> = std::fs::read_dir(&hello).unwrap().map(|e| e.unwrap().path()).collect();
    instances.sort();
    let edited = instances.iter().map(|d| d.join("manifest.yaml")).find(|f| f.exists()).unwrap();
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, format!("{text}# edited by hand\n")).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_aptc"))
        .args(["deploy", "--refresh", "--dry-run", "--as", "ada@example.com", "--target", "render"])
        .args(["--state", state.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .arg(&policy)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let kept = ui.get("/api/v1/drift");
    assert_eq!(kept["checked"]["cause"], "dry_run");
    assert_eq!(kept["checked"]["user"], "ada@example.com");
    assert!(kept["checked"]["time"].as_str().unwrap().ends_with('Z'), "{kept}");
    insta::assert_json_snapshot!("drift_kept", stable(&kept, &dir));
    // What the target says now is the same.
    assert_eq!(ui.get("/api/v1/drift/now")["drift"], kept["drift"]);
}
