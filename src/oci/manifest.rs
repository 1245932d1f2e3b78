//! Manifests as served: the exact bytes, their digest and media type, plus a parsed view.

use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};

use super::{Digest, media_type};

/// What a `HEAD` on a manifest tells: enough to decide whether a copy is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// Digest of the manifest bytes.
    pub digest: Digest,
    /// Media type the registry reported.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// A manifest exactly as a registry served it. `bytes` are the source of truth: they are
/// pushed back unchanged so the target digest equals the source digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The raw bytes.
    pub bytes: Bytes,
    /// Digest of `bytes` (verified when the manifest was fetched).
    pub digest: Digest,
    /// Media type to send as `Content-Type` when pushing.
    pub media_type: String,
}

/// A blob a manifest refers to (its config or a layer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobDescriptor {
    /// Digest of the blob.
    pub digest: Digest,
    /// Size in bytes, as the manifest declares it.
    pub size: u64,
}

impl BlobDescriptor {
    /// The declared sizes of `blobs` added up, saturating: sizes come from the registry, and a
    /// manifest declaring `u64::MAX` must give a huge figure, not an overflow panic.
    pub fn total_size<'b>(blobs: impl IntoIterator<Item = &'b BlobDescriptor>) -> u64 {
        blobs.into_iter().fold(0, |total, blob| total.saturating_add(blob.size))
    }
}

/// The parsed view of a manifest: an index of child manifests or a single image/artifact.
#[derive(Debug, Clone)]
pub enum ManifestKind {
    /// Index or manifest list: child manifests, copied by digest before the index.
    Index {
        /// Children in the order the index lists them.
        children: Vec<BlobDescriptor>,
    },
    /// Image or artifact: config and layers, copied before the manifest.
    Image {
        /// Config first, then layers, as the manifest lists them, non-distributable layers
        /// left out.
        blobs: Vec<BlobDescriptor>,
        /// Non-distributable (foreign) layers: a registry accepts the manifest without them,
        /// so they are copied only where the source holds them.
        foreign: Vec<BlobDescriptor>,
    },
}

/// Why manifest bytes cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes do not hash to the digest they were asked for or announced with.
    #[error("manifest digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The bytes are not a manifest ocync understands. Both fields may quote the registry
    /// (a `mediaType`, parser text about its JSON), so they are shown sanitised.
    #[error("malformed {} manifest: {}", crate::text::sanitize(media_type), crate::text::sanitize(reason))]
    Malformed {
        /// The media type it was served as.
        media_type: String,
        /// What the parser said.
        reason: String,
    },
    /// A descriptor inside carries an invalid digest.
    #[error("manifest lists an invalid digest: {0}")]
    Digest(#[from] super::DigestError),
}

impl Manifest {
    /// Wraps served bytes, computing their digest with the algorithm of `expected` (or sha256)
    /// and checking it against `expected` when given.
    ///
    /// `content_type` is the `Content-Type` the registry sent; when absent or generic, the
    /// `mediaType` field inside the bytes decides.
    pub fn from_served(
        bytes: Bytes,
        content_type: Option<&str>,
        expected: Option<&Digest>,
    ) -> Result<Self, ManifestError> {
        let digest = match expected {
            Some(expected) => expected.same_algorithm_of(&bytes),
            None => Digest::sha256_of(&bytes),
        };
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(ManifestError::DigestMismatch { expected: expected.clone(), actual: digest });
        }
        let media_type = match content_type.map(|t| t.split(';').next().unwrap_or(t).trim()) {
            Some(t) if t.starts_with("application/vnd.") => t.to_string(),
            _ => embedded_media_type(&bytes),
        };
        Ok(Manifest { bytes, digest, media_type })
    }

    /// Whether this is an index or manifest list.
    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type)
    }

    /// Parses the view needed for copying: the children of an index, or the blobs of an image.
    pub fn kind(&self) -> Result<ManifestKind, ManifestError> {
        let malformed = |reason: String| ManifestError::Malformed { media_type: self.media_type.clone(), reason };
        if self.is_index() {
            let index: ImageIndex = serde_json::from_slice(&self.bytes).map_err(|e| malformed(e.to_string()))?;
            let children = index
                .manifests()
                .iter()
                .map(|d| Ok(BlobDescriptor { digest: d.digest().to_string().parse()?, size: d.size() }))
                .collect::<Result<_, ManifestError>>()?;
            Ok(ManifestKind::Index { children })
        } else {
            let manifest: ImageManifest = serde_json::from_slice(&self.bytes).map_err(|e| malformed(e.to_string()))?;
            let (mut blobs, mut foreign) = (Vec::new(), Vec::new());
            for descriptor in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let blob = BlobDescriptor { digest: descriptor.digest().to_string().parse()?, size: descriptor.size() };
                if media_type::is_non_distributable(descriptor.media_type().as_ref()) {
                    foreign.push(blob);
                } else {
                    blobs.push(blob);
                }
            }
            Ok(ManifestKind::Image { blobs, foreign })
        }
    }
}

