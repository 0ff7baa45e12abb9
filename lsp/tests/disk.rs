//! Files that change on disk behind the editor's back (`workspace/didChangeWatchedFiles`):
//! created, changed and deleted `.apt` files and users files update the workspace, and the
//! diagnostics then agree with `aptc check`; workspace folders that come and go are scanned.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aptc_lsp::Options;
use common::*;
use serde_json::{Value, json};

const CREATED: u32 = 1;
const CHANGED: u32 = 2;
const DELETED: u32 = 3;

const SYSTEM: &str = "namespace system\n\nuser \"ada\"\n\nusers from \"users.yaml\"\n\ncluster here {}\n\nrule all {\n    place on here\n}\n";
const APP: &str = "namespace app\n\nservice app {\n    component web chart \"./c\" {}\n}\n\n\
contract app {\n    context all {\n        use app\n    }\n}\n\nclaim one {\n    user \"bob\"\n    contract app\n}\n";

/// A fresh folder with a clean policy: `system.apt` loads `users.yaml`, whose user `bob`
/// claims in `app.apt`, whose chart is the directory `c`.
fn folder(name: &str) -> PathBuf {
    let root = repo().join(format!("target/lsp-tests/{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("system.apt"), SYSTEM).unwrap();
    std::fs::write(root.join("users.yaml"), "- name: bob\n").unwrap();
    std::fs::write(root.join("app.apt"), APP).unwrap();
    std::fs::create_dir_all(root.join("c")).unwrap();
    std::fs::write(root.join("c/Chart.yaml"), "apiVersion: v2\nname: c\nversion: 0.1.0\n").unwrap();
    root
}

async fn changed(client: &mut TestClient, path: &Path, kind: u32) {
    client.notify("workspace/didChangeWatchedFiles", json!({ "changes": [{ "uri": uri(path), "type": kind }] })).await;
}

fn codes(diagnostics: &[Value]) -> BTreeSet<String> {
    diagnostics.iter().map(|d| d["code"].as_str().unwrap_or_default().to_string()).collect()
}

/// The codes `aptc check` reports for `file` of the policy in `root`.
fn check_codes(root: &Path, file: &Path) -> BTreeSet<String> {
    let paths = aptc_compiler::workspace::find_apt_files(&[root.to_path_buf()]).unwrap();
    let mut sources = aptc_compiler::workspace::load(&paths).unwrap();
    let result = aptc_compiler::host::check(&mut sources);
    result
        .diagnostics
        .iter()
        .filter(|d| sources.get(d.primary.file).path == file)
        .map(|d| d.code.as_str().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_changed_and_deleted_files_update_the_workspace() {
    let root = folder("disk");
    let app = root.join("app.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    client.open_from_disk(&app).await;
    client.diagnostics(&app, |d| d.is_empty()).await;

    // Created: a new file with an error.
    let extra = root.join("extra.apt");
    std::fs::write(&extra, "namespace extra\n\nservice s {\n    componet web chart \"./c\" {}\n}\n").unwrap();
    changed(&mut client, &extra, CREATED).await;
    let found = client.diagnostics(&extra, |d| !d.is_empty()).await;
    assert_eq!(codes(&found), check_codes(&root, &extra));

    // Changed: the syntax error fixed on disk (what is left is a warning: nothing uses it).
    std::fs::write(&extra, "namespace extra\n\nservice s {\n    component web chart \"./c\" {}\n}\n").unwrap();
    changed(&mut client, &extra, CHANGED).await;
    let expected = check_codes(&root, &extra);
    assert!(!expected.contains("APT0004"), "{expected:?}");
    client.diagnostics(&extra, |d| codes(d) == expected).await;

    // A users file changed: `bob` is gone, the claim in the open document is wrong now.
    std::fs::write(root.join("users.yaml"), "- name: carol\n").unwrap();
    changed(&mut client, &root.join("users.yaml"), CHANGED).await;
    let found = client.diagnostics(&app, |d| !d.is_empty()).await;
    assert_eq!(codes(&found), check_codes(&root, &app));
    assert!(codes(&found).contains("APT0201"), "{found:#?}");
    std::fs::write(root.join("users.yaml"), "- name: bob\n").unwrap();
    changed(&mut client, &root.join("users.yaml"), CHANGED).await;
    client.diagnostics(&app, |d| d.is_empty()).await;

    // Deleted: without system.apt there are no users at all, as `aptc check` says too.
    std::fs::remove_file(root.join("system.apt")).unwrap();
    changed(&mut client, &root.join("system.apt"), DELETED).await;
    let found = client.diagnostics(&app, |d| !d.is_empty()).await;
    assert_eq!(codes(&found), check_codes(&root, &app));
    let symbols = client.call("workspace/symbol", json!({ "query": "here" })).await;
    assert!(
        symbols.as_array().unwrap().iter().all(|s| s["location"]["uri"] != uri(&root.join("system.apt")).as_str()),
        "a deleted file is no longer searched: {symbols}"
    );
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
}

/// Whether `diagnostics` hold an APT0210 (local chart cannot be used).
fn has_chart_error(diagnostics: &[Value]) -> bool {
    codes(diagnostics).contains("APT0210")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_created_or_removed_on_disk_is_checked_again() {
    let root = folder("charts");
    let web = root.join("web.apt");
    std::fs::write(&web, "namespace web\n\nservice s {\n    component site chart \"./charts/site\"\n}\n").unwrap();
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    client.open_from_disk(&web).await;
    let expected = check_codes(&root, &web);
    assert!(expected.contains("APT0210"), "{expected:?}");
    let found = client.diagnostics(&web, |d| codes(d) == expected).await;
    let message = found.iter().find(|d| d["code"] == "APT0210").unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains(&root.join("charts/site").display().to_string()), "names the path: {message}");

    // The chart directory is created: its `Chart.yaml` is a watched file, and the error goes.
    let chart_yaml = root.join("charts/site/Chart.yaml");
    std::fs::create_dir_all(chart_yaml.parent().unwrap()).unwrap();
    std::fs::write(&chart_yaml, "apiVersion: v2\nname: site\nversion: 0.1.0\n").unwrap();
    changed(&mut client, &chart_yaml, CREATED).await;
    let expected = check_codes(&root, &web);
    assert!(!expected.contains("APT0210"), "{expected:?}");
    client.diagnostics(&web, |d| codes(d) == expected).await;

    // Removed again: the error is back.
    std::fs::remove_dir_all(root.join("charts")).unwrap();
    changed(&mut client, &chart_yaml, DELETED).await;
    client.diagnostics(&web, |d| has_chart_error(d)).await;
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_registered_for_policy_and_referenced_files() {
    let root = folder("watchers");
    let mut client = TestClient::start(Options::default());
    let capabilities = json!({ "workspace": { "didChangeWatchedFiles": { "dynamicRegistration": true } } });
    client.initialize_with(&root, capabilities).await;
    let request =
        client.next_message("client/registerCapability", |m| m["method"] == "client/registerCapability").await;
    let registration = &request["params"]["registrations"][0];
    assert_eq!(registration["method"], "workspace/didChangeWatchedFiles");
    let globs: Vec<&str> = registration["registerOptions"]["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["globPattern"].as_str().unwrap())
        .collect();
    for glob in ["**/*.apt", "**/*.yaml", "**/*.yml", "**/*.json", "**/*.tgz"] {
        assert!(globs.contains(&glob), "{glob} not watched: {globs:?}");
    }
    client.respond(request["id"].clone(), Value::Null).await;
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_folders_that_come_and_go_are_scanned() {
    let first = folder("folders-a");
    let second = repo().join(format!("target/lsp-tests/folders-b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&second);
    std::fs::create_dir_all(&second).unwrap();
    let broken = second.join("broken.apt");
    std::fs::write(&broken, "namespace b\n\nservice s {\n    componet web chart \"./c\" {}\n}\n").unwrap();
    let mut client = TestClient::start(Options::default());
    let result = client.initialize(&first).await;
    assert_eq!(result["capabilities"]["workspace"]["workspaceFolders"]["changeNotifications"], true);
    let folder = |path: &Path| json!({ "uri": uri(path), "name": "b" });
    let added = json!({ "event": { "added": [folder(&second)], "removed": [] } });
    client.notify("workspace/didChangeWorkspaceFolders", added).await;
    client.diagnostics(&broken, |d| !d.is_empty()).await;
    let removed = json!({ "event": { "added": [], "removed": [folder(&second)] } });
    client.notify("workspace/didChangeWorkspaceFolders", removed).await;
    client.diagnostics(&broken, |d| d.is_empty()).await;
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&first);
    let _ = std::fs::remove_dir_all(&second);
}
