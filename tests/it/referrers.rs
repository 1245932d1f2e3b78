//! Signatures, SBOMs and attestations follow their images, and platform subsets, against real
//! registries: distribution 2.8 (no referrers API: the fallback tag schema) directly, and the
//! referrers API through [`ReferrersServer`] in front of it. Checked with skopeo and by
//! counting requests.

use std::collections::BTreeMap;

use ocync::oci::{Digest, Manifest, Referrer, cosign_tag, fallback_tag, index_of, merge, parse_index};
use ocync::registry::{HttpRegistry, Registry, RegistrySettings};
use ocync::testing::testdata::{self, Built, Image};

use crate::copy::{describe, ocync};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy, SeenRequest};
use crate::support::referrers::ReferrersServer;
use crate::support::tools::{TempConfig, skopeo_digest, skopeo_raw};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

/// A plain-HTTP client for `host` (a registry or a proxy in front of one).
fn client(host: &str) -> HttpRegistry {
    let mut settings = RegistrySettings::new(host);
    settings.plain_http = true;
    HttpRegistry::new(settings).expect("client for a loopback registry")
}

fn top(built: &Built) -> Manifest {
    match built {
        Built::Index { index, .. } => index.clone(),
        Built::Image(image) => image.manifest.clone(),
    }
}

fn child(built: &Built, n: usize) -> &Image {
    match built {
        Built::Index { children, .. } => &children[n],
        Built::Image(_) => panic!("not an index"),
    }
}

async fn push(registry: &HttpRegistry, repository: &str, reference: &str, image: &Image) {
    testdata::push(registry, repository, reference, &Built::Image(image.clone()))
        .await
        .unwrap_or_else(|e| panic!("push {reference}: {e}"));
}

async fn push_by_digest(registry: &HttpRegistry, repository: &str, image: &Image) {
    push(registry, repository, image.manifest.digest.as_str(), image).await;
}

/// What a tool without the referrers API leaves: the referrers by digest and, under the
/// subject's fallback tag, an index listing them (extended when it exists already).
async fn attach_by_tag(registry: &HttpRegistry, repository: &str, subject: &Digest, referrers: &[&Image]) -> Manifest {
    for referrer in referrers {
        push_by_digest(registry, repository, referrer).await;
    }
    let entries: Vec<Referrer> =
        referrers.iter().map(|r| Referrer::describe(&r.manifest).expect("a subject").1).collect();
    let index = match registry.get_manifest(repository, &fallback_tag(subject)).await {
        Ok(existing) => merge(&existing, &entries).unwrap().unwrap_or(existing),
        Err(_) => index_of(&entries),
    };
    registry.put_manifest(repository, &fallback_tag(subject), &index).await.expect("push the fallback index");
    index
}

fn skopeo_at(registry: &TestRegistry, path: &str) -> Vec<u8> {
    skopeo_raw(&registry.skopeo_reference(path), &[])
}

