//! Graph shapes through `plan` and `sync`: a diamond costs one GET per distinct manifest in
//! both, and an image nested past the cap fails alone while the other mappings land.

use super::*;
use crate::engine::MAX_INDEX_DEPTH;
use crate::testing::testdata::nested;

const DIAMOND_AND_DEEP: &str = src_to_a!(
    "  artifacts: { enabled: false }
mappings:
  - from: team/diamond
  - from: team/deep
  - from: team/plain
"
);

fn world() -> World {
    let world = World::new(DIAMOND_AND_DEEP, &["src", "a"]);
    let source = world.registry("src");
    source.insert_nested("team/diamond", "v1", &nested(21, 6, 2));
    source.insert_nested("team/deep", "v1", &nested(22, 2000, 1));
    source.insert("team/plain", "v1", &testdata::index(23, &[], &PLATFORMS, false));
    world.reset_counts();
    world
}

fn only(world: &World, index: usize) -> Vec<&Mapping> {
    world.config.mappings.iter().filter(|m| m.index == index).collect()
}

#[tokio::test]
async fn planning_a_diamond_costs_one_get_per_distinct_manifest_plus_the_tag_heads() {
    let world = world();
    let plan = plan(&only(&world, 0), &world.clients(), true).await;
    let image = &plan.mappings[0].images[0];
    assert!(image.error.is_none(), "{image:?}");
    assert_eq!(image.bytes, Some(nested(21, 6, 2).leaf.blobs.iter().map(|b| b.descriptor.size).sum()));
    // 7 distinct manifests; the issue measured 132 requests for this shape.
    let expected = [(Op::ListTags, 1), (Op::HeadManifest, 1), (Op::GetManifest, 7)];
    assert_eq!(world.registry("src").counts(), expected.into());
    assert_eq!(world.registry("a").counts(), [(Op::HeadManifest, 1)].into());
}

#[tokio::test]
async fn syncing_a_diamond_reads_each_distinct_manifest_once() {
    let world = world();
    let mappings = only(&world, 0);
    let clients = world.clients();
    let plan = plan(&mappings, &clients, false).await;
    let engine = Engine::new(Limits::new(8, []), Cancel::default(), 8);
    let report = execute(&plan, &mappings, &clients, &engine, 8).await;
    assert_eq!(report.status, RunStatus::Success, "{}", report.summary());
    let source = world.registry("src");
    assert_eq!(source.count(Op::GetManifest), 7, "{:?}", source.counts());
    assert_eq!(source.count(Op::GetBlob), 2, "config and layer once");
    assert_eq!(world.registry("a").count(Op::PutManifest), 7);
}

#[tokio::test]
async fn an_image_nested_past_the_cap_fails_alone_and_the_plan_foretells_it() {
    let world = world();
    let planned = plan(&only(&world, 1), &world.clients(), true).await;
    let error = planned.mappings[0].images[0].error.as_ref().expect("the plan says it would fail");
    assert!(error.message.contains("would fail") && error.message.contains("more than 8 levels"), "{error}");
    assert!(
        world.registry("src").count(Op::GetManifest) <= MAX_INDEX_DEPTH as u64 + 1,
        "{:?}",
        world.registry("src").counts()
    );

    let report = world.sync().await;
    assert_eq!(report.status, RunStatus::Partial, "{}", report.summary());
    assert_eq!(report.totals.synced, 2, "the diamond and the plain index land");
    assert_eq!(report.totals.failed, 1);
    let deep = &report.mappings[1].images[0];
    assert!(matches!(&deep.outcome, Outcome::Failed { error, .. } if error.contains("more than 8 levels")), "{deep:?}");
    assert!(world.registry("a").tags("team/deep").is_empty(), "nothing of it pushed");
    assert!(!world.registry("a").tags("team/plain").is_empty());
}
