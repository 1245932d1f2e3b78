//! Test images with real digests: random layers of any size (generated as a stream, never
//! held in memory), multi-platform indexes, Docker manifest lists and OCI artifacts.
//!
//! Used by the integration tests, `infra/dev/demo.sh` and the benchmark (through the
//! `ocync-testdata` binary), so no test image ever has to come from the internet.

use bytes::Bytes;
use futures_util::StreamExt;
use rand::{RngCore, SeedableRng};
use serde_json::json;

use crate::oci::{BlobDescriptor, Digest, Manifest, Verifier, media_type};
use crate::registry::{BlobStream, Registry, Result};

mod graphs;
mod signing;

pub use graphs::{Nested, nested, push_nested};

pub use signing::{
    NOTATION_SIGNATURE, SIGSTORE_BUNDLE, SPDX, buildx_index, bundle_signature, bundle_with, cosign_attestation,
    cosign_sbom, cosign_signature, cosign_signature_with, notation_signature, sbom_referrer, signed_bundle,
    signed_cosign_signature,
};

/// Seven platforms, as a widely used multi-platform index lists them.
pub const SEVEN_PLATFORMS: [(&str, &str); 7] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("linux", "arm"),
    ("linux", "386"),
    ("linux", "ppc64le"),
    ("linux", "s390x"),
    ("linux", "riscv64"),
];
/// Random layer bytes are produced in pieces of this size.
const CHUNK: usize = 1 << 20;
/// Config media type of Helm charts stored as OCI artifacts.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// Layer media type of a Helm chart archive.
pub const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
enum Content {
    Inline(Bytes),
    /// `size` pseudo-random bytes from `seed`: the same seed always gives the same blob.
    Random {
        seed: u64,
    },
}

/// A blob of a built image.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Digest and size.
    pub descriptor: BlobDescriptor,
    content: Content,
}

impl Blob {
    fn inline(bytes: Bytes) -> Self {
        Blob {
            descriptor: BlobDescriptor { digest: Digest::sha256_of(&bytes), size: bytes.len() as u64 },
            content: Content::Inline(bytes),
        }
    }

    /// A random blob; hashing it streams through the bytes once.
    pub fn random(seed: u64, size: u64) -> Self {
        let expected: Digest = format!("sha256:{}", "0".repeat(64)).parse().expect("static digest");
        let mut verifier = Verifier::new(&expected);
        for_each_random_chunk(seed, size, |chunk| verifier.update(chunk));
        Blob { descriptor: BlobDescriptor { digest: verifier.finish(), size }, content: Content::Random { seed } }
    }

    /// The bytes in memory (for small blobs and in-memory registries).
    pub fn bytes(&self) -> Bytes {
        match &self.content {
            Content::Inline(bytes) => bytes.clone(),
            Content::Random { seed } => {
                let mut all = Vec::with_capacity(self.descriptor.size as usize);
                for_each_random_chunk(*seed, self.descriptor.size, |chunk| all.extend_from_slice(chunk));
                Bytes::from(all)
            }
        }
    }

    /// The bytes as a stream.
    pub fn stream(&self) -> BlobStream {
        match &self.content {
            Content::Inline(bytes) => futures_util::stream::iter([Ok(bytes.clone())]).boxed(),
            Content::Random { seed } => random_stream(*seed, self.descriptor.size),
        }
    }
}

fn for_each_random_chunk(seed: u64, size: u64, mut each: impl FnMut(&[u8])) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut buffer = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut buffer[..n]);
        each(&buffer[..n]);
        left -= n as u64;
    }
}

fn random_stream(seed: u64, size: u64) -> BlobStream {
    let rng = rand::rngs::SmallRng::seed_from_u64(seed);
    futures_util::stream::unfold((rng, size), |(mut rng, left)| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        let mut buffer = vec![0u8; n];
        rng.fill_bytes(&mut buffer);
        Some((Ok(Bytes::from(buffer)), (rng, left - n as u64)))
    })
    .boxed()
}

/// A single manifest with its blobs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest bytes.
    pub manifest: Manifest,
    /// Config first, then layers.
    pub blobs: Vec<Blob>,
}

/// What a builder produced: one manifest, or an index with its children.
#[derive(Debug, Clone)]
pub enum Built {
    /// An image or artifact.
    Image(Image),
    /// An index (OCI) or manifest list (Docker) and its children.
    Index {
        /// The index bytes.
        index: Manifest,
        /// The children, in index order.
        children: Vec<Image>,
    },
}

impl Built {
    /// The digest of the top-level manifest.
    pub fn digest(&self) -> &Digest {
        match self {
            Built::Image(image) => &image.manifest.digest,
            Built::Index { index, .. } => &index.digest,
        }
    }

    /// Every distinct blob, across children.
    pub fn blobs(&self) -> Vec<&Blob> {
        let all: Vec<&Blob> = match self {
            Built::Image(image) => image.blobs.iter().collect(),
            Built::Index { children, .. } => children.iter().flat_map(|c| &c.blobs).collect(),
        };
        let mut seen = std::collections::HashSet::new();
        all.into_iter().filter(|b| seen.insert(b.descriptor.digest.clone())).collect()
    }
}

