//! Secrets (docs/language.md §5.9, §12): `secret_env(NAME)`, `secret_file(PATH)` and
//! `secret_k8s(NAME, KEY)` resolve to a *marker*, `{"$secret": {"env": "NAME"}}`,
//! `{"$secret": {"file": "PATH"}}` or `{"$secret": {"k8s": {"name": "NAME", "key": "KEY"}}}`, a
//! reference that the desired state, plans and the revision store carry instead of the secret.
//! This module owns everything about reading them, through [`Secrets`] (where they are read):
//!
//! - [`Secrets::reveal`]: the values with every marker replaced by the secret, read from the
//!   environment, a file or a Kubernetes Secret of the home namespace at that moment; only a
//!   driver calls it, right before handing values to a tool;
//! - [`redact`]: markers replaced by `***`, for everything shown or written for people (plans,
//!   diffs, rendered output);
//! - [`Secrets::digest`]: a digest over the secrets' values, so that a rotated secret is a change
//!   to deploy although no secret is stored;
//! - [`Secrets::scrub`]: revealed secrets cut out of a text a tool wrote (an error message of Helm);
//! - [`placeholder`], [`Secrets::reveal_text`], [`redact_text`]: the same for textual templates,
//!   where a secret stands as `@@aptc-secret:env:NAME@@` until it is revealed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;

use aptc_core::secret::{REDACTED, SecretRef, references, replace, replace_placeholders};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::credentials::{Home, SecretReadError, is_secret_key, is_secret_name};

/// A secret that cannot be read when an instance is applied.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("secret {secret}: {reason}")]
pub struct SecretError {
    pub secret: SecretRef,
    pub reason: String,
    /// Whether reading again may succeed without a change of the policy: a Kubernetes Secret not
    /// there yet, or a home cluster that did not answer.
    pub transient: bool,
}

/// How a variable is looked up (the process's environment, or a test's).
type Env = Box<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// The keys of Kubernetes Secrets read, by (Secret, key): the value, or why not and whether that
/// may pass.
type KubeReads = BTreeMap<(String, String), Result<String, (String, bool)>>;

/// Where secrets are read: the process's environment, files, and the Kubernetes Secrets of the
/// home namespace (docs/language.md §8.1). Each Kubernetes Secret key is read once per
/// `Secrets`, so a caller makes one per deploy step or action: a rotated Secret is read again by
/// the next.
pub struct Secrets {
    /// `None`: no home, a `secret_k8s` reference cannot be read (say, rendering into a directory).
    home: Option<Home>,
    env: Env,
    /// The keys of Kubernetes Secrets read so far: the value, or why not.
    kube: Mutex<KubeReads>,
}

impl Secrets {
    /// Secrets read from the process's environment, files, and the Kubernetes Secrets of `home`.
    pub fn new(home: Home) -> Secrets {
        Secrets { home: Some(home), env: Box::new(|name| std::env::var_os(name)), kube: Mutex::default() }
    }

    /// Secrets of the environment and files only: `secret_k8s` fails, naming the reference.
    pub fn local() -> Secrets {
        Secrets { home: None, env: Box::new(|name| std::env::var_os(name)), kube: Mutex::default() }
    }

    /// The same, with variables from `env` instead of the process's (for tests).
    pub fn with_env(self, env: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static) -> Secrets {
        Secrets { env: Box::new(env), ..self }
    }

