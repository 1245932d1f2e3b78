//! Graph shapes a registry may serve, against the counting in-memory registry: each distinct
//! manifest read once whatever the shape, and nesting past the cap refused before any push.

use super::*;
use crate::testing::memory::{MemoryRegistry, Op};
use crate::testing::testdata::{Nested, nested};

fn engine() -> Engine {
    Engine::new(Limits::new(8, []), Cancel::default(), 4)
}

fn job<'a>(source: &'a MemoryRegistry, tag: &str, target: &'a MemoryRegistry) -> ImageJob<'a, MemoryRegistry> {
    ImageJob {
        source: Source { registry: source, repository: "app", reference: tag.into(), digest: None, media_type: None },
        targets: vec![Target { registry: target, repository: "mirror", reference: tag.into(), current: None }],
        artifacts: None,
        platforms: &[],
        verify: None,
    }
}

fn seeded(graph: &Nested) -> (MemoryRegistry, MemoryRegistry) {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert_nested("app", "v1", graph);
    source.reset_counts();
    (source, target)
}

#[tokio::test]
async fn a_diamond_costs_one_get_per_distinct_manifest() {
    // Six indexes, each listing its child twice: 7 distinct manifests, 127 paths.
    let graph = nested(1, 6, 2);
    let (source, target) = seeded(&graph);

    let report = engine().copy(&job(&source, "v1", &target)).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(target.tags("mirror")["v1"], graph.top().digest);
    assert!(graph.indexes.iter().all(|index| target.has_manifest("mirror", &index.digest)));
    assert_eq!(source.count(Op::GetManifest), 7, "one GET per distinct manifest: {:?}", source.counts());
    assert_eq!(source.count(Op::HeadManifest), 1, "the tag");
    assert_eq!(target.count(Op::PutManifest), 7, "each manifest pushed once: {:?}", target.counts());
    assert_eq!(target.count(Op::HeadManifest), 1, "the tag only: new there, its children are pushed unasked");
    assert_eq!(report.targets[0].stats.blobs_copied, 2, "config and layer, once");
}

#[tokio::test]
async fn a_manifest_two_tags_share_is_read_once_per_run() {
    let graph = nested(2, 2, 1);
    let (source, target) = seeded(&graph);
    source.insert_nested("app", "latest", &graph);
    source.reset_counts();
    let run = engine();

    for tag in ["v1", "latest"] {
        let report = run.copy(&job(&source, tag, &target)).await;
        assert!(!matches!(report.targets[0].outcome, Outcome::Failed { .. }), "{report:?}");
    }
    assert_eq!(source.count(Op::GetManifest), 3, "memoised for the run: {:?}", source.counts());
    // A fresh engine is a new run: it reads again.
    let other = MemoryRegistry::new("other");
    engine().copy(&job(&source, "v1", &other)).await;
    assert_eq!(source.count(Op::GetManifest), 6);
}

#[tokio::test]
async fn an_index_nested_to_the_cap_is_copied() {
    let graph = nested(3, MAX_INDEX_DEPTH, 1);
    let (source, target) = seeded(&graph);
    let report = engine().copy(&job(&source, "v1", &target)).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(target.tags("mirror")["v1"], graph.top().digest);
}

#[tokio::test]
async fn an_index_nested_past_the_cap_fails_naming_the_depth_and_pushes_nothing() {
    let graph = nested(4, MAX_INDEX_DEPTH + 1, 1);
    let (source, target) = seeded(&graph);
    let report = engine().copy(&job(&source, "v1", &target)).await;
    let Outcome::Failed { error, auth } = &report.targets[0].outcome else { panic!("{report:?}") };
    assert!(error.contains("nested more than 8 levels deep") && error.contains("src/app:v1"), "{error}");
    assert!(!auth);
    assert_eq!(target.count(Op::PutManifest) + target.count(Op::PushBlob) + target.count(Op::Mount), 0);
    assert!(target.tags("mirror").is_empty());
}

#[tokio::test]
async fn an_index_nested_thousands_deep_stops_at_the_cap_without_overflowing_the_stack() {
    let graph = nested(5, 5000, 1);
    let (source, target) = seeded(&graph);
    let report = engine().copy(&job(&source, "v1", &target)).await;
    assert!(
        matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.contains("nested more than 8"))
    );
    // The top, then one level at a time up to the first index past the cap.
    assert_eq!(source.count(Op::GetManifest), MAX_INDEX_DEPTH as u64 + 1, "{:?}", source.counts());
    assert_eq!(target.count(Op::PutManifest), 0);
}

#[tokio::test]
async fn children_a_target_already_has_are_not_read_from_the_source() {
    let graph = nested(6, 3, 2);
    let (source, target) = seeded(&graph);
    engine().copy(&job(&source, "v1", &target)).await;
    // The tag moves to a new top over the same children.
    let moved = nested(6, 4, 2);
    source.insert_nested("app", "v1", &moved);
    source.reset_counts();
    target.reset_counts();

    let report = engine().copy(&job(&source, "v1", &target)).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(source.count(Op::GetManifest), 1, "only the new top: {:?}", source.counts());
    assert_eq!(target.count(Op::PutManifest), 1);
}