fn manifest_of(value: serde_json::Value, media_type: &str) -> Manifest {
    let bytes = Bytes::from(serde_json::to_vec_pretty(&value).expect("JSON values serialise"));
    Manifest { digest: Digest::sha256_of(&bytes), bytes, media_type: media_type.to_string() }
}

fn descriptor(media_type: &str, blob: &BlobDescriptor) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.size })
}

/// An image: `layers` are `(seed, size)` pairs (same pair, same layer, so images can share
/// base layers); `docker` picks Docker schema 2 media types instead of OCI.
pub fn image(layers: &[(u64, u64)], platform: (&str, &str), docker: bool) -> Image {
    let (manifest_type, config_type, layer_type) = if docker {
        (
            media_type::DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (media_type::OCI_MANIFEST, "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar")
    };
    let layer_blobs: Vec<Blob> = layers.iter().map(|&(seed, size)| Blob::random(seed, size)).collect();
    let config = Blob::inline(Bytes::from(
        serde_json::to_vec(&json!({
            "architecture": platform.1,
            "os": platform.0,
            "config": { "Env": ["PATH=/usr/bin"] },
            "rootfs": { "type": "layers", "diff_ids": layer_blobs.iter().map(|b| &b.descriptor.digest).collect::<Vec<_>>() },
        }))
        .expect("JSON values serialise"),
    ));
    let manifest = manifest_of(
        json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": descriptor(config_type, &config.descriptor),
            "layers": layer_blobs.iter().map(|b| descriptor(layer_type, &b.descriptor)).collect::<Vec<_>>(),
        }),
        manifest_type,
    );
    Image { manifest, blobs: std::iter::once(config).chain(layer_blobs).collect() }
}

/// Media type of the foreign layer in [`foreign_layer_image`] (Docker flavour), and its OCI
/// counterpart.
const FOREIGN_LAYER_TYPES: [&str; 2] =
    [media_type::DOCKER_FOREIGN_LAYER, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"];

/// An image with a non-distributable layer, as Windows base images have.
#[derive(Debug, Clone)]
pub struct ForeignLayerImage {
    /// The image; its `blobs` (config and the ordinary layer) are what a source holds.
    pub image: Image,
    /// The non-distributable layer the manifest lists (with `urls`) between the config and
    /// the ordinary layer: not in `image.blobs`, so [`push`] leaves it out, as a registry
    /// serving a Windows image does.
    pub foreign: Blob,
}

/// An image whose manifest lists a non-distributable layer (`urls` pointing at an external
/// host) before an ordinary one; `docker` picks the Docker foreign type and Docker schema 2,
/// else the OCI non-distributable type. `seed` varies every blob.
pub fn foreign_layer_image(seed: u64, docker: bool) -> ForeignLayerImage {
    let base = image(&[(seed.wrapping_mul(31).wrapping_add(5), 2048)], ("windows", "amd64"), docker);
    let foreign = Blob::random(seed.wrapping_mul(31).wrapping_add(6), 4096);
    let mut value: serde_json::Value = serde_json::from_slice(&base.manifest.bytes).expect("built manifests are JSON");
    let mut layer = descriptor(FOREIGN_LAYER_TYPES[usize::from(!docker)], &foreign.descriptor);
    layer["urls"] = json!([format!("https://windows.example.com/blobs/{}", foreign.descriptor.digest)]);
    if let Some(layers) = value["layers"].as_array_mut() {
        layers.insert(0, layer);
    }
    let manifest = manifest_of(value, &base.manifest.media_type);
    ForeignLayerImage { image: Image { manifest, blobs: base.blobs }, foreign }
}

/// A multi-platform index: one image per platform, each with the shared `base` layers plus a
/// small layer of its own derived from `seed`.
pub fn index(seed: u64, base: &[(u64, u64)], platforms: &[(&str, &str)], docker: bool) -> Built {
    let children: Vec<Image> = platforms
        .iter()
        .enumerate()
        .map(|(i, &platform)| {
            let mut layers = base.to_vec();
            layers.push((seed.wrapping_mul(1000).wrapping_add(i as u64 + 1), 4096 + i as u64));
            image(&layers, platform, docker)
        })
        .collect();
    index_of(children, platforms, docker)
}

/// The index listing `children`, one per entry of `platforms`.
fn index_of(children: Vec<Image>, platforms: &[(&str, &str)], docker: bool) -> Built {
    let index_type = if docker { media_type::DOCKER_MANIFEST_LIST } else { media_type::OCI_INDEX };
    let entries: Vec<serde_json::Value> = children
        .iter()
        .zip(platforms)
        .map(|(child, (os, architecture))| {
            json!({
                "mediaType": child.manifest.media_type,
                "digest": child.manifest.digest,
                "size": child.manifest.bytes.len(),
                "platform": { "os": os, "architecture": architecture },
            })
        })
        .collect();
    let index = manifest_of(json!({ "schemaVersion": 2, "mediaType": index_type, "manifests": entries }), index_type);
    Built::Index { index, children }
}

/// A Helm chart as an OCI artifact (config and chart archive with Helm's media types).
pub fn helm_chart(name: &str, version: &str) -> Image {
    let config = Blob::inline(Bytes::from(
        serde_json::to_vec(&json!({ "name": name, "version": version, "apiVersion": "v2" }))
            .expect("JSON values serialise"),
    ));
    let chart = Blob::random(version.len() as u64 * 7919 + name.len() as u64, 2048);
    let manifest = manifest_of(
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": descriptor(HELM_CONFIG, &config.descriptor),
            "layers": [descriptor(HELM_CHART, &chart.descriptor)],
        }),
        media_type::OCI_MANIFEST,
    );
    Image { manifest, blobs: vec![config, chart] }
}

