//! `ocync sync`, `plan`, `validate`, `expand` and `tags` against real registries.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::copy::{describe, ocync, ocync_with_env, seed};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tools::{TempConfig, skopeo, skopeo_digest};
use ocync::testing::testdata::{self, Built};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

/// Tags skopeo lists for `reference` (`host:port/repository`), sorted.
fn skopeo_tags(reference: &str) -> Vec<String> {
    let output = Command::new(skopeo())
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(output.status.success(), "skopeo list-tags {reference}: {}", String::from_utf8_lossy(&output.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut tags: Vec<String> =
        listing["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    tags.sort();
    tags
}

/// Requests by method at a registry.
fn by_method(registry: &TestRegistry) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (method, path) in registry.requests() {
        let kind = if path.contains("/blobs/") {
            "blob"
        } else if path.contains("/referrers/") {
            "referrers"
        } else if path.contains("/tags/") {
            "tags"
        } else {
            "manifest"
        };
        *counts.entry(format!("{method} {kind}")).or_default() += 1;
    }
    counts
}

struct Corpus {
    source: TestRegistry,
    targets: [TestRegistry; 2],
    config: TempConfig,
    images: BTreeMap<(&'static str, &'static str), Built>,
}

/// Two repositories, five tags, every image sharing a 200 kB base; two targets.
async fn corpus() -> Corpus {
    let source = TestRegistry::plain();
    let targets = [TestRegistry::plain(), TestRegistry::plain()];
    let mut images = BTreeMap::new();
    for (seed, (repository, tag)) in [
        ("team/api", "1.0.0"),
        ("team/api", "1.1.0"),
        ("team/api", "2.0.0-rc1"),
        ("team/web", "v1"),
        ("team/web", "debug"),
    ]
    .into_iter()
    .enumerate()
    {
        let built = testdata::index(seed as u64 + 1, &[(0, 200_000)], &PLATFORMS, false);
        seed_image(&source, repository, tag, &built).await;
        images.insert((repository, tag), built);
    }
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{}\" }}\n  one: {{ url: \"http://{}\" }}\n  two: {{ url: \"http://{}\" }}\n\
         target_groups:\n  mirrors: [one, two]\n\
         defaults:\n  source: upstream\n  targets: mirrors\n\
         mappings:\n  - from: team/api\n    to: mirror/api\n    tags: {{ semver: \">=1.0\" }}\n  - from: team/web\n    tags: {{ exclude: debug }}\n",
        source.host, targets[0].host, targets[1].host
    ));
    Corpus { source, targets, config, images }
}

async fn seed_image(registry: &TestRegistry, repository: &str, tag: &str, built: &Built) {
    seed(registry, repository, tag, built).await;
}

