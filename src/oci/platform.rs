//! Platform selection: `linux/amd64`, `linux/arm64/v8` matched against the children of an
//! index, and the index rebuilt with only the matching children (plus the buildx attestation
//! manifests that refer to them). The rebuilt bytes depend only on the source bytes and the
//! selection, so the same input always gives the same digest.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde_json::Value;

use super::{Digest, Manifest, splice};

/// buildx marks its attestation manifests in an index with these annotations.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    /// `linux`, `windows`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// `v8`, `v7`; `None` matches any variant.
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, architecture] | [os, architecture, _] if parts.iter().all(valid) => Ok(Platform {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
            }),
            _ => Err(format!("invalid platform {text:?}, expected os/architecture[/variant] such as linux/arm64/v8")),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

impl Platform {
    /// Whether an index entry's `platform` object is this platform. An entry without a
    /// variant matches a wanted `arm64/v8`, since `v8` is arm64's only variant in practice.
    fn matches(&self, platform: &Value) -> bool {
        let field = |name: &str| platform.get(name).and_then(Value::as_str);
        if field("os") != Some(&self.os) || field("architecture") != Some(&self.architecture) {
            return false;
        }
        match (&self.variant, field("variant")) {
            (None, _) => true,
            (Some(wanted), Some(variant)) => wanted == variant,
            (Some(wanted), None) => self.architecture == "arm64" && wanted == "v8",
        }
    }
}

/// An index narrowed to some platforms.
#[derive(Debug, Clone)]
pub struct Narrowed {
    /// The rebuilt index.
    pub index: Manifest,
    /// How many entries it kept, attestation manifests included.
    pub kept: usize,
}

