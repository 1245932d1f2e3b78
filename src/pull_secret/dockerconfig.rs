//! The `.dockerconfigjson` document of a `kubernetes.io/dockerconfigjson` Secret, merged
//! without touching what is not ours: every other registry's entry and every other top-level
//! key keep their exact bytes and their order (they are carried as raw JSON, never re-parsed
//! into values and re-serialised), only the entries for the registries being written change.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level key holding per-registry entries.
const AUTHS: &str = "auths";

/// A JSON object as `(key, raw value)` pairs in document order.
struct Ordered(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Ordered;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

impl Ordered {
    /// Replaces the value under `key` in place, or appends it.
    fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// `{"key":raw,…}`: keys re-encoded, values exactly as read.
    fn to_json(&self) -> String {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(key, value)| format!("{}:{}", serde_json::to_string(key).expect("strings serialise"), value.get()))
            .collect();
        format!("{{{}}}", entries.join(","))
    }
}

/// Where a parse failed, without serde's message: it quotes the offending value, which may
/// be a credential.
fn location(error: &serde_json::Error) -> String {
    format!("line {}, column {}", error.line(), error.column())
}

fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).expect("ocync builds valid JSON")
}

/// The entry for one registry: `{"auth": base64(username:password)}`, what kubelet, CRI-O,
/// podman and docker all read.
pub fn entry(username: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    serde_json::json!({ "auth": auth }).to_string()
}

/// `existing` (absent or empty for a new Secret) with `fresh` `(registry host, entry JSON)`
/// written under `auths`; everything else stays as it was, byte for byte.
pub fn merge(existing: Option<&[u8]>, fresh: &[(String, String)]) -> Result<String, String> {
    let mut document = match existing.filter(|bytes| !bytes.iter().all(u8::is_ascii_whitespace)) {
        None => Ordered(Vec::new()),
        Some(bytes) => serde_json::from_slice::<Ordered>(bytes)
            .map_err(|e| format!(".dockerconfigjson is not a JSON object ({})", location(&e)))?,
    };
    let mut auths = match document.0.iter().find(|(key, _)| key == AUTHS) {
        Some((_, value)) => serde_json::from_str::<Ordered>(value.get())
            .map_err(|e| format!(".dockerconfigjson `auths` is not a JSON object ({})", location(&e)))?,
        None => Ordered(Vec::new()),
    };
    for (host, entry) in fresh {
        auths.set(host, raw(entry.clone()));
    }
    document.set(AUTHS, raw(auths.to_json()));
    Ok(document.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Vec<(String, String)> {
        vec![("1.dkr.ecr.us-east-1.amazonaws.com".into(), entry("AWS", "token"))]
    }

    #[test]
    fn a_new_document_holds_only_the_fresh_entries() {
        let merged = merge(None, &fresh()).unwrap();
        assert_eq!(merged, r#"{"auths":{"1.dkr.ecr.us-east-1.amazonaws.com":{"auth":"QVdTOnRva2Vu"}}}"#);
        assert_eq!(merge(Some(b"  "), &fresh()).unwrap(), merged);
    }

    #[test]
    fn other_entries_and_keys_keep_their_bytes_and_order() {
        let quay = r#"{ "auth" : "cXVheTpzZWNyZXQ=",  "email":"ops@example.com" }"#;
        let redhat = "{\"auth\":\"cmg6eA==\",\n \"email\": \"\\u00e9t\u{e9}\"}";
        let existing = format!(
            r#"{{ "auths": {{ "quay.io": {quay}, "1.dkr.ecr.us-east-1.amazonaws.com": {{"auth":"b2xk"}}, "registry.redhat.io":{redhat} }}, "credsStore" : "desktop" }}"#
        );
        let merged = merge(Some(existing.as_bytes()), &fresh()).unwrap();
        assert_eq!(
            merged,
            format!(
                r#"{{"auths":{{"quay.io":{quay},"1.dkr.ecr.us-east-1.amazonaws.com":{{"auth":"QVdTOnRva2Vu"}},"registry.redhat.io":{redhat}}},"credsStore":"desktop"}}"#
            )
        );
    }

    #[test]
    fn a_new_registry_is_appended_and_a_missing_auths_added() {
        let merged = merge(Some(br#"{"auths":{"a.io":{"auth":"YQ=="}}}"#), &fresh()).unwrap();
        assert!(merged.starts_with(r#"{"auths":{"a.io":{"auth":"YQ=="},"1.dkr"#), "{merged}");
        let merged = merge(Some(br#"{"HttpHeaders":{"X":"y"}}"#), &fresh()).unwrap();
        assert!(merged.starts_with(r#"{"HttpHeaders":{"X":"y"},"auths":{"1.dkr"#), "{merged}");
    }

    #[test]
    fn malformed_documents_are_refused_without_echoing_them() {
        let error = merge(Some(b"[\"secret-value\"]"), &fresh()).unwrap_err();
        assert!(error.starts_with(".dockerconfigjson is not a JSON object"), "{error}");
        assert!(!error.contains("secret-value"), "{error}");
        let error = merge(Some(br#"{"auths":"secret-value"}"#), &fresh()).unwrap_err();
        assert!(error.contains("`auths` is not a JSON object") && !error.contains("secret-value"), "{error}");
    }
}