#[tokio::test]
async fn without_the_api_fallback_and_cosign_tags_follow_and_a_warm_run_copies_only_a_new_signature() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let upstream = source.anonymous_client();
    let built = testdata::index(1, &[(0, 20_000)], &PLATFORMS, false);
    testdata::push(&upstream, "team/app", "v1", &built).await.unwrap();
    let (index, first_child) = (top(&built), child(&built, 0).manifest.clone());
    let notation = testdata::notation_signature(&index, 1);
    let sbom = testdata::sbom_referrer(&first_child);
    let sbom_signature = testdata::bundle_signature(&sbom.manifest, 1);
    let index_fallback = attach_by_tag(&upstream, "team/app", &index.digest, &[&notation]).await;
    attach_by_tag(&upstream, "team/app", &first_child.digest, &[&sbom]).await;
    attach_by_tag(&upstream, "team/app", &sbom.manifest.digest, &[&sbom_signature]).await;
    let cosign = testdata::cosign_signature(&index, 1);
    let attestation = testdata::cosign_attestation(&index, "https://slsa.dev/provenance/v1");
    push(&upstream, "team/app", &cosign_tag(&index.digest, "sig"), &cosign).await;
    push(&upstream, "team/app", &cosign_tag(&index.digest, "att"), &attestation).await;

    let (from, to) = (source.reference("team/app:v1"), target.reference("mirror/app:v1"));
    let output = ocync(&["copy", &from, &to]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("5 referrers"), "{}", describe(&output));
    let at = |reference: &str| skopeo_at(&target, &format!("mirror/app{reference}"));
    assert_eq!(at(&format!(":{}", fallback_tag(&index.digest))), index_fallback.bytes.as_ref(), "bit for bit");
    assert_eq!(at(&format!(":{}", cosign_tag(&index.digest, "sig"))), cosign.manifest.bytes.as_ref());
    assert_eq!(at(&format!(":{}", cosign_tag(&index.digest, "att"))), attestation.manifest.bytes.as_ref());
    for referrer in [&notation, &sbom, &sbom_signature] {
        assert_eq!(at(&format!("@{}", referrer.manifest.digest)), referrer.manifest.bytes.as_ref());
    }
    let sbom_listing = parse_index(&at(&format!(":{}", fallback_tag(&sbom.manifest.digest)))).unwrap();
    assert_eq!(sbom_listing[0].digest, sbom_signature.manifest.digest, "a signature on an SBOM follows too");

    source.reset_log();
    target.reset_log();
    let warm = ocync(&["copy", &from, &to]);
    assert_eq!(warm.status.code(), Some(0), "{}", describe(&warm));
    assert_eq!(target.count("PUT", "/"), 0, "nothing pushed: {:?}", target.requests());
    assert_eq!(source.count("GET", "/blobs/"), 0);

    let late = testdata::bundle_signature(&index, 2);
    let extended = attach_by_tag(&upstream, "team/app", &index.digest, &[&late]).await;
    source.reset_log();
    target.reset_log();
    let output = ocync(&["copy", &from, &to]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(target.count("PUT", "/manifests/"), 2, "the signature and the fallback index: {:?}", target.requests());
    assert_eq!(target.count("PUT", "/blobs/uploads/"), 1, "its bundle; the empty config is there");
    assert_eq!(source.count("GET", "/blobs/"), 1);
    assert_eq!(at(&format!(":{}", fallback_tag(&index.digest))), extended.bytes.as_ref());
}

#[tokio::test]
async fn through_the_api_referrers_land_as_referrers_with_pages_followed_and_no_fallback_tags() {
    let (source_registry, target_registry) = (TestRegistry::plain(), TestRegistry::plain());
    let (source, target) =
        (ReferrersServer::start(&source_registry.host), ReferrersServer::start(&target_registry.host));
    let upstream = client(source.host());
    let built = testdata::index(2, &[(0, 20_000)], &PLATFORMS, false);
    testdata::push(&upstream, "team/app", "v1", &built).await.unwrap();
    let index = top(&built);
    // Three over the index: more than one page of the server's answers.
    let signatures = [
        testdata::notation_signature(&index, 1),
        testdata::notation_signature(&index, 2),
        testdata::bundle_signature(&index, 3),
    ];
    let sbom = testdata::sbom_referrer(&child(&built, 1).manifest);
    let sbom_signature = testdata::bundle_signature(&sbom.manifest, 4);
    for referrer in signatures.iter().chain([&sbom, &sbom_signature]) {
        push_by_digest(&upstream, "team/app", referrer).await;
    }

    let from = format!("http://{}/team/app:v1", source.host());
    let to = format!("http://{}/mirror/app:v1", target.host());
    let output = ocync(&["copy", &from, &to]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let mut listed = target.referrers("mirror/app", index.digest.as_str());
    listed.sort();
    let mut expected: Vec<String> = signatures.iter().map(|s| s.manifest.digest.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        target.referrers("mirror/app", sbom.manifest.digest.as_str()),
        [sbom_signature.manifest.digest.to_string()]
    );
    let tags = client(&target_registry.host).list_tags("mirror/app").await.unwrap();
    assert_eq!(tags, ["v1"], "no fallback tags where the API exists");
    assert!(source.count("GET", &format!("/referrers/{}?page=1", index.digest)) >= 1, "the Link was followed");

    let (source_before, target_before) = (source.proxy.seen().len(), target.proxy.seen().len());
    let warm = ocync(&["copy", &from, &to]);
    assert_eq!(warm.status.code(), Some(0), "{}", describe(&warm));
    let target_warm = &target.proxy.seen()[target_before..];
    assert!(target_warm.iter().all(|r| r.method == "GET" || r.method == "HEAD"), "{target_warm:?}");
    let source_warm = &source.proxy.seen()[source_before..];
    assert!(!source_warm.iter().any(|r| r.target.contains("/blobs/")), "{source_warm:?}");
}

fn sync_config(source: &str, target: &str, extra: &str) -> TempConfig {
    TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{source}\" }}\n  mirror: {{ url: \"http://{target}\" }}\n\
         defaults:\n  source: upstream\n  targets: mirror\n{extra}mappings:\n  - from: team/app\n    to: mirror/app\n"
    ))
}

