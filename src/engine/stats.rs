//! Counters of a run and of each target, shared by concurrent transfers and read by
//! progress displays and reports; and, for a live view, the run's image tally, the bytes it
//! still expects to move and the transfers in flight ([`InFlight`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::report::{ImageReport, Outcome};
use super::transfers::InFlight;

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
    /// The run's tally of image targets, for a live view.
    pub images: ImageTally,
    /// Bytes the images started so far still mean to send: their blobs' sizes times their
    /// targets, less the blobs a target turned out to have or could mount.
    pub bytes_expected: AtomicU64,
    /// Blob transfers in flight.
    pub transfers: Arc<InFlight>,
}

/// Image targets (one image at one target, the unit of the report's totals) planned, started
/// and settled. Settled up front are those the engine never sees (up to date, failed while
/// planning); the engine settles the rest as each image finishes.
#[derive(Debug, Default)]
pub struct ImageTally {
    /// Planned in all.
    pub planned: AtomicU64,
    /// Settled by the plan alone, never handed to the engine.
    pub presettled: AtomicU64,
    /// Handed to the engine so far.
    pub started: AtomicU64,
    /// Copied.
    pub synced: AtomicU64,
    /// Already in place.
    pub up_to_date: AtomicU64,
    /// Failed.
    pub failed: AtomicU64,
}

/// A point-in-time reading of what a live view shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headway {
    /// Image targets planned.
    pub planned: u64,
    /// Image targets settled by the plan alone.
    pub presettled: u64,
    /// Image targets handed to the engine.
    pub started: u64,
    /// Image targets copied.
    pub synced: u64,
    /// Image targets already in place.
    pub up_to_date: u64,
    /// Image targets failed.
    pub failed: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Bytes still expected by the images started.
    pub bytes_expected: u64,
}

impl Headway {
    /// Image targets settled, whatever the outcome.
    pub fn done(&self) -> u64 {
        self.synced + self.up_to_date + self.failed
    }

    /// Image targets neither settled by the plan nor handed to the engine yet.
    pub fn waiting(&self) -> u64 {
        self.planned.saturating_sub(self.presettled + self.started)
    }
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

    /// Reads what a live view shows.
    pub fn headway(&self) -> Headway {
        let images = &self.images;
        Headway {
            planned: images.planned.load(Ordering::Relaxed),
            presettled: images.presettled.load(Ordering::Relaxed),
            started: images.started.load(Ordering::Relaxed),
            synced: images.synced.load(Ordering::Relaxed),
            up_to_date: images.up_to_date.load(Ordering::Relaxed),
            failed: images.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_expected: self.bytes_expected.load(Ordering::Relaxed),
        }
    }

    /// Adds a plan's image targets: `planned` in all, of which `up_to_date` and `failed`
    /// are settled without the engine. Several runs on one engine add up.
    pub fn plan_images(&self, planned: u64, up_to_date: u64, failed: u64) {
        self.images.planned.fetch_add(planned, Ordering::Relaxed);
        self.images.presettled.fetch_add(up_to_date + failed, Ordering::Relaxed);
        self.images.up_to_date.fetch_add(up_to_date, Ordering::Relaxed);
        self.images.failed.fetch_add(failed, Ordering::Relaxed);
    }

    /// Settles the targets of an image the engine has finished.
    pub(super) fn settle_image(&self, report: &ImageReport) {
        for target in &report.targets {
            let counter = match target.outcome {
                Outcome::Synced => &self.images.synced,
                Outcome::Skipped { .. } => &self.images.up_to_date,
                Outcome::Failed { .. } => &self.images.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `bytes` more to send.
    pub(super) fn expect_bytes(&self, bytes: u64) {
        self.bytes_expected.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` fewer to send (a blob the target had, or mounted).
    pub(super) fn unexpect_bytes(&self, bytes: u64) {
        let _ = self
            .bytes_expected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |expected| Some(expected.saturating_sub(bytes)));
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
