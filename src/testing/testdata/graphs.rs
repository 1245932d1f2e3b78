//! Index graphs of any shape, for tests of how ocync walks what a registry serves: indexes
//! nested many levels deep, each listing its child one or more times (a "diamond" when more).

use serde_json::json;

use super::{Image, image};
use crate::oci::{Manifest, media_type};
use crate::registry::{Registry, Result};

/// An image under `levels` indexes: `indexes[0]` lists the image, each next one the previous.
#[derive(Debug, Clone)]
pub struct Nested {
    /// The single image at the bottom.
    pub leaf: Image,
    /// The indexes, innermost first; the last is the top.
    pub indexes: Vec<Manifest>,
}

impl Nested {
    /// The top manifest (the last index, or the image when there is none).
    pub fn top(&self) -> &Manifest {
        self.indexes.last().unwrap_or(&self.leaf.manifest)
    }

    /// Distinct manifests in the graph.
    pub fn distinct_manifests(&self) -> usize {
        self.indexes.len() + 1
    }
}

/// An image (seeded by `seed`) under `levels` OCI indexes, each listing its child `copies`
/// times. With `copies` 2 and 6 levels there are 7 distinct manifests but 127 paths to walk.
pub fn nested(seed: u64, levels: usize, copies: usize) -> Nested {
    let leaf = image(&[(seed, 2048)], ("linux", "amd64"), false);
    let mut indexes: Vec<Manifest> = Vec::with_capacity(levels);
    for _ in 0..levels {
        let child = indexes.last().unwrap_or(&leaf.manifest);
        let entry = json!({ "mediaType": child.media_type, "digest": child.digest, "size": child.bytes.len() });
        let value = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": vec![entry; copies],
        });
        indexes.push(super::manifest_of(value, media_type::OCI_INDEX));
    }
    Nested { leaf, indexes }
}

/// Pushes `nested` to `repository`: the image's blobs, every manifest by digest innermost
/// first, then the top under `tag`.
pub async fn push_nested<R: Registry>(registry: &R, repository: &str, tag: &str, nested: &Nested) -> Result<()> {
    for blob in &nested.leaf.blobs {
        registry.push_blob(repository, &blob.descriptor, blob.stream(), None).await?;
    }
    let manifests = std::iter::once(&nested.leaf.manifest).chain(&nested.indexes);
    for manifest in manifests {
        registry.put_manifest(repository, manifest.digest.as_str(), manifest).await?;
    }
    registry.put_manifest(repository, tag, nested.top()).await
}
