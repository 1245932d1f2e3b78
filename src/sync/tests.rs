//! Sync rules against the counting in-memory registry.

use std::sync::Arc;

use super::*;
use crate::cancel::Cancel;
use crate::config::Config;
use crate::engine::Limits;
use crate::engine::Outcome;
use crate::plan::{Failure, Plan, discover as plan};
use crate::testing::memory::{MemoryRegistry, Op};
use crate::testing::testdata::{self, Built};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

struct World {
    config: Config,
    registries: Vec<(String, Arc<MemoryRegistry>)>,
}

impl World {
    fn new(yaml: &str, names: &[&str]) -> Self {
        let config = Config::parse(yaml, "test.yaml", |name| (name == "AWS_ACCOUNT_ID").then(|| "123456789012".into()))
            .unwrap_or_else(|e| panic!("{e}"));
        let registries = names.iter().map(|n| (n.to_string(), Arc::new(MemoryRegistry::new(n)))).collect();
        World { config, registries }
    }

    fn registry(&self, name: &str) -> &MemoryRegistry {
        &self.registries.iter().find(|(n, _)| n == name).expect("registry in the world").1
    }

    fn clients(&self) -> Clients<MemoryRegistry> {
        Clients::new(self.registries.iter().map(|(n, r)| (n.clone(), Ok(r.clone()))))
    }

    async fn plan(&self) -> Plan {
        let mappings: Vec<&Mapping> = self.config.mappings.iter().collect();
        plan(&mappings, &self.clients(), false).await
    }

    async fn sync(&self) -> SyncReport {
        let mappings: Vec<&Mapping> = self.config.mappings.iter().collect();
        let clients = self.clients();
        let plan = plan(&mappings, &clients, false).await;
        let engine = Engine::new(Limits::new(8, []), Cancel::default(), 8);
        execute(&plan, &mappings, &clients, &engine, 8).await
    }

    fn reset_counts(&self) {
        self.registries.iter().for_each(|(_, r)| r.reset_counts());
    }
}

const TWO_TARGETS: &str = "
registries:
  src: { url: src.test }
  a: { url: a.test }
  b: { url: b.test }
defaults:
  source: src
  targets: [a, b]
