//! Issue 15's fidelity items through the binary: every config problem in one run, GAR's
//! upload rule, plan totals over shared layers, and a target whose client cannot be built.

use ocync::registry::kind::RegistryKind;
use ocync::registry::{HttpRegistry, RegistrySettings};
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tools::TempConfig;

#[test]
fn validate_names_parse_and_semantic_errors_in_three_places_with_paths_and_lines() {
    let config = TempConfig::new(concat!(
        "registries:\n",
        "  src: { url: cgr.dev }\n",
        "  gar: { url: us-docker.pkg.dev, upload: sideways }\n",
        "  corp: { url: registry.corp, max_concurrent: 0 }\n",
        "mappings:\n",
        "  - from: a\n",
        "    source: src\n",
        "    targets: [gar, corp]\n",
        "    tag: { latest: 1 }\n",
        "  - from: b\n",
        "    source: src\n",
        "    targets: gar\n",
        "    tags: { sort: newest }\n",
    ));
    let output = ocync(&["validate", &config.path]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr.lines().filter_map(|line| line.trim().strip_prefix("- ")).collect();
    let expected = [
        "registries.gar.upload (line 3): unknown variant, expected `monolithic` or `chunked`",
        "mappings[0] (line 9): unknown field `tag`",
        "registries.corp.max_concurrent (line 4): must be between 1 and 1024",
        "mappings[1].tags.sort (line 13): unknown sort `newest`, expected `semver` or `alpha`",
    ];
    for want in expected {
        assert!(problems.iter().any(|p| p.starts_with(want)), "missing {want:?} in {problems:#?}");
    }
    assert!(problems.iter().any(|p| p.ends_with("did you mean `tags`?")), "{problems:#?}");
    assert_eq!(problems.len(), expected.len(), "nothing reported twice or as a consequence: {problems:#?}");
}

#[test]
fn validate_refuses_chunked_uploads_for_a_gar_registry_with_exit_3() {
    let config = TempConfig::new("registries:\n  gar:\n    url: europe-west4-docker.pkg.dev\n    upload: chunked\n");
    let output = ocync(&["validate", &config.path]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("registries.gar.upload (line 4): chunked uploads are not supported by GAR or GCR"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gar_registry_refusing_a_monolithic_upload_fails_naming_the_quirk_and_sends_no_chunk() {
    let target = TestRegistry::plain();
    let proxy = FaultProxy::start(&target.host, |request| {
        if request.method == "PUT" && request.target.contains("/blobs/uploads/") && request.body_len > 0 {
            Action::Respond { status: 413, headers: vec![], body: "too large".into() }
        } else {
            Action::Forward
        }
    });
    let client = |kind| {
        let mut settings = RegistrySettings::new(&proxy.host);
        (settings.plain_http, settings.kind) = (true, kind);
        HttpRegistry::new(settings).expect("client for the proxy")
    };
    let built = Built::Image(testdata::image(&[(90, 2000)], ("linux", "amd64"), false));

    let error = testdata::push(&client(RegistryKind::Gar), "project/repo/app", "v1", &built)
        .await
        .expect_err("GAR has no chunked uploads to fall back to");
    assert!(matches!(error, ocync::registry::Error::MonolithicUploadRefused { status: 413, .. }), "{error:?}");
    assert!(error.to_string().contains("does not accept chunked uploads (a GAR/GCR quirk)"), "{error}");
    assert!(!error.is_retryable(), "the same refusal would come again");
    assert!(!proxy.seen().iter().any(|r| r.method == "PATCH"), "no chunk was sent to GAR");

    // The same refusal from a generic registry is the switch to chunks (the negative case).
    let error = testdata::push(&client(RegistryKind::Generic), "project/repo/app", "v1", &built)
        .await
        .expect_err("the first refusal is reported as the switch");
    assert!(matches!(error, ocync::registry::Error::ChunkedUploadRequired { .. }), "{error:?}");
}

/// Two images sharing a 300 kB base layer in one repository; `v1` is already at `up`.
async fn shared_layer_corpus() -> (TestRegistry, TestRegistry, TestRegistry, [Built; 2]) {
    let (source, up, down) = (TestRegistry::plain(), TestRegistry::plain(), TestRegistry::plain());
    let image =
        |own| Built::Image(testdata::image(&[(80, 300_000), (own, 20_000 + own * 1000)], ("linux", "amd64"), false));
    let images = [image(81), image(82)];
    seed(&source, "team/app", "v1", &images[0]).await;
    seed(&source, "team/app", "v2", &images[1]).await;
    seed(&up, "team/app", "v1", &images[0]).await;
    (source, up, down, images)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_totals_count_a_shared_layer_once_per_target_repository_next_to_the_naive_sum() {
    let (source, up, down, images) = shared_layer_corpus().await;
    let config = TempConfig::new(&format!(
        "registries:\n  src: {{ url: \"http://{}\" }}\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\ndefaults:\n  source: src\n  targets: [up, down]\nmappings:\n  - from: team/app\n",
        source.host, up.host, down.host
    ));
    let output = ocync(&["plan", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON plan");

    let size = |built: &Built| built.blobs().iter().map(|b| b.descriptor.size).sum::<u64>();
    let (v1, v2) = (size(&images[0]), size(&images[1]));
    let base = 300_000;
    // Copies: v1 to down, v2 to up and down. v1 and v2 share the base, which `down` gets once;
    // `up` has it already with v1, but a plan does not look at blobs, so it counts it again.
    let expected = serde_json::json!({
        "images_to_copy": 3,
        "images_up_to_date": 1,
        "images_failing": 0,
        "referrers_to_copy": 0,
        "bytes_to_move": (v1 + v2 - base) + v2,
        "bytes_per_image_sum": v1 + 2 * v2,
    });
    assert_eq!(plan["totals"], expected, "{plan}");

    let text = ocync(&["plan", "--config", &config.path]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    let line = stdout.lines().find(|l| l.starts_with("totals: ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.starts_with("totals: 3 image(s) to copy, 1 up to date, 0 failing, 0 referrer(s) to copy; "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_a_target_whose_client_cannot_be_built_as_failing_with_the_reason() {
    let (source, up, _down, _) = shared_layer_corpus().await;
    let config = TempConfig::new(&format!(
        "registries:\n  src: {{ url: \"http://{}\" }}\n  up: {{ url: \"http://{}\" }}\n  broken: {{ url: registry.invalid, ca_file: /nonexistent/ocync-ca.pem }}\ndefaults:\n  source: src\n  targets: [up, broken]\nmappings:\n  - from: team/app\n",
        source.host, up.host
    ));
    let output = ocync(&["plan", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(1), "v2 to up can copy, broken cannot: {}", describe(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON plan");
    for image in plan["mappings"][0]["images"].as_array().unwrap() {
        let broken = &image["targets"][1];
        assert_eq!((broken["registry"].as_str(), broken["action"].as_str()), (Some("broken"), Some("fail")), "{image}");
        assert!(broken["error"].as_str().unwrap().contains("/nonexistent/ocync-ca.pem"), "{broken}");
    }
    assert_eq!(plan["totals"]["images_failing"], 2);
    assert_eq!(plan["totals"]["images_to_copy"], 1, "only v2 to up");

    let text = ocync(&["plan", "--config", &config.path]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("  FAIL v1 -> broken (team/app): "), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("  copy v1") && l.contains("broken")), "not a copy: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_answered_with_202_is_counted_as_declined_with_one_warning_per_registry() {
    let (source, declining, mounting) = (TestRegistry::plain(), TestRegistry::plain(), TestRegistry::plain());
    // Two repositories whose images share two base layers.
    let image =
        |own| Built::Image(testdata::image(&[(60, 200_000), (61, 150_000), (own, 5000)], ("linux", "amd64"), false));
    seed(&source, "team/one", "v1", &image(62)).await;
    seed(&source, "team/two", "v1", &image(63)).await;
    // As ECR without BLOB_MOUNTING: a mount request opens a plain upload session (202).
    let proxy = FaultProxy::start(&declining.host, |request| match request.target.split_once("?mount=") {
        Some((path, _)) if request.method == "POST" => Action::ForwardTo(path.to_string()),
        _ => Action::Forward,
    });
    let config = TempConfig::new(&format!(
        "registries:\n  src: {{ url: \"http://{}\" }}\n  ecr: {{ url: \"http://{}\" }}\n  plain: {{ url: \"http://{}\" }}\ndefaults:\n  source: src\n  targets: [ecr, plain]\nmappings:\n  - from: team/one\n  - from: team/two\n",
        source.host, proxy.host, mounting.host
    ));
    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");

    let at = |registry: &str| {
        let mut sum = (0, 0, 0);
        for image in report["mappings"].as_array().unwrap().iter().flat_map(|m| m["images"].as_array().unwrap()) {
            if image["target"].as_str().unwrap().starts_with(registry) {
                let stats = &image["stats"];
                let count = |key: &str| stats[key].as_u64().unwrap();
                sum.0 += count("blobs_mounted");
                sum.1 += count("blobs_mount_declined");
                sum.2 += count("blobs_copied");
            }
        }
        sum
    };
    // Per target: 2 configs + 2 own layers + the 2 shared layers once, then mounted or not.
    assert_eq!(at(&proxy.host), (0, 2, 8), "declined mounts are uploads: {report}");
    assert_eq!(at(&mounting.host), (2, 0, 6), "the negative case mounts: {report}");
    assert_eq!(report["totals"]["blobs_mount_declined"], 2);
    // Mounts from the other repository; the checks before uploads are mounts from itself.
    let cross_repository = |target: &str| {
        let repository = target.trim_start_matches("/v2/").split("/blobs/").next().unwrap_or_default();
        target.split_once("&from=").is_some_and(|(_, from)| from.replace("%2F", "/") != repository)
    };
    let posts = proxy.seen().iter().filter(|r| r.method == "POST" && cross_repository(&r.target)).count();
    assert_eq!(posts, 2, "each shared layer was offered as a mount");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("BLOB_MOUNTING --value ENABLED").count(), 1, "one warning for the registry: {stderr}");
}