#[tokio::test]
async fn require_fails_only_the_unsigned_image() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let upstream = source.anonymous_client();
    let (signed, unsigned) = (testdata::index(3, &[], &PLATFORMS, false), testdata::index(4, &[], &PLATFORMS, false));
    testdata::push(&upstream, "team/app", "signed", &signed).await.unwrap();
    testdata::push(&upstream, "team/app", "unsigned", &unsigned).await.unwrap();
    push(&upstream, "team/app", &cosign_tag(signed.digest(), "sig"), &testdata::cosign_signature(&top(&signed), 3))
        .await;
    let config = sync_config(&source.host, &target.host, "  artifacts: { require: true }\n");
    let plan = ocync(&["plan", "--config", &config.path]);
    assert_eq!(plan.status.code(), Some(1), "the unsigned image would fail: {}", describe(&plan));
    let listed = format!("referrer cosign tag {}", cosign_tag(signed.digest(), "sig"));
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(shown.contains(&listed), "the dry run lists it: {}", describe(&plan));
    assert!(shown.contains("error unsigned: would fail: no referrer"), "{}", describe(&plan));

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(1), "some images failed: {}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let images = report["mappings"][0]["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "the cosign tag is not an image of its own: {images:?}");
    let failed: Vec<&serde_json::Value> = images.iter().filter(|i| i["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["source"].as_str().unwrap().ends_with(":unsigned"));
    assert!(failed[0]["error"].as_str().unwrap().contains("artifacts.require"), "{}", failed[0]);
    let mut tags = client(&target.host).list_tags("mirror/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, [cosign_tag(signed.digest(), "sig"), "signed".to_string()]);
}

#[tokio::test]
async fn platforms_land_exactly_the_chosen_children_and_the_same_index_on_a_second_run() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = testdata::buildx_index(5, &testdata::SEVEN_PLATFORMS);
    testdata::push(&source.anonymous_client(), "team/app", "v1", &built).await.unwrap();
    let config = sync_config(&source.host, &target.host, "  platforms: [linux/amd64, linux/arm64/v8]\n");

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let image = &report["mappings"][0]["images"][0];
    assert_eq!(image["digest"], built.digest().to_string());
    let pushed = image["target_digest"].as_str().expect("the rebuilt index's digest").to_string();
    assert!(image["warnings"][0].as_str().unwrap().contains("do not cover it"), "{image}");
    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &[]), pushed);
    let landed: Vec<String> =
        match ocync::oci::Manifest::from_served(skopeo_at(&target, "mirror/app:v1").into(), None, None)
            .unwrap()
            .kind()
            .unwrap()
        {
            ocync::oci::ManifestKind::Index { children } => children.iter().map(|c| c.digest.to_string()).collect(),
            _ => panic!("not an index"),
        };
    // amd64, arm64 and their two attestation manifests (children 7 and 8 of a buildx index).
    let expected: Vec<String> = [0, 1, 7, 8].iter().map(|&n| child(&built, n).manifest.digest.to_string()).collect();
    assert_eq!(landed, expected);
    for n in 0..14 {
        let digest = &child(&built, n).manifest.digest;
        let present = client(&target.host).head_manifest("mirror/app", digest.as_str()).await.unwrap().is_some();
        assert_eq!(present, expected.contains(&digest.to_string()), "child {n}");
    }

    target.reset_log();
    let again = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["mappings"][0]["images"][0]["target_digest"], pushed);
    assert_eq!(report["totals"]["skipped"], 1);
    assert_eq!(target.count("PUT", "/"), 0);
}

