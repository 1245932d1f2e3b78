//! Referrers (OCI 1.1): manifests whose `subject` names another manifest (signatures, SBOMs,
//! attestations), the descriptors that list them, and the tag schema of registries without
//! the referrers API: the `sha256-<hex>` fallback index tag and cosign's `.sig`/`.att`/`.sbom`.
//!
//! Descriptors are kept as the JSON objects registries listed them as, so a fallback index
//! ocync extends keeps every field (annotations included) of the entries already there.

use bytes::Bytes;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::Value;

use super::{Digest, Manifest, ManifestError, media_type, splice};

/// cosign's tag suffixes, with the artifact type each is matched as against
/// `artifacts.include`/`exclude` (the types cosign itself uses in its OCI 1.1 mode).
pub const COSIGN_TAGS: [(&str, &str); 3] = [
    ("sig", "application/vnd.dev.cosign.artifact.sig.v1+json"),
    ("att", "application/vnd.dev.cosign.artifact.att.v1+json"),
    ("sbom", "application/vnd.dev.cosign.artifact.sbom.v1+json"),
];

/// One entry of a referrers list: the descriptor of a manifest that refers to a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    /// Digest of the referrer manifest.
    pub digest: Digest,
    /// Its `artifactType` (or, lacking one, its config media type), when listed.
    pub artifact_type: Option<String>,
    /// The descriptor exactly as listed.
    pub descriptor: Value,
}

/// The fallback tag of a subject: `<algorithm>-<hex>` (`sha256-…`).
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

/// The cosign tag of a subject for a suffix (`sha256-….sig`).
pub fn cosign_tag(subject: &Digest, suffix: &str) -> String {
    format!("{}.{suffix}", fallback_tag(subject))
}

/// Whether a tag belongs to the referrer tag schema (`sha256-<hex>`, optionally with a cosign
/// suffix) rather than naming an image.
pub fn is_referrer_tag(tag: &str) -> bool {
    let base = COSIGN_TAGS.iter().find_map(|(suffix, _)| tag.strip_suffix(&format!(".{suffix}"))).unwrap_or(tag);
    let Some((algorithm, hex)) = base.split_once('-') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Referrer {
    /// The descriptor of `manifest` as a referrers list shows it, with the subject it names;
    /// `None` when the manifest has no `subject`.
    pub fn describe(manifest: &Manifest) -> Option<(Digest, Referrer)> {
        let value: Value = serde_json::from_slice(&manifest.bytes).ok()?;
        let subject: Digest = value.get("subject")?.get("digest")?.as_str()?.parse().ok()?;
        let artifact_type = value
            .get("artifactType")
            .or_else(|| value.get("config").and_then(|c| c.get("mediaType")))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut descriptor = serde_json::json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
        });
        if let Some(artifact_type) = &artifact_type {
            descriptor["artifactType"] = Value::from(artifact_type.clone());
        }
        if let Some(annotations) = value.get("annotations") {
            descriptor["annotations"] = annotations.clone();
        }
        Some((subject, Referrer { digest: manifest.digest.clone(), artifact_type, descriptor }))
    }
}

/// The entries of a referrers index (an API answer or a fallback index).
pub fn parse_index(bytes: &[u8]) -> Result<Vec<Referrer>, ManifestError> {
    let malformed = |reason: String| ManifestError::Malformed { media_type: media_type::OCI_INDEX.into(), reason };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let Some(entries) = value.get("manifests").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    entries
        .iter()
        .map(|entry| {
            let digest =
                entry.get("digest").and_then(Value::as_str).ok_or_else(|| malformed("entry without digest".into()))?;
            Ok(Referrer {
                digest: digest.parse()?,
                artifact_type: entry.get("artifactType").and_then(Value::as_str).map(str::to_string),
                descriptor: entry.clone(),
            })
        })
        .collect()
}

/// An OCI index listing `entries`, as a fallback tag holds it.
pub fn index_of(entries: &[Referrer]) -> Manifest {
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries.iter().map(|e| e.descriptor.clone()).collect::<Vec<_>>(),
    });
    manifest_of(&value)
}

