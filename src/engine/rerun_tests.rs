//! Engine rules for interrupted runs: a signal starts no queued transfer, and a rerun mounts
//! what a killed run left in another repository of the target registry instead of uploading
//! it again.

use super::*;
use crate::testing::memory::{MemoryRegistry, Op};
use crate::testing::testdata::{self, Built};
use std::time::Duration;

fn job<'a>(
    source: &'a MemoryRegistry,
    repository: &'a str,
    target: &'a MemoryRegistry,
    to: &'a str,
) -> ImageJob<'a, MemoryRegistry> {
    ImageJob {
        source: Source { registry: source, repository, reference: "v1".into(), digest: None, media_type: None },
        targets: vec![Target { registry: target, repository: to, reference: "v1".into(), current: None }],
        artifacts: None,
        verify: None,
        platforms: &[],
    }
}

/// Two images sharing a 50 kB layer, each with a small layer of its own.
fn two_images() -> (Built, Built) {
    let image = |own| Built::Image(testdata::image(&[(500, 50_000), (own, 100)], ("linux", "amd64"), false));
    (image(501), image(502))
}

#[tokio::test]
async fn a_transfer_queued_behind_the_limit_when_the_signal_comes_never_starts() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &two_images().0);
    let cancel = Cancel::default();
    let engine = Engine::new(Limits::new(1, []), cancel.clone(), 4);
    // Another transfer holds the only slot: every blob of the image queues behind it.
    let held = engine.limits.acquire(["src"].into_iter()).await;
    let signal = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        // The slot frees after the signal, as a transfer in flight finishing in the grace period.
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
    };
    let image = job(&source, "app", &target, "app");
    let (report, ()) = tokio::join!(engine.copy(&image), signal);
    assert_eq!(source.count(Op::GetBlob), 0, "no source read began after the signal");
    assert_eq!(target.count(Op::PushBlob), 0);
    assert!(matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.starts_with("interrupted")));
    assert!(target.tags("app").is_empty(), "no tag on missing blobs");
}

#[tokio::test]
async fn a_transfer_whose_turn_comes_before_the_signal_runs() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &two_images().0);
    let engine = Engine::new(Limits::new(1, []), Cancel::default(), 4);
    let held = engine.limits.acquire(["src"].into_iter()).await;
    let release = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
    };
    let image = job(&source, "app", &target, "app");
    let (report, ()) = tokio::join!(engine.copy(&image), release);
    assert_eq!(report.targets[0].outcome, Outcome::Synced);
    assert_eq!(source.count(Op::GetBlob), 3);
}

/// A target where a killed run left the shared layer in `mirror/a` (its image complete) and
/// nothing in `mirror/b`.
async fn after_a_killed_run(source: &MemoryRegistry, target: &MemoryRegistry) -> Built {
    let (a, b) = two_images();
    source.insert("team/a", "v1", &a);
    source.insert("team/b", "v1", &b);
    let first = Engine::new(Limits::new(4, []), Cancel::default(), 4);
    first.copy(&job(source, "team/a", target, "mirror/a")).await;
    target.reset_counts();
    b
}

#[tokio::test]
async fn a_rerun_mounts_a_blob_a_killed_run_left_in_an_up_to_date_repository() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let b = after_a_killed_run(&source, &target).await;
    let rerun = Engine::new(Limits::new(4, []), Cancel::default(), 4);
    rerun.note_up_to_date("dst", "mirror/a");

    let report = rerun.copy(&job(&source, "team/b", &target, "mirror/b")).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced);
    assert_eq!(target.tags("mirror/b")["v1"], *b.digest());
    let stats = report.targets[0].stats;
    assert_eq!((stats.blobs_copied, stats.blobs_mounted), (2, 1), "the shared layer is mounted, not uploaded");
    assert_eq!(target.count(Op::PushBlob), 2, "config and own layer only");
    assert_eq!(target.count(Op::Mount), 1);
    assert_eq!(
        target.count(Op::BlobExists),
        3 + 3,
        "a HEAD per blob at mirror/b, a probe at mirror/a for each it lacked"
    );
}

#[tokio::test]
async fn without_a_repository_that_may_hold_it_the_rerun_uploads_and_probes_nothing() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    after_a_killed_run(&source, &target).await;
    let rerun = Engine::new(Limits::new(4, []), Cancel::default(), 4);

    let report = rerun.copy(&job(&source, "team/b", &target, "mirror/b")).await;
    let stats = report.targets[0].stats;
    assert_eq!((stats.blobs_copied, stats.blobs_mounted), (3, 0));
    assert_eq!(target.count(Op::BlobExists), 3, "one HEAD per blob, no probe");
}

#[tokio::test]
async fn a_rerun_mounts_from_a_repository_whose_image_is_being_copied_too() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let (a, b) = two_images();
    source.insert("team/a", "v1", &a);
    source.insert("team/b", "v1", &b);
    // The killed run landed the shared layer in mirror/a but not its manifest.
    let Built::Image(image_a) = &a else { panic!("an image") };
    let shared = &image_a.blobs[1];
    target.push_blob("mirror/a", &shared.descriptor, shared.stream(), None).await.unwrap();
    target.reset_counts();

    let rerun = Engine::new(Limits::new(4, []), Cancel::default(), 4);
    // mirror/a's manifest is read first, so the run knows it lists the shared layer.
    rerun.peers.want("dst", "mirror/a", std::slice::from_ref(&shared.descriptor.digest));
    let report = rerun.copy(&job(&source, "team/b", &target, "mirror/b")).await;
    assert_eq!(report.targets[0].stats.blobs_mounted, 1);
    assert_eq!(target.count(Op::PushBlob), 2);
}

#[tokio::test]
async fn a_cold_run_of_two_repositories_sharing_a_layer_asks_no_more_than_before() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let (a, b) = two_images();
    source.insert("team/a", "v1", &a);
    source.insert("team/b", "v1", &b);
    let engine = Engine::new(Limits::new(4, []), Cancel::default(), 4);
    let (job_a, job_b) = (job(&source, "team/a", &target, "mirror/a"), job(&source, "team/b", &target, "mirror/b"));
    let (first, second) = tokio::join!(engine.copy(&job_a), engine.copy(&job_b));
    assert_eq!(first.targets[0].outcome, Outcome::Synced);
    assert_eq!(second.targets[0].outcome, Outcome::Synced);
    assert_eq!(target.count(Op::PushBlob), 5, "the shared layer is uploaded once");
    assert_eq!(target.count(Op::Mount), 1);
    assert_eq!(
        target.count(Op::BlobExists),
        5,
        "one HEAD per blob and repository, probes included, but none for the mounted one: its mount asks"
    );
}
