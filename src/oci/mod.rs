//! OCI vocabulary: references, digests, media types and manifests.
//!
//! Everything here is pure: parsing and hashing, no I/O. Manifests are kept as the exact bytes a
//! registry served ([`Manifest`]); the parsed view exists only for inspection and is never
//! serialised back, so a copy is bit for bit.

mod digest;
mod manifest;
pub mod media_type;
mod platform;
mod reference;
mod referrers;
mod splice;

pub use digest::{Digest, DigestError, Verifier};
pub use manifest::{BlobDescriptor, Manifest, ManifestError, ManifestHead, ManifestKind};
pub use platform::{Narrowed, Platform, narrow};
pub use reference::{
    DOCKER_HUB, DOCKER_HUB_ENDPOINT, Reference, ReferenceError, endpoint_host, is_docker_hub, validate_repository,
    validate_tag,
};
pub use referrers::{
    ArtifactPolicy, COSIGN_TAGS, Referrer, cosign_tag, fallback_tag, index_of, is_referrer_tag, merge, parse_index,
};
