//! A panic in one mapping's task fails that mapping (or image) in the report; the run goes on
//! and every other mapping still lands.

use super::*;

const THREE_MAPPINGS: &str = src_to_a!(
    "mappings:
  - from: team/api
  - from: team/web
  - from: team/db
"
);

#[tokio::test]
async fn a_panic_in_discovery_or_execution_fails_only_its_own_mapping() {
    let world = World::new(THREE_MAPPINGS, &["src", "a"]);
    let source = world.registry("src");
    let image = testdata::index(1, &[(0, 1000)], &PLATFORMS, false);
    for repository in ["team/api", "team/web", "team/db"] {
        source.insert(repository, "v1", &image);
    }
    // One panics while its tags are listed (discovery), one while its manifest is read (copy).
    source.panic_on("team/api", Op::ListTags);
    source.panic_on("team/web", Op::GetManifest);

    let report = world.sync().await;

    assert_eq!(report.status, RunStatus::Partial, "{}", report.summary());
    let [api, web, db] = &report.mappings[..] else { panic!("three mappings: {}", report.summary()) };
    let api_error = &api.error.as_ref().expect("the discovery panic fails the mapping").message;
    assert!(api_error.starts_with("internal error while discovering tags: injected fault"), "{api_error}");
    let [web_image] = &web.images[..] else { panic!("one image: {}", report.summary()) };
    assert!(
        matches!(&web_image.outcome, Outcome::Failed { error, .. } if error.starts_with("internal error while copying the image: injected fault")),
        "{:?}",
        web_image.outcome
    );
    assert!(world.registry("a").tags("team/web").is_empty(), "nothing tagged for the panicked image");
    assert_eq!(db.images.len(), 1);
    assert_eq!(db.images[0].outcome, Outcome::Synced, "{}", report.summary());
    assert_eq!(world.registry("a").tags("team/db")["v1"], *image.digest(), "the good mapping landed");
    assert_eq!((report.totals.synced, report.totals.failed), (1, 1), "{}", report.summary());
    assert!(report.summary().contains("FAILED: internal error while discovering tags"), "{}", report.summary());
}