/// Rebuilds `index` with the children for `wanted` and the attestation manifests that refer
/// to them; every other byte stays as it was (field order and layout included), and when
/// every entry is kept the index is returned unchanged. The error says what the index offers.
pub fn narrow(index: &Manifest, wanted: &[Platform]) -> Result<Narrowed, String> {
    let malformed = |e: serde_json::Error| format!("malformed index: {e}");
    let value: Value = serde_json::from_slice(&index.bytes).map_err(malformed)?;
    let entries = value.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
    let platform_of = |entry: &Value| entry.get("platform").cloned().unwrap_or(Value::Null);
    let annotation = |entry: &Value, key: &str| {
        entry.get("annotations").and_then(|a| a.get(key)).and_then(Value::as_str).map(str::to_string)
    };
    let is_attestation = |entry: &Value| annotation(entry, REFERENCE_TYPE).as_deref() == Some(ATTESTATION_MANIFEST);
    let chosen: Vec<String> = entries
        .iter()
        .filter(|e| !is_attestation(e) && wanted.iter().any(|p| p.matches(&platform_of(e))))
        .filter_map(|e| e.get("digest").and_then(Value::as_str).map(str::to_string))
        .collect();
    if chosen.is_empty() {
        let offered: Vec<String> = entries
            .iter()
            .filter(|e| !is_attestation(e))
            .map(|e| {
                let p = platform_of(e);
                let part = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                let variant = p.get("variant").and_then(Value::as_str).map(|v| format!("/{v}")).unwrap_or_default();
                format!("{}/{}{variant}", part("os"), part("architecture"))
            })
            .collect();
        let wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
        return Err(format!(
            "no child of index {} matches platforms [{}]; it has [{}]",
            index.digest,
            wanted.join(", "),
            offered.join(", ")
        ));
    }
    let keep = |e: &Value| {
        let digest = e.get("digest").and_then(Value::as_str).unwrap_or_default();
        chosen.iter().any(|c| c == digest)
            || (is_attestation(e) && annotation(e, REFERENCE_DIGEST).is_some_and(|d| chosen.contains(&d)))
    };
    let count = entries.iter().filter(|e| keep(e)).count();
    if count == entries.len() {
        return Ok(Narrowed { index: index.clone(), kept: count });
    }
    let rewritten = splice::rewrite_entries(&index.bytes, |raw| {
        raw.iter().zip(&entries).filter(|(_, e)| keep(e)).map(|(r, _)| r.to_string()).collect()
    })
    .map_err(malformed)?
    .ok_or_else(|| "malformed index: no manifests list".to_string())?;
    let bytes = Bytes::from(rewritten);
    let index = Manifest { digest: Digest::sha256_of(&bytes), bytes, media_type: index.media_type.clone() };
    Ok(Narrowed { index, kept: count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::ManifestKind;
    use crate::testing::testdata::{self, Built};

    const SEVEN: [(&str, &str); 7] = testdata::SEVEN_PLATFORMS;

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn platforms_parse_with_an_optional_variant_and_reject_the_rest() {
        assert_eq!("linux/arm64/v8".parse::<Platform>().unwrap().variant.as_deref(), Some("v8"));
        assert_eq!("linux/amd64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn narrowing_keeps_the_chosen_children_in_order_and_is_deterministic() {
        let Built::Index { index, children } = testdata::index(1, &[], &SEVEN, false) else { unreachable!() };
        let first = narrow(&index, &platforms(&["linux/arm64/v8", "linux/amd64"])).unwrap();
        let again = narrow(&index, &platforms(&["linux/arm64/v8", "linux/amd64"])).unwrap();
        assert_eq!(first.index.digest, again.index.digest);
        assert_ne!(first.index.digest, index.digest);
        let ManifestKind::Index { children: kept } = first.index.kind().unwrap() else { panic!("not an index") };
        let expected: Vec<&Digest> = children[..2].iter().map(|c| &c.manifest.digest).collect();
        assert_eq!(kept.iter().map(|c| &c.digest).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn an_index_whose_every_child_matches_is_kept_as_served() {
        let Built::Index { index, .. } = testdata::buildx_index(4, &SEVEN[..2]) else { unreachable!() };
        let narrowed = narrow(&index, &platforms(&["linux/amd64", "linux/arm64"])).unwrap();
        assert_eq!((narrowed.index.digest, narrowed.index.bytes), (index.digest, index.bytes));
    }

    #[test]
    fn a_rebuilt_index_keeps_every_byte_outside_its_list_and_each_kept_entry() {
        let served = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
  {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:aa","platform":{"os":"linux","architecture":"amd64"}},
  {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":2,"digest":"sha256:bb","platform":{"architecture":"arm64","os":"linux"}}
],"annotations":{"z":"1","a":"2"}}"#;
        let index = Manifest::from_served(Bytes::from_static(served), None, None).unwrap();
        let narrowed = narrow(&index, &platforms(&["linux/arm64"])).unwrap();
        let expected = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
  {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":2,"digest":"sha256:bb","platform":{"architecture":"arm64","os":"linux"}}
],"annotations":{"z":"1","a":"2"}}"#;
        assert_eq!(String::from_utf8_lossy(&narrowed.index.bytes), String::from_utf8_lossy(expected));
    }

    #[test]
    fn buildx_attestations_of_kept_children_stay_and_others_go() {
        let Built::Index { index, children } = testdata::buildx_index(2, &SEVEN[..3]) else { unreachable!() };
        let narrowed = narrow(&index, &platforms(&["linux/arm64"])).unwrap();
        assert_eq!(narrowed.kept, 2, "the arm64 image and its attestation manifest");
        let ManifestKind::Index { children: kept } = narrowed.index.kind().unwrap() else { panic!("not an index") };
        let attestation = children.iter().find(|c| c.manifest.bytes.windows(8).any(|w| w == b"in-toto+")).unwrap();
        assert!(kept.iter().any(|k| k.digest == children[1].manifest.digest));
        assert!(!kept.iter().any(|k| k.digest == attestation.manifest.digest), "that one is amd64's");
    }

    #[test]
    fn no_match_names_what_the_index_offers() {
        let Built::Index { index, .. } = testdata::index(3, &[], &SEVEN[..2], false) else { unreachable!() };
        let error = narrow(&index, &platforms(&["windows/amd64"])).unwrap_err();
        assert!(error.contains("matches platforms [windows/amd64]; it has [linux/amd64, linux/arm64]"), "{error}");
    }
}
