//! Continuations: a record whose mapping is still unfinished at the invocation's deadline,
//! after progress, is answered as done and its mapping sent again to the function's own queue,
//! so the next worker picks it up within seconds instead of after the queue's visibility
//! timeout. A record without progress is redelivered as before, so a mapping that cannot
//! advance still reaches the dead-letter queue; a cap ends chains that never finish.

use crate::engine::Outcome;
use crate::sync::{RunStatus, SyncReport};

/// What becomes of one SQS record once the invocation's work is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// The mapping is in sync: delete the record.
    Done,
    /// Unfinished after progress: send the mapping again with this continuation count, and
    /// delete the record once that message is accepted.
    Continue {
        /// The count the continuation carries.
        count: u32,
    },
    /// Answer the record as a batch item failure: SQS redelivers it after the visibility
    /// timeout, and moves it to the dead-letter queue after `MaxReceiveCount` deliveries.
    Redeliver {
        /// Why, for the log.
        reason: Redelivery,
    },
}

/// Why a record is redelivered rather than done or continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Redelivery {
    /// Not started, refused, or stopped before anything ran.
    NoReport,
    /// Something failed before the deadline came: a retry after the visibility timeout is the
    /// right pace for it.
    Failed,
    /// At the deadline without progress (a stalled source, a throttled target).
    NoProgress,
    /// At the deadline after progress, but the chain already has the maximum continuations.
    Cap,
}

/// What a record's report shows it moved in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Progress {
    /// Image × target entries synced.
    pub(super) images: usize,
    /// Bytes of blob uploads that completed (also of images interrupted at the stop).
    pub(super) bytes_landed: u64,
}

impl Progress {
    pub(super) fn of(report: &SyncReport) -> Progress {
        let entries = report.mappings.iter().flat_map(|m| &m.images);
        entries.fold(Progress::default(), |progress, entry| Progress {
            images: progress.images + usize::from(entry.outcome == Outcome::Synced),
            bytes_landed: progress.bytes_landed + entry.stats.bytes_landed,
        })
    }

    fn made(&self, min_bytes: u64) -> bool {
        self.images > 0 || self.bytes_landed >= min_bytes
    }
}

/// Decides a record: `report` is `None` when nothing ran to a report, `at_deadline` says
/// whether the deadline margin had passed when the record's work ended, `count` is the
/// continuation count it arrived with.
pub(super) fn decide(
    report: Option<&SyncReport>,
    at_deadline: bool,
    count: u32,
    min_bytes: u64,
    max_continuations: u32,
) -> Decision {
    let redeliver = |reason| Decision::Redeliver { reason };
    let Some(report) = report else {
        return redeliver(Redelivery::NoReport);
    };
    if report.status == RunStatus::Success {
        return Decision::Done;
    }
    if !at_deadline {
        return redeliver(Redelivery::Failed);
    }
    if !Progress::of(report).made(min_bytes) {
        return redeliver(Redelivery::NoProgress);
    }
    if count >= max_continuations {
        return redeliver(Redelivery::Cap);
    }
    Decision::Continue { count: count + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StatsSnapshot;
    use crate::sync::{ImageResult, MappingReport};

    fn entry(outcome: Outcome, bytes_landed: u64) -> ImageResult {
        ImageResult {
            source: "up/a:v1".into(),
            target: "down/a:v1".into(),
            digest: None,
            target_digest: None,
            signer: None,
            warnings: Vec::new(),
            outcome,
            stats: StatsSnapshot { bytes_landed, ..StatsSnapshot::default() },
            duration_ms: 0,
        }
    }

    fn report(images: Vec<ImageResult>) -> SyncReport {
        let mapping = MappingReport {
            index: 0,
            key: "a -> a".into(),
            error: None,
            tags_kept: images.len(),
            tags_dropped: 0,
            invalid_tags: 0,
            images,
        };
        SyncReport::new(vec![mapping], 0)
    }

    fn interrupted(bytes_landed: u64) -> ImageResult {
        entry(Outcome::Failed { error: crate::sync::INTERRUPTED.into(), auth: false }, bytes_landed)
    }

    const MIN: u64 = 1000;

    #[test]
    fn a_finished_record_is_done_whatever_the_time() {
        let done = report(vec![entry(Outcome::Synced, 5)]);
        assert_eq!(decide(Some(&done), true, 3, MIN, 100), Decision::Done);
    }

    #[test]
    fn an_unfinished_record_with_progress_continues_with_the_next_count() {
        let one_image = report(vec![entry(Outcome::Synced, 0), interrupted(0)]);
        assert_eq!(decide(Some(&one_image), true, 0, MIN, 100), Decision::Continue { count: 1 });
        let enough_bytes = report(vec![interrupted(MIN)]);
        assert_eq!(decide(Some(&enough_bytes), true, 41, MIN, 100), Decision::Continue { count: 42 });
    }

    #[test]
    fn no_progress_a_failure_before_the_deadline_or_no_report_are_redelivered() {
        let few_bytes = report(vec![interrupted(MIN - 1)]);
        let no_progress = Decision::Redeliver { reason: Redelivery::NoProgress };
        assert_eq!(decide(Some(&few_bytes), true, 0, MIN, 100), no_progress);
        let skipped = report(vec![entry(Outcome::Skipped { reason: "up to date".into() }, 0), interrupted(0)]);
        assert_eq!(decide(Some(&skipped), true, 0, MIN, 100), no_progress, "an image already in place is no progress");
        let failed = report(vec![entry(Outcome::Synced, 0), interrupted(MIN)]);
        assert_eq!(decide(Some(&failed), false, 0, MIN, 100), Decision::Redeliver { reason: Redelivery::Failed });
        assert_eq!(decide(None, true, 0, MIN, 100), Decision::Redeliver { reason: Redelivery::NoReport });
    }

    #[test]
    fn the_cap_ends_a_chain() {
        let progress = report(vec![entry(Outcome::Synced, 0), interrupted(MIN)]);
        assert_eq!(decide(Some(&progress), true, 99, MIN, 100), Decision::Continue { count: 100 });
        assert_eq!(decide(Some(&progress), true, 100, MIN, 100), Decision::Redeliver { reason: Redelivery::Cap });
        assert_eq!(decide(Some(&progress), true, 0, MIN, 0), Decision::Redeliver { reason: Redelivery::Cap });
    }
}