#[tokio::test]
async fn sync_fans_out_to_two_targets_and_a_second_run_sends_no_blob() {
    let corpus = corpus().await;
    corpus.source.reset_log();

    let output = ocync(&["sync", "--config", &corpus.config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["status"], "success");
    assert_eq!(report["totals"]["synced"], 6, "three images to two targets");

    for target in &corpus.targets {
        assert_eq!(skopeo_tags(&target.skopeo_reference("mirror/api")), ["1.0.0", "1.1.0"], "the range drops the rc");
        assert_eq!(skopeo_tags(&target.skopeo_reference("team/web")), ["v1"], "debug is excluded");
        for ((repository, tag), built) in &corpus.images {
            let mirrored = if *repository == "team/api" { "mirror/api" } else { "team/web" };
            if ["1.0.0", "1.1.0", "v1"].contains(tag) {
                assert_eq!(
                    skopeo_digest(&target.skopeo_reference(&format!("{mirrored}:{tag}")), &[]),
                    built.digest().to_string()
                );
            }
        }
    }
    // The kept images' distinct blobs (the shared base once, each child's config and own
    // layer): each read from the source once.
    let distinct: std::collections::HashSet<_> = [("team/api", "1.0.0"), ("team/api", "1.1.0"), ("team/web", "v1")]
        .iter()
        .flat_map(|key| corpus.images[key].blobs())
        .map(|b| b.descriptor.digest.clone())
        .collect();
    assert_eq!(corpus.source.count("GET", "/blobs/"), distinct.len(), "each source blob read once");

    corpus.source.reset_log();
    corpus.targets.iter().for_each(TestRegistry::reset_log);
    let warm = ocync(&["sync", "--config", &corpus.config.path, "--json"]);
    assert_eq!(warm.status.code(), Some(0), "{}", describe(&warm));
    // Warm: one tag list per mapping and one HEAD per kept tag at the source; one HEAD per tag
    // per target. Referrers (on by default) add one referrers API probe at the source (404
    // here); no source tag follows the `sha256-` schemas, so no index is read for its children,
    // and nothing is asked at the targets, as nothing refers to these images.
    let expected = [("GET referrers", 1), ("GET tags", 2), ("HEAD manifest", 3)];
    assert_eq!(by_method(&corpus.source), expected.map(|(k, n)| (k.to_string(), n)).into());
    for target in &corpus.targets {
        assert_eq!(by_method(target), [("HEAD manifest".to_string(), 3)].into());
    }
}

#[tokio::test]
async fn plan_shows_kept_and_dropped_tags_and_writes_nothing() {
    let corpus = corpus().await;
    corpus.targets.iter().for_each(TestRegistry::reset_log);

    let output = ocync(&["plan", "--config", &corpus.config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON plan");
    let api = &plan["mappings"][0];
    let mut kept: Vec<&str> = api["kept"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    kept.sort();
    assert_eq!(kept, ["1.0.0", "1.1.0"]);
    assert_eq!(api["dropped"], serde_json::json!([{"tag": "2.0.0-rc1", "reason": "prerelease"}]));
    assert_eq!(api["images"][0]["targets"][0]["action"], "copy");
    assert!(api["images"][0]["bytes"].as_u64().unwrap() > 200_000, "bytes to move are estimated");
    for target in &corpus.targets {
        assert!(target.requests().iter().all(|(method, _)| method == "HEAD"), "a plan only looks");
    }

    let text = ocync(&["sync", "--dry-run", "--config", &corpus.config.path]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("drop debug: excluded by \"debug\""), "{stdout}");
    assert!(stdout.contains("copy 1.1.0 sha256:"), "{stdout}");
}

#[tokio::test]
async fn a_target_prefix_puts_each_mapping_under_it_at_that_target_only() {
    let corpus = corpus().await;
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{}\" }}\n  one: {{ url: \"http://{}\", prefix: mas-images/250731 }}\n  two: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: upstream\n  targets: [one, two]\n\
         mappings:\n  - from: team/web\n    to: web\n    tags: {{ glob: v1 }}\n",
        corpus.source.host, corpus.targets[0].host, corpus.targets[1].host
    ));
    let plan = ocync(&["sync", "--dry-run", "--config", &config.path]);
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(stdout.contains("-> one (mas-images/250731/web), two (web)"), "the dry run shows where: {stdout}");

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    let mut targets: Vec<&str> =
        report["mappings"][0]["images"].as_array().unwrap().iter().map(|i| i["target"].as_str().unwrap()).collect();
    targets.sort();
    let (one, two) = (&corpus.targets[0], &corpus.targets[1]);
    let mut expected = [format!("{}/mas-images/250731/web:v1", one.host), format!("{}/web:v1", two.host)];
    expected.sort();
    assert_eq!(targets, expected);

    let digest = corpus.images[&("team/web", "v1")].digest().to_string();
    assert_eq!(skopeo_digest(&one.skopeo_reference("mas-images/250731/web:v1"), &[]), digest);
    assert_eq!(skopeo_digest(&two.skopeo_reference("web:v1"), &[]), digest);
    for (registry, repositories) in [(one, ["mas-images/250731/web"]), (two, ["web"])] {
        let catalog: serde_json::Value = reqwest::get(format!("http://{}/v2/_catalog", registry.host))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the catalog answers")
            .json()
            .await
            .expect("a JSON catalog");
        assert_eq!(catalog["repositories"], serde_json::json!(repositories), "nothing else at {}", registry.host);
    }
}

#[tokio::test]
async fn one_broken_mapping_does_not_stop_the_others_and_exits_1() {
    let corpus = corpus().await;
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{}\" }}\n  one: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: upstream\n  targets: one\nmappings:\n  - from: team/missing\n  - from: team/web\n",
        corpus.source.host, corpus.targets[0].host
    ));
    let output = ocync(&["sync", "--config", &config.path]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("team/missing -> team/missing: FAILED: cannot list tags"), "{stdout}");
    assert_eq!(skopeo_tags(&corpus.targets[0].skopeo_reference("team/web")), ["debug", "v1"]);
}

