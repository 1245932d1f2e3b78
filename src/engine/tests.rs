//! Engine rules against the counting in-memory registry: each optimisation with a positive and
//! a negative count.

use super::*;
use crate::testing::memory::{MemoryRegistry, Op};
use crate::testing::testdata::{self, Built};
use std::time::Duration;

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

fn engine() -> Engine {
    Engine::new(Limits::new(8, []), Cancel::default(), 4)
}

fn index(seed: u64) -> Built {
    testdata::index(seed, &[(0, 10_000)], &PLATFORMS, false)
}

fn target<'a>(registry: &'a MemoryRegistry, repository: &'a str) -> Target<'a, MemoryRegistry> {
    Target { registry, repository, reference: "v1".into(), current: None }
}

fn job<'a>(
    source: &'a MemoryRegistry,
    repository: &'a str,
    targets: Vec<Target<'a, MemoryRegistry>>,
) -> ImageJob<'a, MemoryRegistry> {
    ImageJob {
        source: Source { registry: source, repository, reference: "v1".into(), digest: None, media_type: None },
        targets,
        artifacts: None,
        platforms: &[],
        verify: None,
    }
}

fn statuses(report: &ImageReport) -> Vec<&Outcome> {
    report.targets.iter().map(|t| &t.outcome).collect()
}

#[tokio::test]
async fn a_cold_copy_lands_every_part_and_the_tag() {
    let (source, destination) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let built = index(1);
    source.insert("app", "v1", &built);

    let report = engine().copy(&job(&source, "app", vec![target(&destination, "mirror")])).await;
    assert_eq!(statuses(&report), [&Outcome::Synced]);
    assert_eq!(destination.tags("mirror")["v1"], *built.digest());
    for blob in built.blobs() {
        assert!(destination.has_blob("mirror", &blob.descriptor.digest));
    }
    assert_eq!(report.targets[0].stats.blobs_copied, 5);
    assert_eq!(report.targets[0].stats.manifests_pushed, 3);
}

#[tokio::test]
async fn a_warm_copy_sends_only_heads() {
    let (source, destination) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &index(2));
    engine().copy(&job(&source, "app", vec![target(&destination, "mirror")])).await;
    source.reset_counts();
    destination.reset_counts();

    let report = engine().copy(&job(&source, "app", vec![target(&destination, "mirror")])).await;
    assert!(matches!(statuses(&report)[..], [Outcome::Skipped { .. }]));
    assert_eq!(source.counts(), [(Op::HeadManifest, 1)].into());
    assert_eq!(destination.counts(), [(Op::HeadManifest, 1)].into());
}

#[tokio::test]
async fn three_targets_read_each_source_blob_once() {
    let source = MemoryRegistry::new("src");
    let targets: Vec<MemoryRegistry> = ["a", "b", "c"].iter().map(|n| MemoryRegistry::new(n)).collect();
    let built = index(3);
    source.insert("app", "v1", &built);

    let job = job(&source, "app", targets.iter().map(|t| target(t, "app")).collect());
    let report = engine().copy(&job).await;
    assert_eq!(statuses(&report), [&Outcome::Synced; 3]);
    assert_eq!(source.count(Op::GetBlob), built.blobs().len() as u64, "one read per distinct blob");
    assert_eq!(source.count(Op::GetManifest), 3, "index and two children, once each");
    for registry in &targets {
        assert_eq!(registry.tags("app")["v1"], *built.digest());
        assert_eq!(registry.count(Op::PushBlob), built.blobs().len() as u64);
    }
}

#[tokio::test]
async fn blobs_shared_by_images_are_mounted_from_where_they_landed() {
    let (source, destination) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let first = Built::Image(testdata::image(&[(9, 5000), (10, 100)], PLATFORMS[0], false));
    let second = Built::Image(testdata::image(&[(9, 5000), (11, 100)], PLATFORMS[0], false));
    source.insert("one", "v1", &first);
    source.insert("two", "v1", &second);
    let engine = engine();

    engine.copy(&job(&source, "one", vec![target(&destination, "one")])).await;
    destination.reset_counts();
    let report = engine.copy(&job(&source, "two", vec![target(&destination, "two")])).await;

    assert_eq!(report.targets[0].stats.blobs_mounted, 1, "the shared base layer");
    assert_eq!(report.targets[0].stats.blobs_copied, 2, "config and own layer");
    assert_eq!(destination.count(Op::Mount), 1);
    assert_eq!(destination.count(Op::PushBlob), 2);
}

#[tokio::test]
async fn a_fresh_engine_does_not_mount_across_registries() {
    let (source, destination) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &index(4));
    engine().copy(&job(&source, "app", vec![target(&destination, "mirror")])).await;
    assert_eq!(destination.count(Op::Mount), 0, "the source is another registry");
}

#[tokio::test]
async fn copies_within_one_registry_mount_from_the_source_repository() {
    let registry = MemoryRegistry::new("one");
    let built = index(5);
    registry.insert("app", "v1", &built);
    registry.reset_counts();

    let report = engine().copy(&job(&registry, "app", vec![target(&registry, "copy")])).await;
    assert_eq!(report.targets[0].stats.blobs_mounted, built.blobs().len() as u64);
    assert_eq!(registry.count(Op::GetBlob), 0);
    assert_eq!(registry.count(Op::PushBlob), 0);
}

#[tokio::test]
async fn a_failing_target_does_not_stop_the_others() {
    let (source, good, bad) = (MemoryRegistry::new("src"), MemoryRegistry::new("good"), MemoryRegistry::new("bad"));
    let built = index(6);
    source.insert("app", "v1", &built);
    bad.break_repository("app");

    let report = engine().copy(&job(&source, "app", vec![target(&bad, "app"), target(&good, "app")])).await;
    assert!(matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.contains("500")), "{report:?}");
    assert_eq!(report.targets[1].outcome, Outcome::Synced);
    assert_eq!(good.tags("app")["v1"], *built.digest());
}

