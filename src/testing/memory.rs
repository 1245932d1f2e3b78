//! An in-memory registry that counts every operation: the engine's test double, and the
//! registry the planning benchmark runs against. It behaves like a real one where the engine
//! relies on it: content-addressed blobs checked on upload, manifests by tag and digest, and
//! mounts that work only from a repository that has the blob.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::testdata::{Built, Nested};
use crate::oci::{BlobDescriptor, Digest, Manifest, ManifestHead, Referrer};
use crate::registry::{BlobStream, Error, MountOutcome, Registry, Result, UploadSession, VerifiedStream};

/// Operations counted by [`MemoryRegistry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `head_manifest`.
    HeadManifest,
    /// `get_manifest`.
    GetManifest,
    /// `put_manifest`.
    PutManifest,
    /// `blob_exists`.
    BlobExists,
    /// `get_blob`.
    GetBlob,
    /// `mount_blob`.
    Mount,
    /// `push_blob`.
    PushBlob,
    /// `list_tags`.
    ListTags,
    /// `list_referrers` (counted also when the registry has no referrers API, like a 404).
    ListReferrers,
}

#[derive(Default)]
struct Repository {
    tags: BTreeMap<String, Digest>,
    manifests: HashMap<Digest, Manifest>,
    blobs: HashSet<Digest>,
}

/// A registry held in memory.
pub struct MemoryRegistry {
    name: String,
    repositories: Mutex<HashMap<String, Repository>>,
    contents: Mutex<HashMap<Digest, Bytes>>,
    counts: Mutex<HashMap<Op, u64>>,
    broken: Mutex<HashMap<String, u16>>,
    /// Operations that panic, by repository: a fault injected to prove containment.
    panics: Mutex<HashMap<String, Op>>,
    bytes_served: AtomicU64,
    referrers_api: bool,
    referrers_refusal: Mutex<Option<u16>>,
    immutable_tags: bool,
}

impl MemoryRegistry {
    /// An empty registry called `name`.
    pub fn new(name: &str) -> Self {
        MemoryRegistry {
            name: name.to_string(),
            repositories: Mutex::default(),
            contents: Mutex::default(),
            counts: Mutex::default(),
            broken: Mutex::default(),
            panics: Mutex::default(),
            bytes_served: AtomicU64::new(0),
            referrers_api: false,
            referrers_refusal: Mutex::default(),
            immutable_tags: false,
        }
    }

    /// An empty registry called `name` that answers the OCI 1.1 referrers API, listing the
    /// manifests with a `subject` it holds (without it, it behaves like distribution 2.8).
    pub fn with_referrers_api(name: &str) -> Self {
        MemoryRegistry { referrers_api: true, ..Self::new(name) }
    }

    /// An empty registry called `name` whose tags are immutable, like an ECR repository with
    /// `IMMUTABLE` tag mutability: a manifest PUT moving an existing tag to another digest is
    /// refused the way ECR answers it (400 `TAG_INVALID`), as the HTTP client reports it.
    pub fn with_immutable_tags(name: &str) -> Self {
        MemoryRegistry { immutable_tags: true, ..Self::new(name) }
    }

    /// Makes `list_referrers` answer `status` (400, 405, 501: a route the registry does not
    /// serve; 401/403: refused on that route only), as registries without the API may.
    pub fn refuse_referrers(&self, status: u16) {
        *self.referrers_refusal.lock().expect("lock") = Some(status);
    }

    /// Stores a built image under `repository:tag` (not counted).
    pub fn insert(&self, repository: &str, tag: &str, built: &Built) {
        let mut contents = self.contents.lock().expect("lock");
        let mut repositories = self.repositories.lock().expect("lock");
        let repo = repositories.entry(repository.to_string()).or_default();
        for blob in built.blobs() {
            contents.insert(blob.descriptor.digest.clone(), blob.bytes());
            repo.blobs.insert(blob.descriptor.digest.clone());
        }
        let top = match built {
            Built::Image(image) => image.manifest.clone(),
            Built::Index { index, children } => {
                for child in children {
                    repo.manifests.insert(child.manifest.digest.clone(), child.manifest.clone());
                }
                index.clone()
            }
        };
        repo.tags.insert(tag.to_string(), top.digest.clone());
        repo.manifests.insert(top.digest.clone(), top);
    }

    /// Stores a nested index graph under `repository:tag` (not counted).
    pub fn insert_nested(&self, repository: &str, tag: &str, nested: &Nested) {
        self.insert(repository, tag, &Built::Image(nested.leaf.clone()));
        let mut repositories = self.repositories.lock().expect("lock");
        let repo = repositories.entry(repository.to_string()).or_default();
        for index in &nested.indexes {
            repo.manifests.insert(index.digest.clone(), index.clone());
        }
        repo.tags.insert(tag.to_string(), nested.top().digest.clone());
    }

