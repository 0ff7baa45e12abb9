//! Content digests, written as `sha256:` and the lowercase hex digits: how the store, plans and
//! diffs tell two contents apart without keeping them.

use sha2::{Digest, Sha256};

/// `sha256:` and the lowercase hex digits of a finished digest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(bytes))
}

/// SHA-256 of some text, as `sha256:…`.
pub fn sha256(text: &str) -> String {
    sha256_hex(&Sha256::digest(text.as_bytes()))
}