    /// The secret's value now: the variable, the file (relative to `base_dir`) without one
    /// trailing newline, or the Secret's key (UTF-8).
    fn read(&self, secret: &SecretRef, base_dir: &Path) -> Result<String, SecretError> {
        let error = |reason: String| SecretError { secret: secret.clone(), reason, transient: false };
        match secret {
            SecretRef::Env(name) => {
                // The standard library may panic on such names: they are never set.
                let valid = !name.is_empty() && !name.contains(['=', '\0']);
                let value = valid
                    .then(|| (self.env)(name))
                    .flatten()
                    .ok_or_else(|| error("the environment variable is not set".into()))?;
                value.into_string().map_err(|_| error("the environment variable is not valid UTF-8".into()))
            }
            SecretRef::File(path) => {
                let full = base_dir.join(path);
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| error(format!("cannot read {}: {e}", full.display())))?;
                let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                Ok(text.to_string())
            }
            SecretRef::Kube { name, key } => {
                let mut read = self.kube.lock().unwrap_or_else(|p| p.into_inner());
                let read = read.entry((name.clone(), key.clone())).or_insert_with(|| self.read_kube(name, key));
                read.clone().map_err(|(reason, transient)| SecretError { secret: secret.clone(), reason, transient })
            }
        }
    }

    /// The key `key` of the Secret `name` in the home namespace, or why not (never quoting it)
    /// and whether that may pass (a Secret not created yet, a home that did not answer).
    fn read_kube(&self, name: &str, key: &str) -> Result<String, (String, bool)> {
        if !is_secret_name(name) || !is_secret_key(key) {
            let reason = "that names no possible Secret key (a Secret's name is lower-case letters, digits, `-` \
and `.`, at most 253; a key is letters, digits, `-`, `_` and `.`)";
            return Err((reason.into(), false));
        }
        let Some(home) = &self.home else {
            let reason = "a Kubernetes Secret is read only when deploying to clusters (the home cluster's \
namespace holds it: docs/language.md §8.1), and this deploy has no cluster";
            return Err((reason.into(), false));
        };
        let described = home.describe();
        let (bytes, namespace) = home.read_secret(name, key).map_err(|error| match error {
            SecretReadError::Home(reason) => {
                (format!("cannot reach the home cluster ({described}) to read it: {reason}"), true)
            }
            SecretReadError::NoSecret { namespace } => {
                let reason = format!(
                    "there is no Secret `{name}` in namespace `{namespace}` of the home cluster ({described}); \
create it with `kubectl -n {namespace} create secret generic {name} --from-file={key}=PATH`"
                );
                (reason, true)
            }
            SecretReadError::NoKey { namespace, keys } => {
                let keys = if keys.is_empty() { "none".to_string() } else { keys.join(", ") };
                (format!("the Secret `{namespace}/{name}` has no key `{key}` (its keys: {keys})"), false)
            }
            SecretReadError::Read { namespace, reason } => {
                let reason = format!(
                    "reading the Secret `{namespace}/{name}` on the home cluster ({described}): {reason} \
(whoever deploys needs `get` on it)"
                );
                (reason, true)
            }
        })?;
        String::from_utf8(bytes)
            .map_err(|_| (format!("the key `{key}` of the Secret `{namespace}/{name}` is not UTF-8 text"), false))
    }

    /// The values a tool receives: every secret read now (`base_dir` is the directory of the
    /// component's policy file). A secret that cannot be read is an error naming it.
    pub fn reveal(&self, values: &Json, base_dir: &Path) -> Result<Json, SecretError> {
        replace(values, &mut |secret| self.read(&secret, base_dir).map(Json::String))
    }

    /// A digest of the current values of the secrets in `values`, `None` when there are none. It
    /// is stored with a deployed unit instead of the secrets, so that rotating a secret plans an
    /// update. Each value is hashed together with its reference (`sha256:…`); when a secret cannot
    /// be read, the digest is `unreadable:REFERENCE`, which differs from every stored one, so the
    /// update is planned and applying it fails with the reason.
    pub fn digest(&self, values: &Json, base_dir: &Path) -> Option<String> {
        let found: BTreeMap<SecretRef, Result<String, SecretError>> =
            references(values).into_iter().map(|secret| (secret.clone(), self.read(&secret, base_dir))).collect();
        if found.is_empty() {
            return None;
        }
        if let Some((secret, _)) = found.iter().find(|(_, read)| read.is_err()) {
            return Some(format!("unreadable:{secret}"));
        }
        let mut hasher = Sha256::new();
        hasher.update(b"aptc secrets 1\0");
        for (secret, read) in &found {
            for part in [secret.to_string().as_str(), read.as_deref().unwrap_or_default()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part.as_bytes());
            }
        }
        Some(aptc_core::digest::sha256_hex(&hasher.finalize()))
    }

    /// `text` (what a tool printed after it was given the revealed `values`, the unit's values
    /// with their markers) with every secret of `values` replaced by `***`, and every form of it
    /// a chart can compute and print that aptc can compute too: JSON-escaped, Base64 (standard
    /// and URL-safe, padded or not: `b64enc`), hexadecimal, and the part of a longer Base64 text
    /// that only the secret determines, at each of the three alignments it can have there (a
    /// secret inside `b64enc (printf "user:%s" .password)`). What a chart derives otherwise (a
    /// hash, a part of the secret, another encoding) is not recognised (docs/security.md). It
    /// takes the markers, not the revealed values, because only they say which strings are
    /// secrets; secrets that cannot be read are skipped (they reached no tool).
    pub fn scrub(&self, text: &str, values: &Json, base_dir: &Path) -> String {
        let secrets: Vec<String> = references(values).iter().filter_map(|s| self.read(s, base_dir).ok()).collect();
        scrub_values(text, &secrets)
    }

    /// A rendered template with every placeholder replaced by its secret, read now.
    pub fn reveal_text(&self, text: &str, base_dir: &Path) -> Result<String, SecretError> {
        replace_placeholders(text, &mut |secret| self.read(&secret, base_dir))
    }

    /// An object parsed from a rendered template with the placeholders in its strings replaced
    /// by the secrets, read now (a placeholder always lands inside a string scalar).
    pub fn reveal_in_strings(&self, value: Json, base_dir: &Path) -> Result<Json, SecretError> {
        Ok(match value {
            Json::String(text) => Json::String(self.reveal_text(&text, base_dir)?),
            Json::Array(items) => {
                Json::Array(items.into_iter().map(|v| self.reveal_in_strings(v, base_dir)).collect::<Result<_, _>>()?)
            }
            Json::Object(map) => Json::Object(
                map.into_iter()
                    .map(|(k, v)| Ok((k, self.reveal_in_strings(v, base_dir)?)))
                    .collect::<Result<_, SecretError>>()?,
            ),
            other => other,
        })
    }
}

