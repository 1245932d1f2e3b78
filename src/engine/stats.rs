//! Counters of a run and of each target, shared by concurrent transfers and read by
//! progress displays and reports.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Blobs streamed from source to target.
    pub blobs_copied: AtomicU64,
    /// Blobs already present at the target.
    pub blobs_skipped: AtomicU64,
    /// Blobs mounted from another repository of the target registry.
    pub blobs_mounted: AtomicU64,
    /// Mounts the target registry declined (202) although the blob was in the repository
    /// named as `from`: each was uploaded instead (ECR without `BLOB_MOUNTING`).
    pub blobs_mount_declined: AtomicU64,
    /// Non-distributable (foreign) layers left out because the source does not hold them:
    /// the target's manifest lists them as the source's does, and clients fetch them by URL.
    pub blobs_foreign_left_out: AtomicU64,
    /// Manifests pushed (children and tags).
    pub manifests_pushed: AtomicU64,
    /// Referrers (signatures, SBOMs, attestations) brought to the target.
    pub referrers_copied: AtomicU64,
    /// Bytes sent to targets so far, including transfers still running and failed attempts.
    pub bytes: AtomicU64,
    /// Bytes of the blobs whose upload completed (declared sizes): what a run interrupted now
    /// would not have to send again, unlike `bytes`.
    pub bytes_landed: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Blobs streamed.
    pub blobs_copied: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Blobs mounted.
    pub blobs_mounted: u64,
    /// Mounts declined, then uploaded.
    pub blobs_mount_declined: u64,
    /// Non-distributable layers left out (the source does not hold them).
    pub blobs_foreign_left_out: u64,
    /// Manifests pushed.
    pub manifests_pushed: u64,
    /// Referrers brought to the target.
    pub referrers_copied: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Bytes of completed blob uploads.
    pub bytes_landed: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            blobs_copied: self.blobs_copied.load(Ordering::Relaxed),
            blobs_skipped: self.blobs_skipped.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
            blobs_mount_declined: self.blobs_mount_declined.load(Ordering::Relaxed),
            blobs_foreign_left_out: self.blobs_foreign_left_out.load(Ordering::Relaxed),
            manifests_pushed: self.manifests_pushed.load(Ordering::Relaxed),
            referrers_copied: self.referrers_copied.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_landed: self.bytes_landed.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::AddAssign for StatsSnapshot {
    fn add_assign(&mut self, other: Self) {
        self.blobs_copied += other.blobs_copied;
        self.blobs_skipped += other.blobs_skipped;
        self.blobs_mounted += other.blobs_mounted;
        self.blobs_mount_declined += other.blobs_mount_declined;
        self.blobs_foreign_left_out += other.blobs_foreign_left_out;
        self.manifests_pushed += other.manifests_pushed;
        self.referrers_copied += other.referrers_copied;
        self.bytes += other.bytes;
        self.bytes_landed += other.bytes_landed;
    }
}

/// `1.5 GiB`, `320 KiB`, `12 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Which counter an event bumps.
#[derive(Debug, Clone, Copy)]
pub(super) enum Event {
    Copied,
    Skipped,
    Mounted,
    MountDeclined,
    ForeignLeftOut,
    ManifestPushed,
    ReferrerCopied,
}

impl Stats {
    pub(super) fn record(&self, event: Event) {
        let counter = match event {
            Event::Copied => &self.blobs_copied,
            Event::Skipped => &self.blobs_skipped,
            Event::Mounted => &self.blobs_mounted,
            Event::MountDeclined => &self.blobs_mount_declined,
            Event::ForeignLeftOut => &self.blobs_foreign_left_out,
            Event::ManifestPushed => &self.manifests_pushed,
            Event::ReferrerCopied => &self.referrers_copied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A blob of `size` bytes completed its upload.
    pub(super) fn landed(&self, size: u64) {
        self.bytes_landed.fetch_add(size, Ordering::Relaxed);
    }
}