/// The `mediaType` field of manifest JSON, or a guess from its shape when it has none
/// (OCI makes the field optional): `manifests` means an index.
fn embedded_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe { media_type: Some(t), .. }) => t,
        Ok(Probe { manifests: Some(_), .. }) => media_type::OCI_INDEX.to_string(),
        _ => media_type::OCI_MANIFEST.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(fill: char) -> String {
        format!("sha256:{}", fill.to_string().repeat(64))
    }

    fn image_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":9}}]}}"#,
            media_type::OCI_MANIFEST,
            digest('a'),
            digest('b')
        )
    }

    #[test]
    fn keeps_bytes_verbatim_and_lists_config_then_layers() {
        let bytes = Bytes::from(image_json());
        let manifest = Manifest::from_served(bytes.clone(), Some(media_type::OCI_MANIFEST), None).unwrap();
        assert_eq!(manifest.bytes, bytes);
        assert_eq!(manifest.digest, Digest::sha256_of(&bytes));
        let ManifestKind::Image { blobs, foreign } = manifest.kind().unwrap() else { panic!("not an image") };
        assert_eq!(blobs.iter().map(|b| b.size).collect::<Vec<_>>(), [7, 9]);
        assert_eq!(blobs[0].digest.as_str(), digest('a'));
        assert!(foreign.is_empty());
    }

    #[test]
    fn declared_sizes_add_up_saturating_instead_of_overflowing() {
        let blob = |size| BlobDescriptor { digest: Digest::sha256_of(b"x"), size };
        assert_eq!(BlobDescriptor::total_size(&[blob(2), blob(3)]), 5);
        assert_eq!(BlobDescriptor::total_size(&[blob(u64::MAX), blob(u64::MAX)]), u64::MAX);
    }

    #[test]
    fn non_distributable_layers_are_listed_apart_from_the_blobs_to_copy() {
        let layer = |media_type: &str, fill: char| {
            format!(
                r#"{{"mediaType":"{media_type}","digest":"{}","size":5,"urls":["https://example.com/{fill}"]}}"#,
                digest(fill)
            )
        };
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},"layers":[{},{},{},{}]}}"#,
            media_type::OCI_MANIFEST,
            digest('a'),
            layer(media_type::DOCKER_FOREIGN_LAYER, 'b'),
            layer("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", 'c'),
            layer("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", 'd'),
            layer("application/vnd.oci.image.layer.v1.tar+gzip", 'e'),
        );
        let manifest = Manifest::from_served(Bytes::from(json), None, None).unwrap();
        let ManifestKind::Image { blobs, foreign } = manifest.kind().unwrap() else { panic!("not an image") };
        let names = |list: &[BlobDescriptor]| list.iter().map(|b| b.digest.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&blobs), [digest('a'), digest('e')]);
        assert_eq!(names(&foreign), [digest('b'), digest('c'), digest('d')]);
    }

    #[test]
    fn rejects_bytes_that_do_not_match_the_expected_digest() {
        let expected: Digest = digest('c').parse().unwrap();
        let error = Manifest::from_served(Bytes::from(image_json()), None, Some(&expected)).unwrap_err();
        assert!(matches!(error, ManifestError::DigestMismatch { .. }), "{error}");
    }

    #[test]
    fn index_without_media_type_field_or_header_is_recognised() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":3}}]}}"#,
            media_type::OCI_MANIFEST,
            digest('d')
        );
        let manifest = Manifest::from_served(Bytes::from(json), Some("application/json"), None).unwrap();
        assert!(manifest.is_index());
        let ManifestKind::Index { children } = manifest.kind().unwrap() else { panic!("not an index") };
        assert_eq!(children.len(), 1);
    }

    #[test]
    fn malformed_json_names_its_media_type() {
        let manifest =
            Manifest::from_served(Bytes::from_static(b"{\"layers\":5}"), Some(media_type::OCI_MANIFEST), None).unwrap();
        let error = manifest.kind().unwrap_err().to_string();
        assert!(error.starts_with("malformed application/vnd.oci.image.manifest.v1+json manifest"), "{error}");
    }
}