/// A derived form shorter than this is not cut out: it would cut ordinary words.
const SHORTEST_FORM: usize = 4;

/// `text` with `secrets` and their encodings cut out ([`Secrets::scrub`]).
fn scrub_values(text: &str, secrets: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        forms.push(secret.clone());
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        forms.push(escaped.trim_matches('"').to_string());
        let bytes = secret.as_bytes();
        forms.push(hex(bytes, b"0123456789abcdef"));
        forms.push(hex(bytes, b"0123456789ABCDEF"));
        for alphabet in [BASE64, BASE64_URL] {
            let encoded = base64(bytes, alphabet);
            forms.push(encoded.trim_end_matches('=').to_string());
            forms.push(encoded);
            // Inside a longer text, preceded by 0, 1 or 2 bytes of a 3-byte group: the
            // characters that depend on the secret's bytes alone.
            for offset in 1..3usize {
                let mut shifted = vec![0u8; offset];
                shifted.extend_from_slice(bytes);
                let encoded = base64(&shifted, alphabet);
                let core = encoded.trim_end_matches('=');
                let lead = [0, 2, 3][offset];
                let trail = usize::from(!(offset + bytes.len()).is_multiple_of(3));
                if core.len() > lead + trail {
                    forms.push(core[lead..core.len() - trail].to_string());
                }
            }
            let core = encoded_core(bytes, alphabet);
            forms.push(core);
        }
    }
    forms.retain(|form| form.len() >= SHORTEST_FORM || secrets.iter().any(|s| s == form));
    forms.sort();
    forms.dedup();
    // Longest first, so that a secret inside another is not left half-visible.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.into_iter().fold(text.to_string(), |text, form| text.replace(&form, REDACTED))
}