mappings:
  - from: team/api
    to: mirror/api
  - from: team/web
    to: mirror/web
    tags: { glob: \"v*\" }
";

fn seeded_two_targets() -> (World, Vec<Built>) {
    seeded(TWO_TARGETS)
}

fn seeded(yaml: &str) -> (World, Vec<Built>) {
    let world = World::new(yaml, &["src", "a", "b"]);
    let source = world.registry("src");
    // Every image shares the 50 kB base layer (seed 0).
    let images: Vec<Built> = (1..=4).map(|seed| testdata::index(seed, &[(0, 50_000)], &PLATFORMS, false)).collect();
    source.insert("team/api", "v1", &images[0]);
    source.insert("team/api", "v2", &images[1]);
    source.insert("team/web", "v1", &images[2]);
    source.insert("team/web", "dev", &images[3]);
    (world, images)
}

#[tokio::test]
async fn fan_out_lands_exact_tag_sets_reading_each_blob_once() {
    let (world, images) = seeded_two_targets();
    let report = world.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{}", report.summary());

    for target in ["a", "b"] {
        let registry = world.registry(target);
        let api: Vec<_> = registry.tags("mirror/api").into_iter().collect();
        assert_eq!(
            api,
            [("v1".to_string(), images[0].digest().clone()), ("v2".to_string(), images[1].digest().clone())]
        );
        let web: Vec<String> = registry.tags("mirror/web").into_keys().collect();
        assert_eq!(web, ["v1"], "the glob drops `dev`");
    }
    let distinct: std::collections::HashSet<_> =
        images[..3].iter().flat_map(|i| i.blobs()).map(|b| b.descriptor.digest.clone()).collect();
    assert_eq!(world.registry("src").count(Op::GetBlob), distinct.len() as u64, "each source blob read once");
    assert_eq!(report.totals.synced, 6, "three images to two targets");
}

#[tokio::test]
async fn a_warm_run_without_referrers_lists_tags_and_sends_heads_only() {
    let yaml = TWO_TARGETS.replace("  targets: [a, b]\n", "  targets: [a, b]\n  artifacts: { enabled: false }\n");
    let (world, _) = seeded(&yaml);
    world.sync().await;
    world.reset_counts();

    let report = world.sync().await;
    assert_eq!(report.totals.skipped, 6);
    assert_eq!(report.totals.synced, 0);
    assert_eq!(world.registry("src").counts(), [(Op::HeadManifest, 3), (Op::ListTags, 2)].into());
    for target in ["a", "b"] {
        assert_eq!(world.registry(target).counts(), [(Op::HeadManifest, 3)].into(), "{target}");
    }
}

#[tokio::test]
async fn a_prefixed_target_gets_every_mapping_under_its_prefix_and_a_warm_run_heads_there() {
    let yaml = TWO_TARGETS.replace("a: { url: a.test }", "a: { url: a.test, prefix: mas-images }");
    let world = World::new(&yaml, &["src", "a", "b"]);
    let image = testdata::index(1, &[(0, 1000)], &PLATFORMS, false);
    world.registry("src").insert("team/api", "v1", &image);

    let report = world.sync().await;
    assert_eq!(report.totals.synced, 2, "{}", report.summary());
    assert_eq!(world.registry("a").tags("mas-images/mirror/api")["v1"], *image.digest());
    assert!(world.registry("a").tags("mirror/api").is_empty(), "nothing outside the prefix");
    assert_eq!(world.registry("b").tags("mirror/api")["v1"], *image.digest());

    world.reset_counts();
    let warm = world.sync().await;
    assert_eq!(warm.totals.skipped, 2, "the prefixed repository is where the HEAD looks");
    let targets: Vec<&str> = warm.mappings[0].images.iter().map(|i| i.target.as_str()).collect();
    assert_eq!(targets, ["a/mas-images/mirror/api:v1", "b/mirror/api:v1"]);
}

#[tokio::test]
async fn a_changed_tag_is_the_only_thing_copied() {
    let (world, images) = seeded_two_targets();
    world.sync().await;
    let changed = testdata::index(9, &[(0, 50_000)], &PLATFORMS, false);
    world.registry("src").insert("team/api", "v2", &changed);
    world.reset_counts();

    let report = world.sync().await;
    assert_eq!(report.totals.synced, 2, "{}", report.summary());
    assert_eq!(world.registry("a").tags("mirror/api")["v2"], *changed.digest());
    assert_eq!(world.registry("a").tags("mirror/api")["v1"], *images[0].digest());
    assert_eq!(world.registry("a").count(Op::Mount), 0, "base already in the repository");
    assert_eq!(world.registry("src").count(Op::GetBlob), 4, "two configs and two platform layers, not the base");
}

#[tokio::test]
async fn a_failing_mapping_leaves_the_others_synced() {
    let (world, _) = seeded_two_targets();
    world.registry("src").break_repository("team/web");

    let report = world.sync().await;
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(RunStatus::of_plan(&world.plan().await), RunStatus::Partial, "the plan agrees");
    let web = &report.mappings[1];
    assert!(web.error.as_ref().is_some_and(|e| e.message.contains("500") && !e.auth), "{:?}", web.error);
    assert_eq!(report.mappings[0].images.len(), 4);
    assert_eq!(world.registry("b").tags("mirror/api").len(), 2);
}

#[tokio::test]
async fn a_failing_target_fails_its_images_only() {
    let (world, _) = seeded_two_targets();
    world.registry("b").break_repository("mirror/api");

    let report = world.sync().await;
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(report.totals.failed, 2, "{}", report.summary());
    assert_eq!(report.totals.synced, 4);
    assert_eq!(world.registry("a").tags("mirror/api").len(), 2);
}

#[tokio::test]
async fn min_tags_fails_the_mapping_before_anything_is_copied() {
    let world = World::new(
        "registries:\n  src: { url: s.test }\n  a: { url: a.test }\nmappings:\n  - from: x\n    source: src\n    targets: a\n    tags: { glob: \"v*\", min_tags: 2 }\n",
        &["src", "a"],
    );
    world.registry("src").insert("x", "v1", &testdata::index(1, &[], &PLATFORMS, false));
    let report = world.sync().await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        report.mappings[0].error,
        Some(Failure::new("only 1 of 1 tags match the filter, fewer than min_tags: 2"))
    );
    assert_eq!(world.registry("a").count(Op::PutManifest), 0);
}

/// The world's clients, with `broken` replaced by a client that could not be built.
fn clients_with_broken(world: &World, broken: &str, failure: Failure) -> Clients<MemoryRegistry> {
    Clients::new(world.registries.iter().map(|(name, registry)| {
        let client = if name == broken { Err(failure.clone()) } else { Ok(registry.clone()) };
        (name.clone(), client)
    }))
}

async fn sync_with(world: &World, clients: &Clients<MemoryRegistry>) -> SyncReport {
    let mappings: Vec<&Mapping> = world.config.mappings.iter().collect();
    let plan = plan(&mappings, clients, false).await;
    let engine = Engine::new(Limits::new(8, []), Cancel::default(), 8);
    execute(&plan, &mappings, clients, &engine, 8).await
}