/// `existing` (a fallback index at a target) with the entries of `additions` it lacks
/// appended; nothing is ever dropped, and the entries already there keep their bytes. `None`
/// when it already lists all of them.
pub fn merge(existing: &Manifest, additions: &[Referrer]) -> Result<Option<Manifest>, ManifestError> {
    let present = parse_index(&existing.bytes)?;
    let missing: Vec<&Referrer> = additions.iter().filter(|a| !present.iter().any(|p| p.digest == a.digest)).collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let malformed = |e: serde_json::Error| ManifestError::Malformed {
        media_type: existing.media_type.clone(),
        reason: e.to_string(),
    };
    let added = missing.iter().map(|m| m.descriptor.to_string());
    let spliced = splice::rewrite_entries(&existing.bytes, |entries| {
        entries.iter().map(|e| e.to_string()).chain(added.clone()).collect()
    })
    .map_err(malformed)?;
    if let Some(bytes) = spliced {
        return Ok(Some(Manifest::from_served(Bytes::from(bytes), Some(media_type::OCI_INDEX), None)?));
    }
    // No list at all (not a valid index, but tolerated): one is added.
    let mut value: Value = serde_json::from_slice(&existing.bytes).map_err(malformed)?;
    if !value.is_object() {
        return Err(ManifestError::Malformed {
            media_type: existing.media_type.clone(),
            reason: "not an object".into(),
        });
    }
    value["manifests"] = Value::Array(missing.into_iter().map(|m| m.descriptor.clone()).collect());
    Ok(Some(manifest_of(&value)))
}

fn manifest_of(value: &Value) -> Manifest {
    let bytes = Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"));
    Manifest { digest: Digest::sha256_of(&bytes), bytes, media_type: media_type::OCI_INDEX.to_string() }
}

/// Which referrers follow their images: `artifacts:` resolved.
#[derive(Debug, Clone)]
pub struct ArtifactPolicy {
    include: Vec<String>,
    exclude: Vec<String>,
    compiled: (Option<GlobSet>, Option<GlobSet>),
    /// Fail an image that has no matching referrer upstream.
    pub require: bool,
}

impl PartialEq for ArtifactPolicy {
    fn eq(&self, other: &Self) -> bool {
        (&self.include, &self.exclude, self.require) == (&other.include, &other.exclude, other.require)
    }
}

impl Eq for ArtifactPolicy {}

impl serde::Serialize for ArtifactPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("ArtifactPolicy", 3)?;
        state.serialize_field("include", &self.include)?;
        state.serialize_field("exclude", &self.exclude)?;
        state.serialize_field("require", &self.require)?;
        state.end()
    }
}

impl Default for ArtifactPolicy {
    /// Every referrer, none required.
    fn default() -> Self {
        ArtifactPolicy { include: Vec::new(), exclude: Vec::new(), compiled: (None, None), require: false }
    }
}

