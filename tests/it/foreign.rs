//! Non-distributable (foreign) layers against real registries: `copy`, `sync` and `plan` leave
//! a layer the source does not hold alone (no GET at the source, no request at the target)
//! and push the manifest bytes unchanged.
//!
//! Distribution 2.8 refuses a manifest whose layers carry `urls` (500 "unknown error") unless
//! its `validation.manifests.urls.allow` list matches them, so every registry here allows
//! `http(s)` URLs, as a mirror of Windows images must.

use ocync::testing::testdata::{self, Built, ForeignLayerImage};

use crate::copy::{describe, ocync, seed};
use crate::support::tools::{TempConfig, skopeo_digest};
use crate::support::{RegistryOptions, TestRegistry};

/// Lets distribution accept manifests listing layers by `http(s)` URL.
const ALLOW_LAYER_URLS: &str = "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n";

fn registry_allowing_layer_urls() -> TestRegistry {
    TestRegistry::start_with(RegistryOptions::default(), "", ALLOW_LAYER_URLS)
}

/// Requests that named `digest` at `registry`, as `METHOD path`.
fn requests_for(registry: &TestRegistry, digest: &str) -> Vec<String> {
    registry.requests().into_iter().filter(|(_, path)| path.contains(digest)).map(|(m, p)| format!("{m} {p}")).collect()
}

/// A Docker (`docker`) or OCI foreign-layer image at `source` under `repository:v1`.
async fn seeded(source: &TestRegistry, repository: &str, docker: bool) -> ForeignLayerImage {
    let built = testdata::foreign_layer_image(if docker { 11 } else { 12 }, docker);
    seed(source, repository, "v1", &Built::Image(built.image.clone())).await;
    built
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_pushes_a_foreign_layer_image_unchanged_without_reading_or_sending_the_foreign_blob() {
    let (source, target) = (registry_allowing_layer_urls(), registry_allowing_layer_urls());
    for (docker, repository) in [(true, "win/docker"), (false, "win/oci")] {
        let built = seeded(&source, repository, docker).await;
        let foreign = built.foreign.descriptor.digest.to_string();
        source.reset_log();

        let output = ocync(&[
            "copy",
            &source.reference(&format!("{repository}:v1")),
            &target.reference(&format!("{repository}:v1")),
            "--json",
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let digest = skopeo_digest(&target.skopeo_reference(&format!("{repository}:v1")), &[]);
        assert_eq!(digest, built.image.manifest.digest.to_string(), "same bytes at the target");
        assert_eq!(skopeo_digest(&source.skopeo_reference(&format!("{repository}:v1")), &[]), digest);
        assert_eq!(requests_for(&source, &foreign), [format!("HEAD /v2/{repository}/blobs/{foreign}")]);
        assert_eq!(requests_for(&target, &foreign), Vec::<String>::new(), "the target is never asked");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
        assert_eq!(report["stats"]["blobs_foreign_left_out"], 1, "{report}");
        assert_eq!(report["stats"]["blobs_copied"], 2, "{report}");
        assert!(
            report["warnings"][0].as_str().unwrap().starts_with("1 non-distributable (foreign) layer(s)"),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_plan_leave_the_foreign_layer_out_of_transfers_and_byte_totals() {
    let (source, target) = (registry_allowing_layer_urls(), registry_allowing_layer_urls());
    let built = seeded(&source, "win/app", true).await;
    let foreign = built.foreign.descriptor.digest.to_string();
    let config = TempConfig::new(&format!(
        "registries:\n  src: {{ url: \"http://{}\" }}\n  dst: {{ url: \"http://{}\" }}\nmappings:\n  - from: win/app\n    source: src\n    targets: dst\n",
        source.host, target.host
    ));
    source.reset_log();

    let plan = ocync(&["plan", "--config", &config.path, "--json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("one JSON plan");
    let distributable: u64 = built.image.blobs.iter().map(|b| b.descriptor.size).sum();
    assert_eq!(plan["totals"]["bytes_to_move"], distributable, "{plan}");
    assert_eq!(plan["mappings"][0]["images"][0]["bytes"], distributable, "{plan}");

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    let image = &report["mappings"][0]["images"][0];
    assert_eq!(image["status"], "synced", "{report}");
    assert_eq!(image["stats"]["blobs_foreign_left_out"], 1, "{report}");
    assert!(image["warnings"][0].as_str().unwrap().contains("non-distributable"), "{report}");
    assert_eq!(
        skopeo_digest(&target.skopeo_reference("win/app:v1"), &[]),
        built.image.manifest.digest.to_string(),
        "digest equal at source and target"
    );
    // The plan asks nothing about blobs; the sync asks the source once whether it holds it.
    assert_eq!(requests_for(&source, &foreign), [format!("HEAD /v2/win/app/blobs/{foreign}")]);
    assert_eq!(requests_for(&target, &foreign), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_layer_the_source_holds_is_copied_to_the_target() {
    let (source, target) = (registry_allowing_layer_urls(), registry_allowing_layer_urls());
    let built = testdata::foreign_layer_image(13, false);
    let held = Built::Image(testdata::Image {
        manifest: built.image.manifest.clone(),
        blobs: built.image.blobs.iter().cloned().chain([built.foreign.clone()]).collect(),
    });
    seed(&source, "win/app", "v1", &held).await;

    let output = ocync(&["copy", &source.reference("win/app:v1"), &target.reference("win/app:v1"), "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["stats"]["blobs_copied"], 3, "{report}");
    assert_eq!(report["stats"]["blobs_foreign_left_out"], 0, "{report}");
    use ocync::registry::Registry as _;
    let client = target.anonymous_client();
    assert!(client.blob_exists("win/app", &built.foreign.descriptor.digest).await.unwrap(), "the blob landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_without_a_url_allow_list_refuses_a_manifest_listing_layers_by_url() {
    // Why the registries above allow URLs: by default distribution 2.8 refuses the manifest
    // (it never checks the blob itself), which is the target operator's setting to change.
    let registry = TestRegistry::plain();
    let built = testdata::foreign_layer_image(14, true);
    let error = testdata::push(&registry.anonymous_client(), "win/app", "v1", &Built::Image(built.image.clone()))
        .await
        .expect_err("distribution refuses layer URLs unless allowed");
    assert!(error.to_string().contains("500"), "{error}");
    let allowed = registry_allowing_layer_urls();
    testdata::push(&allowed.anonymous_client(), "win/app", "v1", &Built::Image(built.image)).await.expect("allowed");
}