fn credentials_failure(registry: &str) -> Failure {
    Failure { message: format!("cannot obtain credentials for {registry}: bad key file"), auth: true }
}

#[tokio::test]
async fn a_source_whose_credentials_cannot_be_obtained_fails_every_mapping_on_authentication() {
    let (world, _) = seeded_two_targets();
    let clients = clients_with_broken(&world, "src", credentials_failure("src.test"));
    let mappings: Vec<&Mapping> = world.config.mappings.iter().collect();
    assert_eq!(RunStatus::of_plan(&plan(&mappings, &clients, false).await), RunStatus::AuthFailed, "the plan agrees");
    let report = sync_with(&world, &clients).await;
    assert_eq!(report.status, RunStatus::AuthFailed, "{}", report.summary());
    assert_eq!(report.totals.mappings_failed, 2);
    assert!(report.mappings.iter().all(|m| m.error.as_ref().is_some_and(|e| e.auth)), "{}", report.summary());
}

#[tokio::test]
async fn a_target_whose_client_cannot_be_built_fails_its_images_instead_of_vanishing() {
    let (world, _) = seeded_two_targets();
    let report = sync_with(&world, &clients_with_broken(&world, "b", credentials_failure("b.test"))).await;
    assert_eq!(report.status, RunStatus::Partial, "{}", report.summary());
    assert_eq!((report.totals.synced, report.totals.failed), (3, 3), "{}", report.summary());
    let at_b: Vec<&ImageResult> =
        report.mappings.iter().flat_map(|m| &m.images).filter(|i| i.target.starts_with("b/")).collect();
    assert_eq!(at_b.len(), 3, "{}", report.summary());
    assert!(
        at_b.iter().all(|i| matches!(&i.outcome, Outcome::Failed { error, auth: true } if error.contains("b.test")))
    );

    let only_b = World::new(&TWO_TARGETS.replace("targets: [a, b]", "targets: [b]"), &["src", "a", "b"]);
    for repository in ["team/api", "team/web"] {
        only_b.registry("src").insert(repository, "v1", &testdata::index(1, &[], &PLATFORMS, false));
    }
    let report = sync_with(&only_b, &clients_with_broken(&only_b, "b", credentials_failure("b.test"))).await;
    assert_eq!(report.status, RunStatus::AuthFailed, "{}", report.summary());
}

#[tokio::test]
async fn images_still_in_flight_when_stopped_are_reported_interrupted_and_nothing_is_tagged() {
    let (world, _) = seeded_two_targets();
    let mappings: Vec<&Mapping> = world.config.mappings.iter().collect();
    let clients = world.clients();
    let plan = plan(&mappings, &clients, false).await;
    let engine = Engine::new(Limits::new(8, []), Cancel::default(), 8);
    let report = execute_until(&plan, &mappings, &clients, &engine, 8, std::future::ready(())).await;

    assert_eq!(report.status, RunStatus::Failed, "{}", report.summary());
    assert_eq!(report.totals.failed, 6, "three images at two targets, all reported: {}", report.summary());
    let interrupted = report.mappings.iter().flat_map(|m| &m.images).all(|i| {
        matches!(&i.outcome, Outcome::Failed { error, auth: false } if error == INTERRUPTED) && i.digest.is_some()
    });
    assert!(interrupted, "{}", report.summary());
    assert!(
        report.summary().contains("failed src/team/api:v1 -> a/mirror/api:v1: interrupted"),
        "{}",
        report.summary()
    );
    for target in ["a", "b"] {
        assert_eq!(world.registry(target).count(Op::PutManifest), 0);
    }
}

/// The published examples, planned against in-memory registries named as in each file.
mod examples {
    use super::*;

