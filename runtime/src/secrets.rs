//! Secrets (docs/language.md §5.5, §12): `secret_env(NAME)` and `secret_file(PATH)` resolve to a
//! *marker*, `{"$secret": {"env": "NAME"}}` or `{"$secret": {"file": "PATH"}}`, a reference that
//! the desired state, plans and the revision store carry instead of the secret. This module owns
//! everything about markers:
//!
//! - [`reveal`]: the values with every marker replaced by the secret, read from the environment
//!   or a file at that moment; only a driver calls it, right before handing values to a tool;
//! - [`redact`]: markers replaced by `***`, for everything shown or written for people (plans,
//!   diffs, rendered output);
//! - [`digest`]: a digest over the secrets' values, so that a rotated secret is a change to deploy
//!   although no secret is stored;
//! - [`scrub`]: revealed secrets cut out of a text a tool wrote (an error message of Helm);
//! - [`placeholder`], [`reveal_text`], [`redact_text`]: the same for textual templates, where a
//!   secret stands as `@@aptc-secret:env:NAME@@` until it is revealed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use aptc_core::secret::{REDACTED, SecretRef, references, replace, replace_placeholders};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The secret's value now: the variable from `env`, or the file (relative to `base_dir`)
/// without one trailing newline.
fn read(secret: &SecretRef, base_dir: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> Result<String, SecretError> {
    match secret {
        SecretRef::Env(name) => {
            // The standard library may panic on such names: they are never set.
            let valid = !name.is_empty() && !name.contains(['=', '\0']);
            let value = valid.then(|| env(name)).flatten().ok_or_else(|| SecretError {
                secret: secret.clone(),
                reason: "the environment variable is not set".into(),
            })?;
            value.into_string().map_err(|_| SecretError {
                secret: secret.clone(),
                reason: "the environment variable is not valid UTF-8".into(),
            })
        }
        SecretRef::File(path) => {
            let full = base_dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| SecretError {
                secret: secret.clone(),
                reason: format!("cannot read {}: {e}", full.display()),
            })?;
            let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            Ok(text.to_string())
        }
    }
}

/// A secret that cannot be read when an instance is applied.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("secret {secret}: {reason}")]
pub struct SecretError {
    pub secret: SecretRef,
    pub reason: String,
}

/// The process's environment, where `secret_env` reads.
fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// The values a tool receives: every secret read now (`base_dir` is the directory of the
/// component's policy file). A secret that cannot be read is an error naming it.
pub fn reveal(values: &Json, base_dir: &Path) -> Result<Json, SecretError> {
    reveal_with(values, base_dir, &process_env)
}