#[tokio::test]
async fn sigterm_stops_new_work_and_never_leaves_a_tag_on_missing_blobs() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = Built::Image(testdata::image(&[(77, 300_000)], PLATFORMS[0], false));
    seed(&source, "team/app", "v1", &built).await;
    let layer = built.blobs()[1].descriptor.digest.to_string();
    let stalled = layer.clone();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&stalled) {
            Action::StallAfter(50_000)
        } else {
            Action::Forward
        }
    });
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\nmappings:\n  - from: team/app\n    source: up\n    targets: down\n",
        proxy.host, target.host
    ));

    let mut child = Command::new(env!("CARGO_BIN_EXE_ocync"))
        .args(["sync", "--config", &config.path, "--grace-period", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the layer download has started, then ask ocync to stop.
    for _ in 0..100 {
        if proxy.seen().iter().any(|r| r.target.ends_with(&layer)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "ocync did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    // The layer is still stalled when the grace period runs out: the report says so.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("one JSON report on stdout ({e}): {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["totals"]["failed"], 1, "{report}");
    let image = &report["mappings"][0]["images"][0];
    assert_eq!(image["target"], format!("{}/team/app:v1", target.host), "{report}");
    assert_eq!(image["status"], "failed", "{report}");
    assert!(image["error"].as_str().is_some_and(|e| e.starts_with("interrupted")), "{report}");
    let client = target.anonymous_client();
    use ocync::registry::Registry as _;
    assert_eq!(client.head_manifest("team/app", "v1").await.unwrap(), None, "no tag without all its blobs");
}

#[tokio::test]
async fn plan_exits_like_sync_would_1_when_some_mappings_fail_and_2_when_all_do() {
    let corpus = corpus().await;
    let config = |froms: &[&str]| {
        let mappings: String = froms.iter().map(|from| format!("  - from: {from}\n")).collect();
        TempConfig::new(&format!(
            "registries:\n  upstream: {{ url: \"http://{}\" }}\n  one: {{ url: \"http://{}\" }}\n\
             defaults:\n  source: upstream\n  targets: one\nmappings:\n{mappings}",
            corpus.source.host, corpus.targets[0].host
        ))
    };
    let some = config(&["team/missing", "team/web"]);
    let output = ocync(&["plan", "--config", &some.path]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));

    let all = config(&["team/missing", "team/gone"]);
    let output = ocync(&["plan", "--config", &all.path, "--json"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON plan");
    assert!(plan["mappings"][1]["error"].as_str().unwrap().starts_with("cannot list tags: "), "{plan}");
    let sync = ocync(&["sync", "--config", &all.path]);
    assert_eq!(sync.status.code(), Some(2), "sync agrees with its plan: {}", describe(&sync));
}

#[tokio::test]
async fn validate_reports_every_problem_with_its_path_and_exit_3() {
    let config = TempConfig::new(
        "registries:\n  src: { url: cgr.dev }\n  ecr: { url: 1.dkr.ecr.us-east-1.amazonaws.com }\nmappings:\n  - from: a\n    source: srcc\n    targets: ecr\n  - form: b\n",
    );
    let output = ocync(&["validate", &config.path]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("mappings[1] (line 8): unknown field `form`"), "{stderr}");
    assert!(stderr.contains("did you mean `from`?"), "{stderr}");

    let semantic = TempConfig::new(
        "registries:\n  src: { url: cgr.dev }\nmappings:\n  - from: a\n    source: srcc\n    targets: ecr\n    tags: { latest: 0 }\n",
    );
    let output = ocync(&["validate", &semantic.path]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "mappings[0].source (line 5): unknown registry `srcc`; did you mean `src`?",
        "mappings[0].targets (line 6): unknown target group or registry `ecr`",
        "mappings[0].tags.latest (line 7): must be at least 1",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }
}

#[tokio::test]
async fn every_published_example_validates() {
    let dir = format!("{}/tests/fixtures/examples", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let output = ocync_with_env(&["validate", path.to_str().unwrap()], &[("AWS_ACCOUNT_ID", "123456789012")]);
        assert_eq!(output.status.code(), Some(0), "{}: {}", path.display(), describe(&output));
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[tokio::test]
async fn expand_masks_secret_looking_variables_unless_asked() {
    let config = TempConfig::new(
        "registries:\n  corp: { url: \"${CORP_HOST}\", credentials: { username: bot, password: \"${CORP_TOKEN}\" } }\n",
    );
    let env = [("CORP_HOST", "registry.corp"), ("CORP_TOKEN", "tok-123-secret")];
    let masked = ocync_with_env(&["expand", &config.path], &env);
    let text = String::from_utf8_lossy(&masked.stdout);
    // The masked form is the parsed document: the password field is hidden whatever fills it.
    assert!(text.contains("url: registry.corp") && text.contains("password: <hidden>"), "{text}");
    assert!(!text.contains("tok-123-secret"));
    let shown = ocync_with_env(&["expand", "--show-secrets", &config.path], &env);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("tok-123-secret"));
}

#[tokio::test]
async fn tags_prints_what_a_filter_selects() {
    let registry = TestRegistry::plain();
    let image = Built::Image(testdata::image(&[(1, 100)], PLATFORMS[0], false));
    for tag in ["1.24.0", "1.25.0", "1.26.1", "1.27.0-rc1", "latest"] {
        seed(&registry, "lib/nginx", tag, &image).await;
    }
    let output = ocync(&["tags", &registry.reference("lib/nginx"), "--semver", ">=1.25", "--latest", "5"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1.26.1\n1.25.0\n");
}

#[tokio::test]
async fn paginated_tag_lists_are_followed_to_the_end_and_each_tag_is_synced_once() {
    const TAGS: [&str; 5] = ["v1", "v2", "v3", "v4", "v5"];
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let image = Built::Image(testdata::image(&[(3, 300)], PLATFORMS[0], false));
    for tag in TAGS {
        seed(&source, "team/app", tag, &image).await;
    }
    // distribution returns every tag in one answer; the proxy serves them two at a time.
    let proxy = FaultProxy::start(&source.host, |request| {
        crate::support::proxy::paginate_tags(request, "team/app", &TAGS, 2).unwrap_or(Action::Forward)
    });
    let pages_seen = || -> Vec<String> {
        proxy.seen().into_iter().filter(|r| r.target.contains("/tags/list")).map(|r| r.target).collect()
    };

    let listed = ocync(&["tags", &proxy.reference("team/app")]);
    assert_eq!(listed.status.code(), Some(0), "{}", describe(&listed));
    let mut printed: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_string).collect();
    printed.sort();
    assert_eq!(printed, TAGS, "every tag once: {}", describe(&listed));
    let pages = pages_seen();
    assert_eq!(pages.len(), 3, "three pages, each asked for once: {pages:?}");
    assert!(pages[1].ends_with("last=v2") && pages[2].ends_with("last=v4"), "{pages:?}");

    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\n\
         mappings:\n  - from: team/app\n    source: up\n    targets: down\n",
        proxy.host, target.host
    ));
    let output = ocync(&["sync", "--config", &config.path]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(pages_seen().len(), 6, "the sync walked the three pages once: {:?}", pages_seen());
    assert_eq!(skopeo_tags(&target.skopeo_reference("team/app")), TAGS);
    for tag in TAGS {
        assert_eq!(target.count("PUT", &format!("/manifests/{tag}")), 1, "{tag} pushed once");
    }
}
