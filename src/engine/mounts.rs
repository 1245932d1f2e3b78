//! Mounts a registry declined. A mount names a repository that, as far as this run knows,
//! holds the blob, so a registry answering it with a fresh upload session (202) instead of
//! 201 does not mount at all: ECR does this unless the account setting `BLOB_MOUNTING` is
//! enabled, and then every shared layer is uploaded again, silently. Each declined mount is
//! counted in the stats, and the first one per registry is a WARN saying what to enable.

use super::{Engine, Event, Live};
use crate::oci::Digest;
use crate::registry::Registry;

impl Engine {
    /// Counts a declined mount of `digest` from `from`, warning once per registry.
    pub(super) fn mount_declined<R: Registry>(&self, live: &Live<'_, R>, digest: &Digest, from: &str) {
        self.record(live, Event::MountDeclined);
        let registry = live.target.registry.name();
        if self.ledger.first_declined_mount(registry) {
            tracing::warn!(
                registry,
                repository = live.target.repository,
                %digest,
                from,
                "the registry declined to mount a blob from another of its repositories and takes a full upload instead; on ECR, enable cross-repository mounting with `aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED` (counted as blobs_mount_declined)"
            );
        }
    }
}