    /// How many times `op` ran.
    pub fn count(&self, op: Op) -> u64 {
        self.counts.lock().expect("lock").get(&op).copied().unwrap_or(0)
    }

    /// Every count, for assertion messages.
    pub fn counts(&self) -> BTreeMap<Op, u64> {
        self.counts.lock().expect("lock").iter().map(|(op, n)| (*op, *n)).collect()
    }

    /// Forgets the counts.
    pub fn reset_counts(&self) {
        self.counts.lock().expect("lock").clear();
        self.bytes_served.store(0, Ordering::Relaxed);
    }

    /// Blob bytes served by `get_blob` since the last reset.
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::Relaxed)
    }

    /// Flips a byte of a stored blob, so downloads of it fail verification.
    pub fn corrupt_blob(&self, digest: &Digest) {
        if let Some(bytes) = self.contents.lock().expect("lock").get_mut(digest) {
            let mut changed = bytes.to_vec();
            if let Some(first) = changed.first_mut() {
                *first ^= 0xff;
            }
            *bytes = Bytes::from(changed);
        }
    }

    /// Makes every operation on `repository` fail with a 500.
    pub fn break_repository(&self, repository: &str) {
        self.fail_repository(repository, 500);
    }

    /// Makes every operation on `repository` fail with `status` (401/403: access denied).
    pub fn fail_repository(&self, repository: &str, status: u16) {
        self.broken.lock().expect("lock").insert(repository.to_string(), status);
    }

    /// Makes `op` on `repository` panic, as a bug anywhere below the engine would, so tests
    /// can show that one panicking task fails only its own mapping or image.
    pub fn panic_on(&self, repository: &str, op: Op) {
        self.panics.lock().expect("lock").insert(repository.to_string(), op);
    }

    /// The tags of `repository` and their digests.
    pub fn tags(&self, repository: &str) -> BTreeMap<String, Digest> {
        self.repositories.lock().expect("lock").get(repository).map(|r| r.tags.clone()).unwrap_or_default()
    }

    /// Whether `repository` has the blob.
    pub fn has_blob(&self, repository: &str, digest: &Digest) -> bool {
        self.repositories.lock().expect("lock").get(repository).is_some_and(|r| r.blobs.contains(digest))
    }

    /// Whether `repository` has the manifest.
    pub fn has_manifest(&self, repository: &str, digest: &Digest) -> bool {
        self.repositories.lock().expect("lock").get(repository).is_some_and(|r| r.manifests.contains_key(digest))
    }

    fn enter(&self, op: Op, repository: &str) -> Result<()> {
        *self.counts.lock().expect("lock").entry(op).or_default() += 1;
        // No lock is held here, so the panic poisons nothing the other tasks use.
        let panics = self.panics.lock().expect("lock").get(repository) == Some(&op);
        if panics {
            panic!("injected fault: {op:?} in {repository} panicked");
        }
        match self.broken.lock().expect("lock").get(repository).copied() {
            Some(status) => Err(self.refusal(repository, format!("{op:?}"), status)),
            None => Ok(()),
        }
    }

    fn refusal(&self, repository: &str, action: String, status: u16) -> Error {
        let (registry, repository, detail) = (self.name.clone(), repository.to_string(), "refused for the test".into());
        match status {
            401 | 403 => Error::Unauthorized { registry, repository, status, detail },
            _ => Error::Status { registry, repository, action, status, detail },
        }
    }

    fn not_found(&self, repository: &str, what: String) -> Error {
        Error::NotFound { registry: self.name.clone(), repository: repository.to_string(), what }
    }

    fn lookup(&self, repository: &str, reference: &str) -> Option<Manifest> {
        let repositories = self.repositories.lock().expect("lock");
        let repo = repositories.get(repository)?;
        let digest = match reference.parse::<Digest>() {
            Ok(digest) => digest,
            Err(_) => repo.tags.get(reference)?.clone(),
        };
        repo.manifests.get(&digest).cloned()
    }
}

