//! Mount sources beyond what this run has confirmed. A run killed with `kill -9` leaves blobs
//! in target repositories that its ledger, new in the rerun, knows nothing about; a blob one
//! repository received then is needed by another repository of the same registry now.
//! Before uploading a blob, the repositories that may hold it are asked (one HEAD each, at
//! most [`MOUNT_PROBES`]) and the blob is mounted from the first that does:
//! - repositories whose manifests, read in this run, list the blob (their images are being
//!   copied too, perhaps finishing what the killed run began);
//! - repositories whose image the plan found up to date at that registry (they hold
//!   complete images from earlier runs), told by [`Engine::note_up_to_date`].
//!
//! A repository found lacking the blob is remembered, so it is not asked twice, and its own
//! copy of the blob, once the blob is somewhere in the registry, mounts without asking again:
//! a cold run sends no more HEADs than before.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use super::Engine;
use crate::oci::Digest;
use crate::registry::Registry;

/// Repositories asked per blob upload at most. Each probe is one HEAD; the blob is about to
/// be uploaded in full otherwise, so a few are cheap, but a registry with hundreds of
/// repositories up to date must not cost hundreds of HEADs per new blob.
pub const MOUNT_PROBES: usize = 4;

/// What the run knows about where blobs may be, per target registry.
#[derive(Debug, Default)]
pub(super) struct Peers {
    /// Repositories whose image is up to date, by registry.
    up_to_date: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Repositories whose manifests list a blob, by registry and digest.
    wanted: Mutex<HashMap<(String, Digest), BTreeSet<String>>>,
    /// Repositories known to lack a blob (a HEAD or a bulk answer said so).
    absent: Mutex<HashSet<(String, String, Digest)>>,
}

impl Peers {
    /// `repository` of `registry` lists `digests` in an image being copied.
    pub(super) fn want(&self, registry: &str, repository: &str, digests: &[Digest]) {
        let mut wanted = self.wanted.lock().expect("peers lock poisoned");
        for digest in digests {
            wanted.entry((registry.to_string(), digest.clone())).or_default().insert(repository.to_string());
        }
    }

    /// `repository` of `registry` lacks `digest`, as of now.
    pub(super) fn lacks(&self, registry: &str, repository: &str, digest: &Digest) {
        let key = (registry.to_string(), repository.to_string(), digest.clone());
        self.absent.lock().expect("peers lock poisoned").insert(key);
    }

    /// Whether `repository` was found lacking `digest` in this run.
    pub(super) fn known_to_lack(&self, registry: &str, repository: &str, digest: &Digest) -> bool {
        let key = (registry.to_string(), repository.to_string(), digest.clone());
        self.absent.lock().expect("peers lock poisoned").contains(&key)
    }

    /// Repositories of `registry` other than `except` that may hold `digest`, those listing
    /// it first, none known to lack it, at most [`MOUNT_PROBES`].
    fn candidates(&self, registry: &str, digest: &Digest, except: &str) -> Vec<String> {
        let key = (registry.to_string(), digest.clone());
        let wanted = self.wanted.lock().expect("peers lock poisoned").get(&key).cloned().unwrap_or_default();
        let up_to_date =
            self.up_to_date.lock().expect("peers lock poisoned").get(registry).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        wanted
            .into_iter()
            .chain(up_to_date)
            .filter(|repository| repository != except && seen.insert(repository.clone()))
            .filter(|repository| !self.known_to_lack(registry, repository, digest))
            .take(MOUNT_PROBES)
            .collect()
    }
}

impl Engine {
    /// Tells the engine that `repository` of `registry` (as [`Registry::name`] gives it)
    /// already has its image: a blob a new image needs may be mounted from there.
    pub fn note_up_to_date(&self, registry: &str, repository: &str) {
        let mut up_to_date = self.peers.up_to_date.lock().expect("peers lock poisoned");
        up_to_date.entry(registry.to_string()).or_default().insert(repository.to_string());
    }

    /// Asks the repositories of `target`'s registry that may hold `digest` (see the module
    /// notes), and returns the first that does, now recorded in the ledger as a mount source.
    pub(super) async fn probe_mount_source<R: Registry>(
        &self,
        target: &R,
        repository: &str,
        digest: &Digest,
    ) -> Option<String> {
        let registry = target.name();
        for candidate in self.peers.candidates(registry, digest, repository) {
            match target.blob_exists(&candidate, digest).await {
                Ok(true) => {
                    self.ledger.found(registry, &candidate, digest);
                    return Some(candidate);
                }
                Ok(false) => self.peers.lacks(registry, &candidate, digest),
                // Only a hint: the upload goes ahead as it would without it.
                Err(error) => {
                    tracing::debug!(registry, repository = %candidate, %digest, %error, "mount source probe failed")
                }
            }
        }
        None
    }
}
