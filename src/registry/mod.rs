//! Talking to registries: the [`Registry`] seam the engine uses, and its HTTP implementation.
//!
//! The engine only ever sees the trait, so its rules (skip what is in place, blobs before
//! manifests, pull once) can be tested against a counting in-memory fake while the HTTP client
//! itself is tested against real registries.

pub mod auth;
pub(crate) mod body;
pub mod ecr;
mod error;
pub mod http;
pub mod kind;
pub mod pacing;
pub mod rate;
mod verify;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

pub use error::{Error, Result};
pub use http::{DEFAULT_THROTTLE_BUDGET, HttpRegistry, RegistrySettings, UploadMode};
pub use verify::VerifiedStream;

use crate::oci::{BlobDescriptor, Digest, Manifest, ManifestHead, Referrer};

/// Blob bytes as they arrive; every chunk is already counted against the blob's digest.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// An upload session a registry opened (its `Location`), for example by answering a mount
/// request with 202.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Where to send the bytes.
    pub location: String,
}

/// What a cross-repository mount request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    /// The registry linked the blob from the other repository; nothing to upload.
    Mounted,
    /// The registry declined and opened an upload session instead.
    NotMounted(UploadSession),
}

/// What a target said of a blob about to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// The repository has it.
    Present,
    /// It does not, and the registry may have opened an upload session in the same request.
    Absent(Option<UploadSession>),
}

/// The operations ocync needs from a registry. One value talks to one registry.
pub trait Registry: Send + Sync + 'static {
    /// The registry's name as users wrote it (`ghcr.io`, `127.0.0.1:5000`).
    fn name(&self) -> &str;

    /// Whether `other` is the same registry, so blobs can be mounted across its repositories.
    fn same_registry(&self, other: &Self) -> bool;

    /// `HEAD` a manifest by tag or digest; `None` when it does not exist.
    fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> impl Future<Output = Result<Option<ManifestHead>>> + Send;

    /// `GET` a manifest by tag or digest; the bytes are checked against the digest when the
    /// reference is one.
    fn get_manifest(&self, repository: &str, reference: &str) -> impl Future<Output = Result<Manifest>> + Send;

    /// `PUT` manifest bytes unchanged under a tag or digest.
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether a blob exists in `repository`.
    fn blob_exists(&self, repository: &str, digest: &Digest) -> impl Future<Output = Result<bool>> + Send;

    /// Whether a blob is in `repository`, asked right before uploading it. By default a
    /// `HEAD`; a registry may answer in a way that also opens the upload session.
    fn check_before_upload(&self, repository: &str, digest: &Digest) -> impl Future<Output = Result<Presence>> + Send {
        async move {
            let present = self.blob_exists(repository, digest).await?;
            Ok(if present { Presence::Present } else { Presence::Absent(None) })
        }
    }
    /// Streams a blob; the stream fails if the bytes do not match the descriptor.
    fn get_blob(&self, repository: &str, blob: &BlobDescriptor) -> impl Future<Output = Result<BlobStream>> + Send;

    /// Asks the registry to link a blob from repository `from` into `repository`.
    fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> impl Future<Output = Result<MountOutcome>> + Send;

    /// Uploads a blob, in `session` if one is already open.
    fn push_blob(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        body: BlobStream,
        session: Option<UploadSession>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Which of `digests` are in `repository`, when the registry can answer for many blobs in
    /// one call (ECR's `BatchCheckLayerAvailability`); `None` means "ask per blob".
    fn blobs_present(
        &self,
        repository: &str,
        digests: &[Digest],
    ) -> impl Future<Output = Option<HashSet<Digest>>> + Send {
        let _ = (repository, digests);
        std::future::ready(None)
    }

    /// Throttling so far (answers and time waited), per pacing group; empty for registries
    /// that are never throttled.
    fn throttling(&self) -> Vec<pacing::Throttling> {
        Vec::new()
    }

    /// Every tag of a repository, following pagination.
    fn list_tags(&self, repository: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// The referrers of `subject` through the OCI 1.1 referrers API, following pagination;
    /// `artifact_type` asks the registry to filter (callers filter again, as registries may
    /// ignore it). `None` when the registry has no referrers API.
    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> impl Future<Output = Result<Option<Vec<Referrer>>>> + Send;
}