#[tokio::test]
async fn a_corrupt_blob_fails_the_image_and_no_tag_points_at_it() {
    let (source, destination) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let built = index(7);
    source.insert("app", "v1", &built);
    let Built::Index { children, .. } = &built else { unreachable!() };
    let corrupt = &children[1].blobs[2].descriptor.digest;
    source.corrupt_blob(corrupt);

    let report = engine().copy(&job(&source, "app", vec![target(&destination, "app")])).await;
    assert!(
        matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.contains("is corrupt")),
        "{report:?}"
    );
    assert!(destination.tags("app").is_empty(), "the index tag must not exist");
    assert!(!destination.has_blob("app", corrupt));
    assert!(!destination.has_manifest("app", &children[1].manifest.digest), "the broken child is not pushed");
}

#[tokio::test]
async fn a_cancelled_run_pushes_nothing_new() {
    let (source, destination) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &index(8));
    let cancel = Cancel::default();
    cancel.cancel();
    let engine = Engine::new(Limits::new(8, []), cancel, 4);

    let report = engine.copy(&job(&source, "app", vec![target(&destination, "app")])).await;
    assert!(matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.contains("interrupted")));
    assert_eq!(destination.count(Op::PushBlob), 0);
    assert_eq!(destination.count(Op::PutManifest), 0);
}

#[tokio::test]
async fn two_images_sharing_blobs_and_targets_do_not_wait_on_each_other() {
    let source = MemoryRegistry::new("src");
    let (a, b) = (MemoryRegistry::new("a"), MemoryRegistry::new("b"));
    let first = Built::Image(testdata::image(&[(20, 3000)], PLATFORMS[0], false));
    let second = Built::Image(testdata::image(&[(20, 3000)], PLATFORMS[1], false));
    source.insert("one", "v1", &first);
    source.insert("two", "v1", &second);
    let engine = engine();
    // Opposite target orders: each image could claim the shared layer at one target first.
    let job_one = job(&source, "one", vec![target(&a, "x"), target(&b, "x")]);
    let job_two = job(&source, "two", vec![target(&b, "x"), target(&a, "x")]);

    let both = futures_util::future::join(engine.copy(&job_one), engine.copy(&job_two));
    let (one, two) = tokio::time::timeout(Duration::from_secs(5), both).await.expect("no deadlock");
    assert_eq!(statuses(&one), [&Outcome::Synced; 2]);
    assert_eq!(statuses(&two), [&Outcome::Synced; 2]);
    assert_eq!(
        a.count(Op::PushBlob) + b.count(Op::PushBlob),
        6,
        "shared layer once per registry, plus two configs each"
    );
}

#[tokio::test]
async fn an_immutable_tag_at_another_digest_fails_the_image_clearly() {
    let source = MemoryRegistry::new("src");
    let (immutable, other) = (MemoryRegistry::with_immutable_tags("ecr"), MemoryRegistry::new("other"));
    let (old, new) = (index(40), index(41));
    immutable.insert("app", "v1", &old);
    source.insert("app", "v1", &new);

    let report = engine().copy(&job(&source, "app", vec![target(&immutable, "app"), target(&other, "app")])).await;
    assert!(
        matches!(&report.targets[0].outcome, Outcome::Failed { error, .. }
            if error.contains("tag v1 is immutable") && error.contains("ecr/app") && error.contains("TAG_INVALID")),
        "{report:?}"
    );
    assert_eq!(immutable.tags("app")["v1"], *old.digest(), "the immutable tag is not moved");
    assert_eq!(immutable.count(Op::PutManifest), 3, "children by digest, then the refused tag, once (not retried)");
    assert_eq!(report.targets[1].outcome, Outcome::Synced, "the other target is unaffected");
}

#[tokio::test]
async fn an_immutable_tag_already_at_the_source_digest_is_a_skip() {
    let source = MemoryRegistry::new("src");
    let immutable = MemoryRegistry::with_immutable_tags("ecr");
    let built = index(42);
    immutable.insert("app", "v1", &built);
    source.insert("app", "v1", &built);

    let report = engine().copy(&job(&source, "app", vec![target(&immutable, "app")])).await;
    assert!(matches!(statuses(&report)[..], [Outcome::Skipped { .. }]), "{report:?}");
    assert_eq!(immutable.count(Op::PutManifest), 0);
}

#[tokio::test]
async fn the_live_tally_settles_each_target_and_expects_only_the_bytes_that_move() {
    let (source, a, b) = (MemoryRegistry::new("src"), MemoryRegistry::new("a"), MemoryRegistry::new("b"));
    source.insert("app", "v1", &index(11));
    source.insert("other", "v1", &index(12));
    // `a` has the image already; `b` has the shared 10 kB base (through another image) only.
    engine().copy(&job(&source, "app", vec![target(&a, "app")])).await;
    engine().copy(&job(&source, "other", vec![target(&b, "app")])).await;

    let engine = engine();
    let report = engine.copy(&job(&source, "app", vec![target(&a, "app"), target(&b, "app")])).await;
    assert!(matches!(statuses(&report)[..], [Outcome::Skipped { .. }, Outcome::Synced]));
    let headway = engine.stats().headway();
    assert_eq!((headway.started, headway.synced, headway.up_to_date, headway.failed), (2, 1, 1, 0));
    assert_eq!(headway.bytes_expected, report.targets[1].stats.bytes, "the base b had is not expected");
    assert!(headway.bytes > 0 && headway.bytes < 10_000, "only the children's own blobs moved");
    assert_eq!(engine.stats().transfers.count(), 0, "no transfer left in flight");
}