fn reveal_with(values: &Json, base_dir: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Json, SecretError> {
    replace(values, &mut |secret| read(&secret, base_dir, env).map(Json::String))
}

/// A digest of the current values of the secrets in `values`, `None` when there are none. It is
/// stored with a deployed unit instead of the secrets, so that rotating a secret plans an update.
/// Each value is hashed together with its reference (`sha256:…`); when a secret cannot be read,
/// the digest is `unreadable:REFERENCE`, which differs from every stored one, so the update is
/// planned and applying it fails with the reason.
pub fn digest(values: &Json, base_dir: &Path) -> Option<String> {
    digest_with(values, base_dir, &process_env)
}

fn digest_with(values: &Json, base_dir: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> Option<String> {
    let found: BTreeMap<SecretRef, Result<String, SecretError>> =
        references(values).into_iter().map(|secret| (secret.clone(), read(&secret, base_dir, env))).collect();
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

/// `text` (what a tool printed after it was given the revealed `values`, the unit's values with
/// their markers) with every secret of `values` replaced by `***`, also where it appears
/// JSON-escaped. It takes the markers, not the revealed values, because only they say which
/// strings are secrets; secrets that cannot be read are skipped (they reached no tool).
pub fn scrub(text: &str, values: &Json, base_dir: &Path) -> String {
    scrub_with(text, values, base_dir, &process_env)
}

fn scrub_with(text: &str, values: &Json, base_dir: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> String {
    let secrets: Vec<String> = references(values).iter().filter_map(|s| read(s, base_dir, env).ok()).collect();
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        forms.push(secret.clone());
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if escaped != secret {
            forms.push(escaped.to_string());
        }
    }
    // Longest first, so that a secret inside another is not left half-visible.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.into_iter().fold(text.to_string(), |text, form| text.replace(&form, REDACTED))
}

/// A rendered template with every placeholder replaced by its secret, read now.
pub fn reveal_text(text: &str, base_dir: &Path) -> Result<String, SecretError> {
    replace_placeholders(text, &mut |secret| read(&secret, base_dir, &process_env))
}

/// An object parsed from a rendered template with the placeholders in its strings replaced by
/// the secrets, read now (a placeholder always lands inside a string scalar).
pub fn reveal_in_strings(value: Json, base_dir: &Path) -> Result<Json, SecretError> {
    Ok(match value {
        Json::String(text) => Json::String(reveal_text(&text, base_dir)?),
        Json::Array(items) => {
            Json::Array(items.into_iter().map(|v| reveal_in_strings(v, base_dir)).collect::<Result<_, _>>()?)
        }
        Json::Object(map) => Json::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, reveal_in_strings(v, base_dir)?)))
                .collect::<Result<_, SecretError>>()?,
        ),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use aptc_core::secret::{placeholder, redact, redact_text};
    use serde_json::json;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
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
        let revealed = reveal_with(&values(), dir.path(), &env_of(&[("DB_PASSWORD", "hunter2")])).unwrap();
        assert_eq!(
            revealed,
            json!({ "replicas": 2, "auth": { "password": "hunter2" }, "keys": ["-----KEY-----", "plain"] }),
            "one trailing newline of a file is dropped"
        );
        let error = reveal_with(&values(), dir.path(), &env_of(&[])).unwrap_err();
        assert_eq!(error.to_string(), "secret secret_env(\"DB_PASSWORD\"): the environment variable is not set");
        let missing = tempfile::tempdir().unwrap();
        let error = reveal_with(&values(), missing.path(), &env_of(&[("DB_PASSWORD", "x")])).unwrap_err();
        assert_eq!(error.secret, SecretRef::File("tls.key".into()));
        assert!(error.to_string().contains("cannot read"), "{error}");
    }

    #[test]
    fn the_real_environment_is_read() {
        // PATH is set wherever tests run; nothing here sets variables (tests run in parallel).
        let path = std::env::var("PATH").unwrap();
        let revealed = reveal(&json!({ "p": { "$secret": { "env": "PATH" } } }), Path::new(".")).unwrap();
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
        let digest_of = |password: &str| digest_with(&values(), dir.path(), &env_of(&[("DB_PASSWORD", password)]));
        let first = digest_of("one").unwrap();
        assert!(first.starts_with("sha256:") && !first.contains("one"), "{first}");
        assert_eq!(digest_of("one").unwrap(), first, "stable");
        assert_ne!(digest_of("two").unwrap(), first, "a rotated secret is a change");
        std::fs::write(dir.path().join("tls.key"), "new key").unwrap();
        assert_ne!(digest_of("one").unwrap(), first, "a rewritten file is a change");
        assert_eq!(digest_with(&json!({ "a": 1 }), dir.path(), &env_of(&[])), None);
        assert_eq!(digest_with(&values(), dir.path(), &env_of(&[])).unwrap(), "unreadable:secret_env(\"DB_PASSWORD\")");
    }

    #[test]
    fn scrub_cuts_revealed_secrets_out_of_messages() {
        let values = json!({
            "a": { "$secret": { "env": "A" } },
            "b": { "$secret": { "env": "B" } },
            "gone": { "$secret": { "env": "UNSET" } },
            "plain": "bad",
        });
        let env = env_of(&[("A", "s3cr\"et"), ("B", "s3cr")]);
        assert_eq!(
            scrub_with("Error: bad value s3cr\"et, escaped \"s3cr\\\"et\", and s3cr", &values, Path::new("."), &env),
            "Error: bad value ***, escaped \"***\", and ***",
            "only secrets, the longest first; a plain value stays"
        );
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
        assert_eq!(reveal_text(&format!("k: {k}"), dir.path()).unwrap(), "k: key");
        assert!(reveal_text(&format!("k: {k}"), Path::new("/nonexistent")).is_err());
        assert_eq!(redact_text("@@aptc-secret:unfinished"), "@@aptc-secret:unfinished");
    }
}