/// The Base64 of `bytes` at a group boundary, without its last characters that the bytes after
/// it would change (when the secret does not end a 3-byte group).
fn encoded_core(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let encoded = base64(bytes, alphabet);
    let core = encoded.trim_end_matches('=');
    let trail = usize::from(!bytes.len().is_multiple_of(3));
    core[..core.len().saturating_sub(trail)].to_string()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding in `alphabet` (RFC 4648).
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex(bytes: &[u8], digits: &[u8; 16]) -> String {
    bytes.iter().flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]]).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use aptc_core::secret::{placeholder, redact, redact_text};
    use serde_json::json;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + Send + Sync + 'static {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v))
    }

    fn values() -> Json {
        json!({
            "replicas": 2,
            "auth": { "password": { "$secret": { "env": "DB_PASSWORD" } } },
            "keys": [{ "$secret": { "file": "tls.key" } }, "plain"],
        })
    }

    #[test]
    fn markers_come_from_the_resolver_and_are_recognised() {
        let secret = SecretRef::Env("X".into());
        let json = secret.marker().to_json();
        assert_eq!(json, json!({ "$secret": { "env": "X" } }));
        assert_eq!(SecretRef::from_json(&json), Some(secret));
        assert_eq!(SecretRef::from_json(&json!({ "$secret": { "vault": "X" } })), None);
        assert_eq!(SecretRef::from_json(&json!({ "$secret": { "env": "X" }, "other": 1 })), None);
    }

    #[test]
    fn reveal_reads_the_environment_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.key"), "-----KEY-----\n").unwrap();
        let revealed =
            Secrets::local().with_env(env_of(&[("DB_PASSWORD", "hunter2")])).reveal(&values(), dir.path()).unwrap();
        assert_eq!(
            revealed,
            json!({ "replicas": 2, "auth": { "password": "hunter2" }, "keys": ["-----KEY-----", "plain"] }),
            "one trailing newline of a file is dropped"
        );
        let error = Secrets::local().with_env(env_of(&[])).reveal(&values(), dir.path()).unwrap_err();
        assert_eq!(error.to_string(), "secret secret_env(\"DB_PASSWORD\"): the environment variable is not set");
        let missing = tempfile::tempdir().unwrap();
        let error =
            Secrets::local().with_env(env_of(&[("DB_PASSWORD", "x")])).reveal(&values(), missing.path()).unwrap_err();
        assert_eq!(error.secret, SecretRef::File("tls.key".into()));
        assert!(error.to_string().contains("cannot read"), "{error}");
    }

    #[test]
    fn the_real_environment_is_read() {
        // PATH is set wherever tests run; nothing here sets variables (tests run in parallel).
        let path = std::env::var("PATH").unwrap();
        let revealed =
            Secrets::local().reveal(&json!({ "p": { "$secret": { "env": "PATH" } } }), Path::new(".")).unwrap();
        assert_eq!(revealed, json!({ "p": path }));
    }

    #[test]
    fn redact_hides_every_secret_and_keeps_the_rest() {
        assert_eq!(
            redact(&values()),
            json!({ "replicas": 2, "auth": { "password": "***" }, "keys": ["***", "plain"] })
        );
    }

    #[test]
    fn the_digest_changes_with_a_secret_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.key"), "key").unwrap();
        let digest_of = |password: &str| {
            Secrets::local().with_env(env_of(&[("DB_PASSWORD", password)])).digest(&values(), dir.path())
        };
        let first = digest_of("one").unwrap();
        assert!(first.starts_with("sha256:") && !first.contains("one"), "{first}");
        assert_eq!(digest_of("one").unwrap(), first, "stable");
        assert_ne!(digest_of("two").unwrap(), first, "a rotated secret is a change");
        std::fs::write(dir.path().join("tls.key"), "new key").unwrap();
        assert_ne!(digest_of("one").unwrap(), first, "a rewritten file is a change");
        assert_eq!(Secrets::local().with_env(env_of(&[])).digest(&json!({ "a": 1 }), dir.path()), None);
        assert_eq!(
            Secrets::local().with_env(env_of(&[])).digest(&values(), dir.path()).unwrap(),
            "unreadable:secret_env(\"DB_PASSWORD\")"
        );
    }

    #[test]
    fn scrub_cuts_revealed_secrets_out_of_messages() {
        let values = json!({
            "a": { "$secret": { "env": "A" } },
            "b": { "$secret": { "env": "B" } },
            "gone": { "$secret": { "env": "UNSET" } },
            "plain": "bad",
        });
        let secrets = Secrets::local().with_env(env_of(&[("A", "s3cr\"et"), ("B", "s3cr")]));
        assert_eq!(
            secrets.scrub("Error: bad value s3cr\"et, escaped \"s3cr\\\"et\", and s3cr", &values, Path::new(".")),
            "Error: bad value ***, escaped \"***\", and ***",
            "only secrets, the longest first; a plain value stays"
        );
    }

    #[test]
    fn scrub_cuts_encoded_secrets_out_of_messages() {
        let values = json!({ "password": { "$secret": { "env": "P" } } });
        let secret = "correct horse battery staple!";
        let pairs = [("P", secret)];
        let secrets = Secrets::local().with_env(env_of(&pairs));
        let scrub = |text: &str| secrets.scrub(text, &values, Path::new("."));
        let bytes = secret.as_bytes();
        let std = base64(bytes, BASE64);
        assert_eq!(std, "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZSE=", "RFC 4648 Base64");
        let url = base64(&[0xfb, 0xff], BASE64_URL);
        assert_eq!(url, "-_8=");
        let core_url = encoded_core(bytes, BASE64_URL);
        for (shown, gone, why) in [
            (std.clone(), std.clone(), "b64enc"),
            (std.trim_end_matches('=').to_string(), std[..30].to_string(), "unpadded"),
            (base64(b"\xfb\xff correct horse battery staple!", BASE64_URL), core_url, "url-safe, in a longer text"),
            (hex(bytes, b"0123456789abcdef"), hex(bytes, b"0123456789abcdef"), "hex"),
            (hex(bytes, b"0123456789ABCDEF"), hex(bytes, b"0123456789ABCDEF"), "HEX"),
        ] {
            let message = format!("Error: secret \"db\" is invalid: data[x]: {shown}: not allowed");
            let scrubbed = scrub(&message);
            assert!(scrubbed.contains("***") && scrubbed.starts_with("Error: secret \"db\""), "{why}: {scrubbed}");
            assert!(!scrubbed.contains(&gone), "{why}: {scrubbed}");
        }
        // Inside a longer Base64 text, at each alignment: `b64enc (printf "%s:%s" user password)`.
        for prefix in ["", "a:", "ab:", "abc:"] {
            let blob = base64(format!("{prefix}{secret}\n").as_bytes(), BASE64);
            let scrubbed = scrub(&format!("Error: config {blob} rejected"));
            assert!(scrubbed.contains("***"), "{prefix:?}: {scrubbed}");
            // What is left of the blob is at most a group's worth on each side of the secret.
            let left: usize = scrubbed
                .split("***")
                .map(|part| part.trim_start_matches("Error: config ").trim_end_matches(" rejected").len())
                .sum();
            assert!(left <= 12, "{prefix:?}: {scrubbed}");
        }
        assert_eq!(scrub("Error: nothing secret here, not even YWJj"), "Error: nothing secret here, not even YWJj");
    }

    #[test]
    fn placeholders_round_trip() {
        let env = SecretRef::Env("DB_PASSWORD".into());
        let file = SecretRef::File("odd@@dir/100%.txt".into());
        assert_eq!(placeholder(&env), "@@aptc-secret:env:DB_PASSWORD@@");
        let text = format!("password: {}\nkey: {}\nmail: a@@b\n", placeholder(&env), placeholder(&file));
        assert_eq!(redact_text(&text), "password: ***\nkey: ***\nmail: a@@b\n");
        let mut seen = Vec::new();
        let shown = replace_placeholders(&text, &mut |secret| {
            seen.push(secret.clone());
            Ok::<_, std::convert::Infallible>(secret.to_string())
        })
        .unwrap();
        assert_eq!(seen, [env, file]);
        assert_eq!(
            shown,
            "password: secret_env(\"DB_PASSWORD\")\nkey: secret_file(\"odd@@dir/100%.txt\")\nmail: a@@b\n"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.txt"), "key\n").unwrap();
        let k = placeholder(&SecretRef::File("k.txt".into()));
        assert_eq!(Secrets::local().reveal_text(&format!("k: {k}"), dir.path()).unwrap(), "k: key");
        assert!(Secrets::local().reveal_text(&format!("k: {k}"), Path::new("/nonexistent")).is_err());
        assert_eq!(redact_text("@@aptc-secret:unfinished"), "@@aptc-secret:unfinished");
    }

    /// A home served by the API-server double, with the Secret `db` holding `password` and a
    /// key that is not UTF-8, in `aptc-system`.
    fn kube_home() -> (aptc_kube_fake::FakeApi, tempfile::TempDir, Home) {
        let fake = aptc_kube_fake::FakeApi::new();
        let bytes = |b: &[u8]| serde_json::to_value(k8s_openapi::ByteString(b.to_vec())).unwrap();
        fake.insert(
            "/api/v1/namespaces/aptc-system/secrets/db",
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "db", "namespace": "aptc-system" },
                "data": { "password": bytes(b"k8s-pass-77\n"), "binary": bytes(&[0xff, 0xfe]) }
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("home");
        fake.serve_to(&kubeconfig, "control").unwrap();
        (fake, dir, Home { kubeconfig: Some(kubeconfig), context: None, namespace: Some("aptc-system".into()) })
    }

    fn k8s(name: &str, key: &str) -> Json {
        SecretRef::Kube { name: name.into(), key: key.into() }.marker().to_json()
    }

    #[test]
    fn a_kubernetes_secret_is_read_from_the_home_once_per_reader_and_scrubbed() {
        let (fake, _dir, home) = kube_home();
        let secrets = Secrets::new(home.clone());
        let values = json!({ "a": k8s("db", "password"), "b": [k8s("db", "password")] });
        let revealed = secrets.reveal(&values, Path::new(".")).unwrap();
        assert_eq!(revealed, json!({ "a": "k8s-pass-77\n", "b": ["k8s-pass-77\n"] }), "the key's bytes, as they are");
        let digest = secrets.digest(&values, Path::new(".")).unwrap();
        assert!(digest.starts_with("sha256:"), "{digest}");
        let text = placeholder(&SecretRef::Kube { name: "db".into(), key: "password".into() });
        assert_eq!(secrets.reveal_text(&format!("p: {text}"), Path::new(".")).unwrap(), "p: k8s-pass-77\n");
        let gets = fake.paths_of("GET").iter().filter(|p| p.ends_with("/secrets/db")).count();
        assert_eq!(gets, 1, "one read per key and reader");
        // What Helm says about the value (plain or Base64) is cut out.
        let encoded = base64(b"k8s-pass-77\n", BASE64);
        let message = format!("Error: bad password k8s-pass-77\n in {encoded}");
        let scrubbed = secrets.scrub(&message, &values, Path::new("."));
        assert!(!scrubbed.contains("k8s-pass-77") && !scrubbed.contains(&encoded), "{scrubbed}");
        // A new reader reads again: a rotated Secret is a change.
        fake.edit("/api/v1/namespaces/aptc-system/secrets/db", |o| {
            o["data"]["password"] = serde_json::to_value(k8s_openapi::ByteString(b"rotated".to_vec())).unwrap();
        });
        assert_ne!(Secrets::new(home).digest(&values, Path::new(".")).unwrap(), digest);
    }

    #[test]
    fn a_kubernetes_secret_that_cannot_be_read_fails_naming_the_reference() {
        let (fake, _dir, home) = kube_home();
        let secrets = Secrets::new(home);
        let error = |name: &str, key: &str| secrets.reveal(&k8s(name, key), Path::new(".")).unwrap_err().to_string();
        let absent = error("absent", "password");
        assert!(
            absent.starts_with(
                r#"secret secret_k8s("absent", "password"): there is no Secret `absent` in namespace `aptc-system`"#
            ),
            "{absent}"
        );
        assert!(
            error("db", "nope").contains("the Secret `aptc-system/db` has no key `nope` (its keys: binary, password)")
        );
        assert!(error("db", "binary").contains("is not UTF-8 text"));
        let requests = fake.requests().len();
        assert!(error("../db", "password").contains("names no possible Secret key"));
        assert_eq!(fake.requests().len(), requests, "a name that cannot be a Secret's is not asked for");
        let local = Secrets::local().reveal(&k8s("db", "password"), Path::new(".")).unwrap_err().to_string();
        assert!(local.contains("this deploy has no cluster"), "{local}");
        assert_eq!(
            Secrets::local().digest(&k8s("db", "password"), Path::new(".")).unwrap(),
            r#"unreadable:secret_k8s("db", "password")"#
        );
        let unreachable = Home { kubeconfig: Some("/nowhere/config".into()), context: None, namespace: None };
        let message = Secrets::new(unreachable).reveal(&k8s("db", "password"), Path::new(".")).unwrap_err().to_string();
        assert!(message.contains("cannot reach the home cluster") && message.contains("/nowhere/config"), "{message}");
    }
}
