//! Just enough of Kubernetes' protobuf encoding to read the Secrets and ConfigMaps that Helm's
//! release storage sends (client-go's typed clients send core kinds as protobuf): the `k8s\0`
//! envelope (`runtime.Unknown`), `ObjectMeta`'s plain fields, labels and annotations, and the
//! `data`/`stringData`/`type` of the object. Anything else is skipped.

use serde_json::{Map, Value, json};

/// The object in a protobuf request body, as the JSON the API server would store; `None` if it is
/// not one this module reads.
pub(crate) fn decode(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(b"k8s\0")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (field, value) in fields(envelope)? {
        match (field, value) {
            (1, Field::Bytes(type_meta)) => {
                for (field, value) in fields(type_meta)? {
                    match (field, value) {
                        (1, Field::Bytes(text)) => api_version = string(text),
                        (2, Field::Bytes(text)) => kind = string(text),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(bytes)) => raw = bytes,
            _ => {}
        }
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    for (field, value) in fields(raw)? {
        let Field::Bytes(bytes) = value else {
            if let (5, Field::Varint(n)) = (field, value) {
                object.insert("immutable".into(), json!(n != 0));
            }
            continue;
        };
        match field {
            1 => {
                object.insert("metadata".into(), metadata(bytes)?);
            }
            // Secret.data: bytes, which JSON carries as Base64; ConfigMap.data: strings.
            2 => {
                let (key, value) = entry(bytes)?;
                let value = if kind == "Secret" { json!(base64(value)) } else { json!(string(value)) };
                object.entry("data").or_insert_with(|| json!({}))[key] = value;
            }
            3 if kind == "Secret" => {
                object.insert("type".into(), json!(string(bytes)));
            }
            4 if kind == "Secret" => {
                let (key, value) = entry(bytes)?;
                object.entry("stringData").or_insert_with(|| json!({}))[key] = json!(string(value));
            }
            _ => {}
        }
    }
    Some(Value::Object(object))
}

fn metadata(bytes: &[u8]) -> Option<Value> {
    let mut metadata = Map::new();
    for (field, value) in fields(bytes)? {
        match (field, value) {
            (1, Field::Bytes(text)) => {
                metadata.insert("name".into(), json!(string(text)));
            }
            (2, Field::Bytes(text)) => {
                metadata.insert("generateName".into(), json!(string(text)));
            }
            (3, Field::Bytes(text)) => {
                metadata.insert("namespace".into(), json!(string(text)));
            }
            (5, Field::Bytes(text)) => {
                metadata.insert("uid".into(), json!(string(text)));
            }
            (6, Field::Bytes(text)) => {
                metadata.insert("resourceVersion".into(), json!(string(text)));
            }
            (11 | 12, Field::Bytes(pair)) => {
                let (key, value) = entry(pair)?;
                let map = if field == 11 { "labels" } else { "annotations" };
                metadata.entry(map).or_insert_with(|| json!({}))[key] = json!(string(value));
            }
            _ => {}
        }
    }
    Some(Value::Object(metadata))
}

/// A map entry: key (field 1) and value (field 2).
fn entry(bytes: &[u8]) -> Option<(String, &[u8])> {
    let (mut key, mut value) = (String::new(), &[][..]);
    for (field, item) in fields(bytes)? {
        match (field, item) {
            (1, Field::Bytes(text)) => key = string(text),
            (2, Field::Bytes(bytes)) => value = bytes,
            _ => {}
        }
    }
    Some((key, value))
}

#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a message, in order.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut bytes)?),
            1 => {
                bytes = bytes.get(8..)?;
                Field::Fixed
            }
            2 => {
                let length = usize::try_from(varint(&mut bytes)?).ok()?;
                let (value, rest) = (bytes.get(..length)?, bytes.get(length..)?);
                bytes = rest;
                Field::Bytes(value)
            }
            5 => {
                bytes = bytes.get(4..)?;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Standard Base64 with padding, as JSON carries `[]byte`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            out.push(if i <= chunk.len() { char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]) } else { '=' });
        }
    }
    out
}
