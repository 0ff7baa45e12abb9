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
/// their markers) with every secret of `values` replaced by `***`, and every form of it a chart
/// can compute and print that aptc can compute too: JSON-escaped, Base64 (standard and URL-safe,
/// padded or not: `b64enc`), hexadecimal, and the part of a longer Base64 text that only the
/// secret determines, at each of the three alignments it can have there (a secret inside
/// `b64enc (printf "user:%s" .password)`). What a chart derives otherwise (a hash, a part of
/// the secret, another encoding) is not recognised (docs/security.md). It takes the markers,
/// not the revealed values, because only they say which strings are secrets; secrets that
/// cannot be read are skipped (they reached no tool).
pub fn scrub(text: &str, values: &Json, base_dir: &Path) -> String {
    scrub_with(text, values, base_dir, &process_env)
}

/// A derived form shorter than this is not cut out: it would cut ordinary words.
const SHORTEST_FORM: usize = 4;

fn scrub_with(text: &str, values: &Json, base_dir: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> String {
    let secrets: Vec<String> = references(values).iter().filter_map(|s| read(s, base_dir, env).ok()).collect();
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
    fn scrub_cuts_encoded_secrets_out_of_messages() {
        let values = json!({ "password": { "$secret": { "env": "P" } } });
        let secret = "correct horse battery staple!";
        let pairs = [("P", secret)];
        let env = env_of(&pairs);
        let scrub = |text: &str| scrub_with(text, &values, Path::new("."), &env);
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
        assert_eq!(reveal_text(&format!("k: {k}"), dir.path()).unwrap(), "k: key");
        assert!(reveal_text(&format!("k: {k}"), Path::new("/nonexistent")).is_err());
        assert_eq!(redact_text("@@aptc-secret:unfinished"), "@@aptc-secret:unfinished");
    }
}