/// Requests by repository and kind during one run, from a proxy's log.
fn tally(seen: &[SeenRequest]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for request in seen {
        let path = request.target.split('?').next().unwrap_or_default();
        let repository = ["one", "two"].iter().find(|r| path.contains(&format!("/{r}/"))).unwrap_or(&"-");
        let kind = ["referrers", "tags", "blobs", "manifests"]
            .iter()
            .find(|k| path.contains(&format!("/{k}/")))
            .unwrap_or(&"other");
        *counts.entry(repository.to_string()).or_default().entry(format!("{} {kind}", request.method)).or_default() +=
            1;
    }
    counts
}

/// For the record (issue 11): what a warm `ocync sync` sends per image with referrers off,
/// on against registries without the API, and on through the API. `one` is a single image
/// with one signature, `two` a two-platform index with one signature over the index.
#[tokio::test]
async fn warm_run_request_counts_with_referrers_off_on_the_fallback_schema_and_through_the_api() {
    let mut table = Vec::new();
    for scenario in ["off", "fallback", "api"] {
        let (source_registry, target_registry) = (TestRegistry::plain(), TestRegistry::plain());
        let front = |host: &str| {
            if scenario == "api" {
                ReferrersServer::start(host).proxy
            } else {
                FaultProxy::start(host, |_| Action::Forward)
            }
        };
        // In "api" the server must see the pushes to index them; the referrers server is a proxy too.
        let (source, target) = (front(&source_registry.host), front(&target_registry.host));
        let upstream = client(&source.host);
        let one = Built::Image(testdata::image(&[(10, 5000)], PLATFORMS[0], false));
        let two = testdata::index(11, &[(12, 5000)], &PLATFORMS, false);
        for (repository, built) in [("team/one", &one), ("team/two", &two)] {
            testdata::push(&upstream, repository, "v1", built).await.unwrap();
            let signature = testdata::bundle_signature(&top(built), 1);
            if scenario == "api" {
                push_by_digest(&upstream, repository, &signature).await;
            } else {
                attach_by_tag(&upstream, repository, built.digest(), &[&signature]).await;
            }
        }
        let extra = if scenario == "off" { "  artifacts: { enabled: false }\n" } else { "" };
        let config = TempConfig::new(&format!(
            "registries:\n  upstream: {{ url: \"http://{}\" }}\n  mirror: {{ url: \"http://{}\" }}\n\
             defaults:\n  source: upstream\n  targets: mirror\n{extra}mappings:\n  - from: team/one\n    to: mirror/one\n  - from: team/two\n    to: mirror/two\n",
            source.host, target.host
        ));
        let cold = ocync(&["sync", "--config", &config.path]);
        assert_eq!(cold.status.code(), Some(0), "{scenario}: {}", describe(&cold));
        let (source_before, target_before) = (source.seen().len(), target.seen().len());
        let warm = ocync(&["sync", "--config", &config.path]);
        assert_eq!(warm.status.code(), Some(0), "{scenario}: {}", describe(&warm));
        let (source_warm, target_warm) =
            (tally(&source.seen()[source_before..]), tally(&target.seen()[target_before..]));
        for side in [&source_warm, &target_warm] {
            for kinds in side.values() {
                assert!(kinds.keys().all(|k| k.starts_with("GET") || k.starts_with("HEAD")), "{scenario}: {side:?}");
                assert!(!kinds.contains_key("GET blobs"), "{scenario}: {side:?}");
            }
        }
        // The index is read (for its children) where the target has it, not at the source.
        let pulled = source.seen()[source_before..]
            .iter()
            .filter(|r| r.method == "GET" && r.target.contains("/manifests/sha256:"))
            .count();
        assert_eq!(pulled, 0, "{scenario}: {source_warm:?}");
        table.push(format!("{scenario:>8}: source {source_warm:?}\n{:>8}  target {target_warm:?}", ""));
    }
    eprintln!("warm-run requests by repository:\n{}", table.join("\n"));
}