impl ArtifactPolicy {
    /// A policy from artifact-type globs (empty `include`: everything); the error names the
    /// list and the pattern that does not compile.
    pub fn new(include: Vec<String>, exclude: Vec<String>, require: bool) -> Result<Self, (&'static str, String)> {
        let compile = |field: &'static str, patterns: &[String]| -> Result<Option<GlobSet>, (&'static str, String)> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                builder.add(Glob::new(pattern).map_err(|e| (field, format!("invalid pattern {pattern:?}: {e}")))?);
            }
            builder.build().map(Some).map_err(|e| (field, e.to_string()))
        };
        let compiled = (compile("include", &include)?, compile("exclude", &exclude)?);
        Ok(ArtifactPolicy { include, exclude, compiled, require })
    }

    /// The one artifact type `include` names, when it is a single literal: registries with
    /// the referrers API can then filter the listing themselves.
    pub fn single_type(&self) -> Option<&str> {
        match self.include.as_slice() {
            [only] if !only.contains(['*', '?', '[', '{']) => Some(only),
            _ => None,
        }
    }

    /// Whether a referrer of this artifact type follows its image. A referrer listed without
    /// a type is kept only when no `include` is set.
    pub fn admits(&self, artifact_type: Option<&str>) -> bool {
        let (include, exclude) = &self.compiled;
        let included = match (include, artifact_type) {
            (None, _) => true,
            (Some(set), Some(t)) => set.is_match(t),
            (Some(_), None) => false,
        };
        let excluded = matches!((exclude, artifact_type), (Some(set), Some(t)) if set.is_match(t));
        included && !excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::testdata;

    fn signature(payload: &[u8], subject: &Manifest) -> Manifest {
        testdata::artifact("application/vnd.dev.sigstore.bundle.v0.3+json", payload, Some(subject)).manifest
    }

    #[test]
    fn fallback_tags_follow_the_oci_and_cosign_schemas() {
        let digest = Digest::sha256_of(b"x");
        assert_eq!(fallback_tag(&digest), format!("sha256-{}", digest.hex()));
        assert_eq!(cosign_tag(&digest, "sig"), format!("sha256-{}.sig", digest.hex()));
        assert!(is_referrer_tag(&fallback_tag(&digest)) && is_referrer_tag(&cosign_tag(&digest, "att")));
        for image_tag in ["latest", "sha256-abc", "sha256-abc.sig", &format!("{}.zip", fallback_tag(&digest))] {
            assert!(!is_referrer_tag(image_tag), "{image_tag}");
        }
    }

    #[test]
    fn a_manifest_with_a_subject_is_described_with_its_artifact_type() {
        let image = testdata::image(&[(1, 10)], ("linux", "amd64"), false);
        let signed = signature(b"sig", &image.manifest);
        let (subject, referrer) = Referrer::describe(&signed).unwrap();
        assert_eq!(subject, image.manifest.digest);
        assert_eq!(referrer.artifact_type.as_deref(), Some("application/vnd.dev.sigstore.bundle.v0.3+json"));
        assert_eq!(referrer.descriptor["size"], signed.bytes.len());
        assert!(Referrer::describe(&image.manifest).is_none(), "no subject, no referrer");
    }

    #[test]
    fn merging_keeps_every_existing_entry_and_adds_only_missing_ones() {
        let image = testdata::image(&[(2, 10)], ("linux", "amd64"), false);
        let describe = |payload: &[u8]| Referrer::describe(&signature(payload, &image.manifest)).unwrap().1;
        let (a, b) = (describe(b"a"), describe(b"b"));
        let mut annotated = a.clone();
        annotated.descriptor["annotations"] = serde_json::json!({"kept": "yes"});
        let existing = index_of(&[annotated]);

        assert!(merge(&existing, std::slice::from_ref(&a)).unwrap().is_none(), "already listed");
        let merged = merge(&existing, &[a.clone(), b.clone()]).unwrap().expect("b is new");
        let entries = parse_index(&merged.bytes).unwrap();
        assert_eq!(entries.iter().map(|e| &e.digest).collect::<Vec<_>>(), [&a.digest, &b.digest]);
        assert_eq!(entries[0].descriptor["annotations"]["kept"], "yes", "existing entries are untouched");
        let end = existing.bytes.iter().position(|&b| b == b']').expect("the list ends");
        let (list, rest) = existing.bytes.split_at(end);
        assert!(merged.bytes.starts_with(list) && merged.bytes.ends_with(rest), "the bytes there stay as they were");
    }

    #[test]
    fn include_and_exclude_globs_select_artifact_types() {
        let policy = ArtifactPolicy::new(vec!["application/vnd.dev.*".into()], vec!["*sbom*".into()], false).unwrap();
        assert!(policy.admits(Some("application/vnd.dev.cosign.artifact.sig.v1+json")));
        assert!(!policy.admits(Some("application/vnd.dev.cosign.artifact.sbom.v1+json")));
        assert!(!policy.admits(Some("application/spdx+json")));
        assert!(!policy.admits(None));
        assert!(ArtifactPolicy::default().admits(None));
        assert_eq!(ArtifactPolicy::new(vec!["[".into()], vec![], false).unwrap_err().0, "include");
    }
}