    fn example(name: &str) -> String {
        let path = format!("{}/tests/fixtures/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn image(seed: u64) -> Built {
        Built::Image(testdata::image(&[(seed, 100)], PLATFORMS[0], false))
    }

    #[tokio::test]
    async fn latest_20_semver_keeps_the_newest_20_releases() {
        let world = World::new(&example("latest-20-semver.yaml"), &["chainguard", "ecr"]);
        let source = world.registry("chainguard");
        for minor in 0..25 {
            source.insert("chainguard/nginx", &format!("1.{minor}.0"), &image(minor));
        }
        source.insert("chainguard/nginx", "1.30.0-rc1", &image(100));
        source.insert("chainguard/nginx", "latest", &image(101));

        let plan = world.plan().await;
        let kept = &plan.mappings[0].kept;
        assert_eq!(kept.len(), 20);
        assert_eq!((kept.first().unwrap().as_str(), kept.last().unwrap().as_str()), ("1.24.0", "1.5.0"));
        assert_eq!(plan.mappings[0].to, "nginx");
    }

    #[tokio::test]
    async fn ecr_minimal_mirrors_every_tag() {
        let world = World::new(&example("ecr-minimal.yaml"), &["src", "ecr"]);
        for tag in ["latest", "latest-dev", "20240101"] {
            world.registry("src").insert("chainguard/static", tag, &image(tag.len() as u64));
        }
        let report = world.sync().await;
        assert_eq!(report.totals.synced, 3);
        assert_eq!(world.registry("ecr").tags("static").len(), 3);
    }

    #[tokio::test]
    async fn helm_chart_and_images_take_one_pinned_tag_each_from_two_sources() {
        let world = World::new(&example("helm-chart-and-images.yaml"), &["ghcr", "quay", "ecr"]);
        let chart = Built::Image(testdata::helm_chart("argo-cd", "7.6.0"));
        world.registry("ghcr").insert("argoproj/argo-helm/argo-cd", "7.6.0", &chart);
        world.registry("ghcr").insert("argoproj/argo-helm/argo-cd", "7.7.0", &image(1));
        let controller = testdata::index(2, &[], &PLATFORMS, false);
        world.registry("quay").insert("argoproj/argocd", "v2.13.0", &controller);
        world.registry("quay").insert("argoproj/argocd", "v2.14.0", &image(3));

        let report = world.sync().await;
        assert_eq!(report.status, RunStatus::Success, "{}", report.summary());
        let ecr = world.registry("ecr");
        assert_eq!(
            ecr.tags("argo/argo-cd").into_iter().collect::<Vec<_>>(),
            [("7.6.0".to_string(), chart.digest().clone())]
        );
        assert_eq!(
            ecr.tags("argo/argocd").into_iter().collect::<Vec<_>>(),
            [("v2.13.0".to_string(), controller.digest().clone())]
        );
    }

    #[tokio::test]
    async fn vendor_profile_maps_each_source_to_its_own_target_repository() {
        let world = World::new(&example("vendor-ecr-profile.yaml"), &["my-source", "vendor-source", "mirror"]);
        world.registry("my-source").insert("platform/api", "v1.0", &image(1));
        world.registry("my-source").insert("platform/api", "main", &image(2));
        world.registry("vendor-source").insert("vendor/agent", "v3", &image(3));

        world.sync().await;
        let mirror = world.registry("mirror");
        assert_eq!(mirror.tags("platform/api").into_keys().collect::<Vec<_>>(), ["v1.0"]);
        assert_eq!(mirror.tags("third-party/agent").into_keys().collect::<Vec<_>>(), ["v3"]);
    }

    #[tokio::test]
    async fn gar_example_targets_the_project_repository_path() {
        let world = World::new(&example("gar.yaml"), &["src", "gar"]);
        world.registry("src").insert("chainguard/static", "latest", &image(1));
        world.sync().await;
        assert_eq!(world.registry("gar").tags("my-project/my-repo/static").len(), 1);
    }
}

/// A config with registries `src` and `a`, `defaults` from `src` to `a`, then `rest` (more
/// defaults and the mappings): the shape the submodules' scenarios share.
macro_rules! src_to_a {
    ($rest:literal) => {
        concat!(
            "\nregistries:\n  src: { url: src.test }\n  a: { url: a.test }\n",
            "defaults:\n  source: src\n  targets: a\n",
            $rest
        )
    };
}

mod graphs;
mod panics;
mod referrers;
mod run;

#[tokio::test]
async fn the_live_tally_ends_equal_to_the_report_totals_with_up_to_date_targets_settled_by_the_plan() {
    let (world, _) = seeded_two_targets();
    world.sync().await;
    let changed = testdata::index(9, &[(0, 50_000)], &PLATFORMS, false);
    world.registry("src").insert("team/api", "v2", &changed);

    let mappings: Vec<&Mapping> = world.config.mappings.iter().collect();
    let clients = world.clients();
    let plan = plan(&mappings, &clients, false).await;
    let engine = Engine::new(Limits::new(8, []), Cancel::default(), 8);
    let report = execute(&plan, &mappings, &clients, &engine, 8).await;
    let headway = engine.stats().headway();
    let totals = report.totals;
    assert_eq!(
        (headway.planned, headway.synced, headway.up_to_date, headway.failed),
        (
            (totals.synced + totals.skipped + totals.failed) as u64,
            totals.synced as u64,
            totals.skipped as u64,
            totals.failed as u64
        ),
        "{}",
        report.summary()
    );
    assert_eq!(headway.started + headway.presettled, headway.planned, "every target is counted once");
    assert_eq!(headway.waiting(), 0);
}
