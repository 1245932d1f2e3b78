//! Referrers in a sync: `artifacts.require` per image, the cost of a warm run with referrers
//! on, and dry runs that list them.

use super::*;
use crate::oci::cosign_tag;

/// Two targets, every image required to be signed.
fn signed_yaml() -> String {
    TWO_TARGETS.replace("  targets: [a, b]\n", "  targets: [a, b]\n  artifacts: { require: true }\n")
}

/// `v1` signed with cosign's tag schema, `v2` unsigned.
async fn signed_and_unsigned(yaml: &str) -> (World, Built, Built) {
    let world = World::new(yaml, &["src", "a", "b"]);
    let source = world.registry("src");
    let (signed, unsigned) = (testdata::index(1, &[], &PLATFORMS, false), testdata::index(2, &[], &PLATFORMS, false));
    source.insert("team/api", "v1", &signed);
    source.insert("team/api", "v2", &unsigned);
    let Built::Index { index, .. } = &signed else { unreachable!() };
    let signature = Built::Image(testdata::cosign_signature(index, 1));
    testdata::push(source, "team/api", &cosign_tag(signed.digest(), "sig"), &signature).await.unwrap();
    (world, signed, unsigned)
}

#[tokio::test]
async fn require_fails_only_the_unsigned_image() {
    let (world, signed, _) = signed_and_unsigned(&signed_yaml()).await;

    let report = world.sync().await;
    assert_eq!(report.status, RunStatus::Partial, "{}", report.summary());
    assert_eq!((report.totals.synced, report.totals.failed), (2, 2), "{}", report.summary());
    let failed = report.mappings[0].images.iter().filter(|i| matches!(i.outcome, Outcome::Failed { .. }));
    assert!(failed.clone().all(|i| i.source.ends_with(":v2")));
    for target in ["a", "b"] {
        let tags = world.registry(target).tags("mirror/api");
        assert_eq!(tags["v1"], *signed.digest());
        assert!(tags.contains_key(&cosign_tag(signed.digest(), "sig")), "the signature came along");
        assert!(!tags.contains_key("v2"), "nothing of the unsigned image");
    }
}

#[tokio::test]
async fn a_warm_run_with_referrers_and_nothing_signed_costs_one_api_probe_more() {
    let (world, _) = seeded_two_targets();
    world.sync().await;
    world.reset_counts();

    let report = world.sync().await;
    assert_eq!((report.totals.skipped, report.totals.synced), (6, 0), "{}", report.summary());
    // Discovery's tag lists (reused for the fallback tags) and HEADs, and one API probe for
    // the registry. It has no API and no tag follows the `sha256-` schemas, so nothing can
    // refer to any manifest there: no index is read to list its children.
    let expected = [(Op::HeadManifest, 3), (Op::ListTags, 2), (Op::ListReferrers, 1)];
    assert_eq!(world.registry("src").counts(), expected.into());
    for target in ["a", "b"] {
        // Nothing refers to these images upstream, so targets are not even asked.
        assert_eq!(world.registry(target).counts(), [(Op::HeadManifest, 3)].into(), "{target}");
    }
}

#[tokio::test]
async fn a_dry_run_lists_the_referrers_that_would_come_along() {
    let (world, signed, _) = signed_and_unsigned(&signed_yaml()).await;
    let mappings: Vec<&Mapping> = world.config.mappings.iter().collect();

    let plan = plan(&mappings, &world.clients(), true).await;
    let images = &plan.mappings[0].images;
    let v1 = images.iter().find(|i| i.tag == "v1").unwrap();
    assert_eq!(v1.referrers.len(), 1, "{v1:?}");
    assert_eq!(&v1.referrers[0].subject, signed.digest());
    assert!(v1.referrers[0].kind.ends_with(".sig"), "{:?}", v1.referrers[0]);
    let v2 = images.iter().find(|i| i.tag == "v2").unwrap();
    assert!(v2.referrers.is_empty());
    assert!(v2.error.as_ref().is_some_and(|e| e.message.starts_with("would fail: no referrer")), "{v2:?}");
    assert_eq!(world.registry("a").count(Op::PutManifest), 0);
}

#[tokio::test]
async fn a_warm_run_with_referrers_reads_no_manifest_of_a_single_image() {
    let world = World::new(TWO_TARGETS, &["src", "a", "b"]);
    let image = Built::Image(testdata::image(&[(5, 1000)], PLATFORMS[0], false));
    world.registry("src").insert("team/api", "v1", &image);
    world.registry("src").insert("team/web", "v1", &image);
    world.sync().await;
    world.reset_counts();

    let report = world.sync().await;
    assert_eq!(report.totals.skipped, 4, "{}", report.summary());
    // HEAD said it is a single manifest: its only subject is itself, no GET needed.
    let expected = [(Op::HeadManifest, 2), (Op::ListTags, 2), (Op::ListReferrers, 1)];
    assert_eq!(world.registry("src").counts(), expected.into());
}

#[tokio::test]
async fn a_dry_run_asks_for_the_referrers_api_once_and_reuses_discoverys_tag_list() {
    let (world, _, _) = signed_and_unsigned(&signed_yaml()).await;
    let mappings: Vec<&Mapping> = world.config.mappings.iter().collect();
    world.reset_counts();

    plan(&mappings, &world.clients(), true).await;
    let source = world.registry("src");
    // Two images in one repository: one probe for the registry; the tag lists are discovery's
    // own, one per mapping (`team/web` is empty here), none for the tag schema.
    assert_eq!(source.count(Op::ListReferrers), 1, "{:?}", source.counts());
    assert_eq!(source.count(Op::ListTags), 2, "{:?}", source.counts());
}