#[tokio::test]
async fn copy_with_a_platform_pushes_the_rebuilt_index_and_says_so() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = testdata::index(6, &[], &PLATFORMS, false);
    testdata::push(&source.anonymous_client(), "team/app", "v1", &built).await.unwrap();
    let (from, to) = (source.reference("team/app:v1"), target.reference("mirror/app:v1"));

    let output = ocync(&["copy", &from, &to, "--platform", "linux/arm64", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pushed = report["target_digest"].as_str().expect("a rebuilt index").to_string();
    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &[]), pushed);
    let mirror = client(&target.host);
    assert!(mirror.head_manifest("mirror/app", child(&built, 1).manifest.digest.as_str()).await.unwrap().is_some());
    assert!(mirror.head_manifest("mirror/app", child(&built, 0).manifest.digest.as_str()).await.unwrap().is_none());

    let bad = ocync(&["copy", &from, &to, "--platform", "linux"]);
    assert_eq!(bad.status.code(), Some(3), "a malformed platform is an argument error: {}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected os/architecture"));
}

#[tokio::test]
async fn the_referrers_server_refuses_a_referrer_pushed_before_its_subject() {
    let registry = TestRegistry::plain();
    let server = ReferrersServer::start(&registry.host);
    let upstream = client(server.host());
    let image = testdata::image(&[(20, 1000)], PLATFORMS[0], false);
    let signature = testdata::notation_signature(&image.manifest, 20);
    let early = Built::Image(signature.clone());
    let refused = testdata::push(&upstream, "team/app", signature.manifest.digest.as_str(), &early).await;
    assert!(refused.is_err(), "the subject is not there yet");
    push(&upstream, "team/app", "v1", &image).await;
    push_by_digest(&upstream, "team/app", &signature).await;
    assert_eq!(server.referrers("team/app", image.manifest.digest.as_str()), [signature.manifest.digest.to_string()]);
}

#[tokio::test]
async fn cosign_tags_from_a_fallback_source_land_at_an_api_target_once_and_a_warm_run_only_lists() {
    let (source, target_registry) = (TestRegistry::plain(), TestRegistry::plain());
    let target = ReferrersServer::start(&target_registry.host);
    let upstream = source.anonymous_client();
    let built = testdata::index(21, &[(0, 5000)], &PLATFORMS, false);
    testdata::push(&upstream, "team/app", "v1", &built).await.unwrap();
    let index = top(&built);
    let (signature, attestation) = (
        testdata::cosign_signature(&index, 21),
        testdata::cosign_attestation(&index, "https://slsa.dev/provenance/v1"),
    );
    push(&upstream, "team/app", &cosign_tag(&index.digest, "sig"), &signature).await;
    push(&upstream, "team/app", &cosign_tag(&index.digest, "att"), &attestation).await;
    let notation = testdata::notation_signature(&index, 21);
    attach_by_tag(&upstream, "team/app", &index.digest, &[&notation]).await;
    let config = sync_config(&source.host, target.host(), "");

    let cold = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(cold.status.code(), Some(0), "{}", describe(&cold));
    let mirror = client(&target_registry.host);
    for (suffix, image) in [("sig", &signature), ("att", &attestation)] {
        let head = mirror.head_manifest("mirror/app", &cosign_tag(&index.digest, suffix)).await.unwrap();
        assert_eq!(head.map(|h| h.digest), Some(image.manifest.digest.clone()), "{suffix}");
    }
    assert_eq!(target.referrers("mirror/app", index.digest.as_str()), [notation.manifest.digest.to_string()]);

    let (source_before, target_before) = (source.requests().len(), target.proxy.seen().len());
    let warm = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(warm.status.code(), Some(0), "{}", describe(&warm));
    let seen: Vec<String> =
        target.proxy.seen()[target_before..].iter().map(|r| format!("{} {}", r.method, r.target)).collect();
    assert!(seen.iter().all(|r| r.starts_with("GET ") || r.starts_with("HEAD ")), "nothing pushed: {seen:?}");
    let count = |prefix: &str| seen.iter().filter(|r| r.starts_with(prefix)).count();
    // HEADs of the tag and of the two cosign tags; the index, read here rather than at the
    // source; one listing of the one subject with referrers upstream (the index), which is
    // also the run's API probe. No tag list.
    assert_eq!(count("HEAD /v2/mirror/app/manifests/"), 3, "{seen:?}");
    assert_eq!(count("GET /v2/mirror/app/manifests/"), 1, "{seen:?}");
    assert_eq!(count("GET /v2/mirror/app/referrers/"), 1, "{seen:?}");
    assert_eq!(seen.len(), 5, "{seen:?}");
    let source_warm = &source.requests()[source_before..];
    assert!(
        !source_warm
            .iter()
            .any(|(method, path)| method == "GET" && path.contains(&format!("manifests/{}", index.digest))),
        "the index is not pulled: {source_warm:?}"
    );
}