/// An OCI 1.1 artifact with the empty config, an `artifactType`, one payload layer and
/// optionally a `subject` (as signatures and SBOMs have).
pub fn artifact(artifact_type: &str, payload: &[u8], subject: Option<&Manifest>) -> Image {
    signing::assemble(
        (media_type::OCI_EMPTY, Bytes::from_static(b"{}")),
        vec![("application/octet-stream", Bytes::copy_from_slice(payload), serde_json::Value::Null)],
        Some(artifact_type),
        subject,
        None,
    )
}

/// Pushes `built` to `repository` under `tag`: blobs, children by digest, then the tag.
pub async fn push<R: Registry>(registry: &R, repository: &str, tag: &str, built: &Built) -> Result<()> {
    for blob in built.blobs() {
        if !registry.blob_exists(repository, &blob.descriptor.digest).await? {
            registry.push_blob(repository, &blob.descriptor, blob.stream(), None).await?;
        }
    }
    match built {
        Built::Image(image) => registry.put_manifest(repository, tag, &image.manifest).await,
        Built::Index { index, children } => {
            for child in children {
                registry.put_manifest(repository, child.manifest.digest.as_str(), &child.manifest).await?;
            }
            registry.put_manifest(repository, tag, index).await
        }
    }
}

/// The platforms of every corpus image.
const CORPUS_PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

/// One image of the benchmark corpus, shaped like real multi-arch images: a 2-platform index
/// whose children differ per platform and share layers the way application images do. Per
/// platform: a distribution layer of `base_bytes / 4` shared by every repository (what cross
/// repository mounts are for), a runtime layer of `base_bytes` shared by the tags of one
/// repository, and a 256 KiB application layer unique to (`repository`, `tag`, `generation`).
pub fn corpus_image(repository: u64, tag: u64, generation: u64, base_bytes: u64) -> Built {
    let seed = 1_000_000 * (generation + 1) + 1000 * (repository + 1) + tag;
    let children = (0..CORPUS_PLATFORMS.len() as u64)
        .zip(CORPUS_PLATFORMS)
        .map(|(i, platform)| {
            let layers = [
                (i + 1, base_bytes / 4),
                (100 + 10 * repository + i, base_bytes),
                (seed.wrapping_mul(1000).wrapping_add(i + 1), 256 * 1024 + i),
            ];
            image(&layers, platform, false)
        })
        .collect();
    index_of(children, &CORPUS_PLATFORMS, false)
}

/// Pushes `repositories` × `tags` corpus images (`bench/repo-NN:1.0.T`); with `changed`, only
/// the first `changed` tags of the corpus, re-pushed with new top layers (`generation`).
pub async fn push_corpus<R: Registry>(
    registry: &R,
    repositories: u64,
    tags: u64,
    base_bytes: u64,
    changed: Option<(u64, u64)>,
) -> Result<u64> {
    let mut pushed = 0;
    for repository in 0..repositories {
        for tag in 0..tags {
            let generation = match changed {
                Some((count, generation)) if repository * tags + tag < count => generation,
                Some(_) => continue,
                None => 0,
            };
            let built = corpus_image(repository, tag, generation, base_bytes);
            push(registry, &corpus_repository(repository), &format!("1.0.{tag}"), &built).await?;
            pushed += 1;
        }
    }
    Ok(pushed)
}

/// The name of corpus repository `n`.
pub fn corpus_repository(n: u64) -> String {
    format!("bench/repo-{n:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    #[tokio::test]
    async fn random_blobs_stream_the_bytes_their_digest_names() {
        let blob = Blob::random(7, 3 * CHUNK as u64 + 5);
        let bytes: Vec<Bytes> = blob.stream().try_collect().await.unwrap();
        let joined = bytes.concat();
        assert_eq!(joined.len() as u64, blob.descriptor.size);
        assert_eq!(Digest::sha256_of(&joined), blob.descriptor.digest);
    }

    #[test]
    fn images_sharing_a_base_share_its_layer() {
        let Built::Index { children, .. } = index(1, &[(42, 1000)], &[("linux", "amd64"), ("linux", "arm64")], false)
        else {
            panic!("not an index")
        };
        assert_eq!(children[0].blobs[1].descriptor, children[1].blobs[1].descriptor);
        assert_ne!(children[0].blobs[2].descriptor, children[1].blobs[2].descriptor);
    }
}
