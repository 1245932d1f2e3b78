//! Media types of the manifests ocync understands, and the `Accept` header that asks for them.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the Docker flavour of an index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI empty descriptor media type, used as the config of artifacts without one.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Docker's non-distributable ("foreign") layer, as Windows base images list theirs: the
/// registry serving the image need not hold it, clients fetch it from the descriptor's `urls`.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Prefix of the OCI non-distributable layer types (`…nondistributable.v1.tar`, `+gzip`,
/// `+zstd`), deprecated by OCI 1.1 but still served.
pub const OCI_NON_DISTRIBUTABLE_LAYER: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";

/// Every manifest media type ocync copies; sent as `Accept` so registries do not down-convert.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a layer media type says the blob is non-distributable: registries accept a
/// manifest listing it without holding the blob.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type == DOCKER_FOREIGN_LAYER || media_type.starts_with(OCI_NON_DISTRIBUTABLE_LAYER)
}

/// Whether a media type names an index (a list of manifests) rather than a single manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}