#[tokio::test]
async fn a_fallback_index_with_an_entry_only_the_mirror_has_keeps_it_after_a_sync() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let (upstream, mirror) = (source.anonymous_client(), target.anonymous_client());
    let image = testdata::image(&[(22, 3000)], PLATFORMS[0], false);
    push(&upstream, "team/app", "v1", &image).await;
    push(&mirror, "mirror/app", "v1", &image).await;
    let upstream_signature = testdata::notation_signature(&image.manifest, 22);
    attach_by_tag(&upstream, "team/app", &image.manifest.digest, &[&upstream_signature]).await;
    // Signed by the mirror's own policy; upstream never heard of it.
    let local = testdata::bundle_signature(&image.manifest, 220);
    let before = attach_by_tag(&mirror, "mirror/app", &image.manifest.digest, &[&local]).await;
    let config = sync_config(&source.host, &target.host, "");

    let output = ocync(&["sync", "--config", &config.path]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let after = skopeo_at(&target, &format!("mirror/app:{}", fallback_tag(&image.manifest.digest)));
    let listed: Vec<Digest> = parse_index(&after).unwrap().into_iter().map(|r| r.digest).collect();
    assert_eq!(listed, [local.manifest.digest.clone(), upstream_signature.manifest.digest.clone()]);
    let kept = before.bytes.iter().position(|&b| b == b']').unwrap();
    assert!(after.starts_with(&before.bytes[..kept]), "the entry already there keeps its bytes");
    let signature_at_mirror = skopeo_at(&target, &format!("mirror/app@{}", upstream_signature.manifest.digest));
    assert_eq!(signature_at_mirror, upstream_signature.manifest.bytes.as_ref());
}

#[tokio::test]
async fn a_source_refusing_the_referrers_route_with_405_or_501_is_read_through_its_tag_schema() {
    for status in [405, 501] {
        let registry = TestRegistry::plain();
        let source = FaultProxy::start(&registry.host, move |request| {
            if request.target.contains("/referrers/") {
                Action::Respond { status, headers: Vec::new(), body: String::new() }
            } else {
                Action::Forward
            }
        });
        let target = TestRegistry::plain();
        let upstream = client(&source.host);
        let image = testdata::image(&[(23, 3000)], PLATFORMS[0], false);
        push(&upstream, "team/app", "v1", &image).await;
        let signature = testdata::notation_signature(&image.manifest, 23);
        attach_by_tag(&upstream, "team/app", &image.manifest.digest, &[&signature]).await;

        let (from, to) = (source.reference("team/app:v1"), target.reference("mirror/app:v1"));
        let output = ocync(&["copy", &from, &to]);
        assert_eq!(output.status.code(), Some(0), "{status}: {}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("1 referrers"), "{status}: {}", describe(&output));
        let asked = source.seen().iter().filter(|r| r.target.contains("/referrers/")).count();
        assert_eq!(asked, 1, "{status}: asked once, not retried");
    }
}