impl Registry for MemoryRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    fn same_registry(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }

    async fn head_manifest(&self, repository: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.enter(Op::HeadManifest, repository)?;
        Ok(self.lookup(repository, reference).map(|m| ManifestHead {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            size: m.bytes.len() as u64,
        }))
    }

    async fn get_manifest(&self, repository: &str, reference: &str) -> Result<Manifest> {
        self.enter(Op::GetManifest, repository)?;
        self.lookup(repository, reference).ok_or_else(|| self.not_found(repository, format!("manifest {reference}")))
    }

    async fn put_manifest(&self, repository: &str, reference: &str, manifest: &Manifest) -> Result<()> {
        self.enter(Op::PutManifest, repository)?;
        let mut repositories = self.repositories.lock().expect("lock");
        let repo = repositories.entry(repository.to_string()).or_default();
        // Real registries accept a referrer before its subject; this one refuses, so tests
        // catch a copy that pushes them in the wrong order.
        if self.referrers_api
            && let Some((subject, _)) = Referrer::describe(manifest)
            && !repo.manifests.contains_key(&subject)
        {
            return Err(Error::Status {
                registry: self.name.clone(),
                repository: repository.to_string(),
                action: format!("PUT manifest {reference}"),
                status: 400,
                detail: format!("subject {subject} is not in the repository yet"),
            });
        }
        if self.immutable_tags
            && let Some(current) = repo.tags.get(reference)
            && *current != manifest.digest
        {
            let refusal = Error::Status {
                registry: self.name.clone(),
                repository: repository.to_string(),
                action: format!("PUT manifest {reference}"),
                status: 400,
                detail: format!(
                    "TAG_INVALID: The image tag '{reference}' already exists in the '{repository}' repository \
                     and cannot be overwritten because the repository is immutable."
                ),
            };
            return Err(refusal.for_tag_push(reference));
        }
        if reference.parse::<Digest>().is_err() {
            repo.tags.insert(reference.to_string(), manifest.digest.clone());
        }
        repo.manifests.insert(manifest.digest.clone(), manifest.clone());
        Ok(())
    }

    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.enter(Op::BlobExists, repository)?;
        Ok(self.has_blob(repository, digest))
    }

    async fn get_blob(&self, repository: &str, blob: &BlobDescriptor) -> Result<BlobStream> {
        self.enter(Op::GetBlob, repository)?;
        if !self.has_blob(repository, &blob.digest) {
            return Err(self.not_found(repository, format!("blob {}", blob.digest)));
        }
        let bytes = self.contents.lock().expect("lock").get(&blob.digest).cloned().unwrap_or_default();
        self.bytes_served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let body = futures_util::stream::iter([Ok(bytes)]).boxed();
        Ok(VerifiedStream::new(body, blob.clone(), &self.name, repository).boxed())
    }

    async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<MountOutcome> {
        self.enter(Op::Mount, repository)?;
        if !self.has_blob(from, digest) {
            return Ok(MountOutcome::NotMounted(UploadSession { location: format!("memory://{repository}") }));
        }
        let mut repositories = self.repositories.lock().expect("lock");
        repositories.entry(repository.to_string()).or_default().blobs.insert(digest.clone());
        Ok(MountOutcome::Mounted)
    }

    async fn push_blob(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        body: BlobStream,
        _session: Option<UploadSession>,
    ) -> Result<()> {
        self.enter(Op::PushBlob, repository)?;
        let chunks: Vec<Bytes> = body.try_collect().await?;
        let bytes = Bytes::from(chunks.concat());
        if Digest::sha256_of(&bytes) != blob.digest {
            return Err(Error::BlobCorrupt {
                registry: self.name.clone(),
                repository: repository.to_string(),
                expected: blob.digest.clone(),
                reason: "uploaded bytes do not match".into(),
            });
        }
        self.contents.lock().expect("lock").insert(blob.digest.clone(), bytes);
        let mut repositories = self.repositories.lock().expect("lock");
        repositories.entry(repository.to_string()).or_default().blobs.insert(blob.digest.clone());
        Ok(())
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>> {
        self.enter(Op::ListTags, repository)?;
        let repositories = self.repositories.lock().expect("lock");
        match repositories.get(repository) {
            Some(repo) => Ok(repo.tags.keys().cloned().collect()),
            None => Err(self.not_found(repository, "repository".into())),
        }
    }

    async fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        self.enter(Op::ListReferrers, repository)?;
        if let Some(status) = *self.referrers_refusal.lock().expect("lock") {
            return Err(self.refusal(repository, "GET referrers".into(), status));
        }
        if !self.referrers_api {
            return Ok(None);
        }
        let repositories = self.repositories.lock().expect("lock");
        let mut found: Vec<Referrer> = repositories
            .get(repository)
            .map(|repo| repo.manifests.values().filter_map(Referrer::describe).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|(of, referrer)| {
                of == subject && artifact_type.is_none_or(|t| referrer.artifact_type.as_deref() == Some(t))
            })
            .map(|(_, referrer)| referrer)
            .collect();
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(Some(found))
    }
}
