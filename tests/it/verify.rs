//! `verify:` against a real registry (distribution 2.8, so bundles are found through the
//! fallback tag): key signatures in cosign's `.sig` tag and in Sigstore bundle referrers are
//! checked before anything is written; refused images leave the targets untouched; images in
//! place cost no verification; `plan` shows the outcome; bad policies are config errors.

use std::collections::BTreeMap;
use std::process::Command;

use ocync::oci::{Referrer, cosign_tag, fallback_tag, index_of};
use ocync::registry::Registry;
use ocync::testing::keys::{KeyPair, SigningKind};
use ocync::testing::sigstore::{TestSigstore, now};
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::tools::{TempConfig, skopeo, skopeo_digest};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

/// Tags at `reference` (`host:port/repository`), sorted; none when the repository is absent.
fn tags(reference: &str) -> Vec<String> {
    let output = Command::new(skopeo())
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new();
    }
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut tags: Vec<String> =
        listing["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    tags.sort();
    tags
}

/// The source: `app` with five images, signed (or not) in every way the tests need.
struct Upstream {
    registry: TestRegistry,
    images: BTreeMap<&'static str, Built>,
    vendor: KeyPair,
}

async fn upstream() -> Upstream {
    let registry = TestRegistry::plain();
    let client = registry.anonymous_client();
    let (vendor, stranger) = (KeyPair::generate(SigningKind::P256), KeyPair::generate(SigningKind::P256));
    let mut images = BTreeMap::new();
    for (seed_value, tag) in ["signed", "bundled", "forged", "stranger", "unsigned"].into_iter().enumerate() {
        let built = testdata::index(seed_value as u64 + 40, &[(0, 20_000)], &PLATFORMS, false);
        seed(&registry, "app", tag, &built).await;
        images.insert(tag, built);
    }
    let sig = |tag: &str| cosign_tag(images[tag].digest(), "sig");
    let push = |reference: String, image: testdata::Image| {
        let client = &client;
        async move { testdata::push(client, "app", &reference, &Built::Image(image)).await.unwrap() }
    };
    push(sig("signed"), testdata::signed_cosign_signature(images["signed"].digest(), |m| vendor.sign(m))).await;
    push(sig("forged"), testdata::signed_cosign_signature(images["unsigned"].digest(), |m| vendor.sign(m))).await;
    push(sig("stranger"), testdata::signed_cosign_signature(images["stranger"].digest(), |m| stranger.sign(m))).await;
    let Built::Index { index, .. } = &images["bundled"] else { panic!("an index") };
    let bundle = testdata::signed_bundle(index, &index.digest, |m| vendor.sign(m));
    push(bundle.manifest.digest.to_string(), bundle.clone()).await;
    let listing = index_of(&[Referrer::describe(&bundle.manifest).unwrap().1]);
    client.put_manifest("app", &fallback_tag(&index.digest), &listing).await.unwrap();
    Upstream { registry, images, vendor }
}

fn key_file(dir: &tempfile::TempDir, pair: &KeyPair) -> String {
    let path = dir.path().join("vendor.pub");
    std::fs::write(&path, pair.public_pem()).unwrap();
    path.display().to_string()
}

/// `app -> mirror` under `verify: { mode, keys: [key] }`. Without referrers, the signature tags
/// (`sha256-…`) are left out by the tag filter, as they would otherwise be mirrored as images.
fn config(upstream: &Upstream, target: &TestRegistry, key: &str, mode: &str, artifacts: bool) -> TempConfig {
    let tags = if artifacts { "" } else { "\n  tags: { exclude: \"sha256-*\" }" };
    TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: up\n  targets: down\n  artifacts: {{ enabled: {artifacts} }}{tags}\n  verify:\n    mode: {mode}\n    keys: [{key}]\n\
         mappings:\n  - from: app\n    to: mirror\n",
        upstream.registry.host, target.host
    ))
}

/// The JSON report's image entries by tag.
fn outcomes(output: &std::process::Output) -> BTreeMap<String, serde_json::Value> {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    report["mappings"][0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| (image["source"].as_str().unwrap().rsplit(':').next().unwrap().to_string(), image.clone()))
        .collect()
}

#[tokio::test]
async fn enforce_copies_what_a_listed_key_signed_and_nothing_of_the_rest() {
    let upstream = upstream().await;
    let target = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&upstream, &target, &key_file(&dir, &upstream.vendor), "enforce", true);

    let output = ocync(&["sync", "--config", &config.path, "--json"]);

    assert_eq!(output.status.code(), Some(1), "some images failed: {}", describe(&output));
    let images = outcomes(&output);
    let signer = format!("key {}", upstream.vendor.fingerprint());
    for tag in ["signed", "bundled"] {
        assert_eq!(images[tag]["status"], "synced", "{tag}: {}", describe(&output));
        assert_eq!(images[tag]["signer"], signer.as_str(), "{tag}");
        let copied = skopeo_digest(&target.skopeo_reference(&format!("mirror:{tag}")), &[]);
        assert_eq!(copied, upstream.images[tag].digest().to_string());
    }
    let error = |tag: &str| images[tag]["error"].as_str().unwrap().to_string();
    let forged_sig = cosign_tag(upstream.images["forged"].digest(), "sig");
    assert!(
        error("forged")
            .contains(&format!("{forged_sig}[0]: signs {}, not this image", upstream.images["unsigned"].digest())),
        "{}",
        error("forged")
    );
    assert!(error("stranger").contains("[0]: no listed key (1) verifies the signature"), "{}", error("stranger"));
    assert!(error("unsigned").starts_with("unverified: "), "{}", error("unsigned"));
    assert!(error("unsigned").contains("no sigstore bundle referrer"), "{}", error("unsigned"));
    // Exactly the two verified images and their signatures' tags; nothing of the others.
    let mut expected = vec![
        "bundled".to_string(),
        "signed".to_string(),
        cosign_tag(upstream.images["signed"].digest(), "sig"),
        fallback_tag(upstream.images["bundled"].digest()),
    ];
    expected.sort();
    assert_eq!(tags(&target.skopeo_reference("mirror")), expected);
    let client = target.anonymous_client();
    for tag in ["forged", "stranger", "unsigned"] {
        let head = client.head_manifest("mirror", upstream.images[tag].digest().as_str()).await.unwrap();
        assert!(head.is_none(), "{tag} is not at the target by digest");
    }
}

#[tokio::test]
async fn warn_copies_unverified_images_with_a_warning_and_names_signers() {
    let upstream = upstream().await;
    let target = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&upstream, &target, &key_file(&dir, &upstream.vendor), "warn", false);

    let output = ocync(&["sync", "--config", &config.path, "--json"]);

    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let images = outcomes(&output);
    for (tag, built) in &upstream.images {
        assert_eq!(images[*tag]["status"], "synced", "{tag}");
        assert_eq!(skopeo_digest(&target.skopeo_reference(&format!("mirror:{tag}")), &[]), built.digest().to_string());
    }
    assert_eq!(images["signed"]["signer"], format!("key {}", upstream.vendor.fingerprint()).as_str());
    assert!(images["signed"].get("warnings").is_none());
    let warning = images["unsigned"]["warnings"][0].as_str().unwrap();
    assert!(warning.starts_with("unverified: no sha256-"), "{warning}");
    assert!(warning.ends_with("copied because verify.mode is warn"), "{warning}");
    assert!(images["unsigned"].get("signer").is_none());
}

#[tokio::test]
async fn a_warm_run_costs_no_verification_and_a_re_pointed_tag_keeps_the_old_digest() {
    let upstream = upstream().await;
    let target = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&upstream, &target, &key_file(&dir, &upstream.vendor), "enforce", false);
    let first = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(first.status.code(), Some(1), "{}", describe(&first));

    // Warm: the two verified images are in place; the three refused ones are checked again
    // (they are still missing), and nothing else is read.
    upstream.registry.reset_log();
    let warm = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(warm.status.code(), Some(1), "{}", describe(&warm));
    let images = outcomes(&warm);
    assert_eq!(images["signed"]["status"], "skipped");
    assert!(images["signed"].get("signer").is_none(), "not re-verified");
    let signed_sig = cosign_tag(upstream.images["signed"].digest(), "sig");
    let bundled_tag = fallback_tag(upstream.images["bundled"].digest());
    let requests = upstream.registry.requests();
    assert!(!requests.iter().any(|(_, path)| path.ends_with(&signed_sig)), "{requests:#?}");
    assert!(!requests.iter().any(|(_, path)| path.ends_with(&bundled_tag)), "{requests:#?}");

    // Upstream re-points `signed` to an unsigned image: refused, the old digest stays.
    let old = upstream.images["signed"].digest().to_string();
    let replacement = testdata::index(99, &[(0, 20_000)], &PLATFORMS, false);
    seed(&upstream.registry, "app", "signed", &replacement).await;
    let after = ocync(&["sync", "--config", &config.path, "--json"]);
    let images = outcomes(&after);
    assert!(images["signed"]["error"].as_str().unwrap().starts_with("unverified: "), "{}", describe(&after));
    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror:signed"), &[]), old);
    let head = target.anonymous_client().head_manifest("mirror", replacement.digest().as_str()).await.unwrap();
    assert!(head.is_none(), "nothing of the replacement was written");
}

#[tokio::test]
async fn plan_shows_the_policy_outcome_per_image() {
    let upstream = upstream().await;
    let target = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&upstream, &target, &key_file(&dir, &upstream.vendor), "enforce", false);

    let output = ocync(&["plan", "--config", &config.path]);

    let text = String::from_utf8_lossy(&output.stdout);
    let fingerprint = upstream.vendor.fingerprint();
    assert!(text.contains(&format!("verify signed: signed by key {fingerprint}")), "{}", describe(&output));
    assert!(text.contains(&format!("verify bundled: signed by key {fingerprint}")), "{}", describe(&output));
    assert!(text.contains("error unsigned: would fail: unverified: no sha256-"), "{}", describe(&output));
    assert!(tags(&target.skopeo_reference("mirror")).is_empty(), "a plan writes nothing");
}

#[test]
fn a_policy_with_an_unreadable_key_a_bad_regexp_or_an_unknown_key_is_a_config_error() {
    let config = TempConfig::new(
        "registries:\n  up: { url: cgr.dev }\n  down: { url: registry.corp }\n\
         defaults:\n  source: up\n  targets: down\n\
         mappings:\n  - from: a\n    verify: { keys: [/nonexistent/vendor.pub] }\n\
         \x20 - from: b\n    verify: { keyless: [{ issuer: https://token.actions.githubusercontent.com, subject_regexp: '(' }] }\n\
         \x20 - from: c\n    verify: { mode: enforce, key: [x.pub] }\n",
    );

    let output = ocync(&["validate", "--config", &config.path]);

    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for want in [
        "mappings[0].verify.keys[0] (line 9): cannot read key file /nonexistent/vendor.pub",
        "mappings[1].verify.keyless[0].subject_regexp (line 11): invalid regexp",
        "mappings[2].verify (line 13): unknown field `key`",
    ] {
        assert!(stderr.contains(want), "missing {want:?}: {}", describe(&output));
    }
}

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const RELEASE: &str = "https://github.com/acme/images/.github/workflows/release.yaml@refs/heads/main";

#[tokio::test]
async fn keyless_signatures_verify_against_the_trusted_root_and_the_identity() {
    let sigstore = TestSigstore::new();
    let registry = TestRegistry::plain();
    let client = registry.anonymous_client();
    let mut images = BTreeMap::new();
    for (seed_value, tag) in ["keyless", "bundled", "stranger", "expired"].into_iter().enumerate() {
        let built = testdata::index(seed_value as u64 + 70, &[(0, 10_000)], &PLATFORMS, false);
        seed(&registry, "app", tag, &built).await;
        images.insert(tag, built);
    }
    // A minute into the certificates' day of validity, as Rekor logs just after Fulcio issues.
    let now = now() + 60;
    let signatures = [
        ("keyless", sigstore.keyless_signature(images["keyless"].digest(), ISSUER, RELEASE, now)),
        ("stranger", sigstore.keyless_signature(images["stranger"].digest(), ISSUER, "https://github.com/evil/x", now)),
        // Logged three days after its one-day certificate expired.
        ("expired", sigstore.keyless_signature(images["expired"].digest(), ISSUER, RELEASE, now + 3 * 86_400)),
    ];
    for (tag, signature) in signatures {
        let reference = cosign_tag(images[tag].digest(), "sig");
        testdata::push(&client, "app", &reference, &Built::Image(signature)).await.unwrap();
    }
    let Built::Index { index, .. } = &images["bundled"] else { panic!("an index") };
    let bundle = sigstore.keyless_bundle(index, ISSUER, RELEASE, now);
    testdata::push(&client, "app", bundle.manifest.digest.as_str(), &Built::Image(bundle.clone())).await.unwrap();
    let listing = index_of(&[Referrer::describe(&bundle.manifest).unwrap().1]);
    client.put_manifest("app", &fallback_tag(&index.digest), &listing).await.unwrap();
    let target = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    sigstore.write_trusted_root(&root);
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: up\n  targets: down\n  artifacts: {{ enabled: false }}\n  tags: {{ exclude: \"sha256-*\" }}\n\
         \x20 verify:\n    trusted_root: {}\n    keyless:\n      - {{ issuer: \"{ISSUER}\", subject_regexp: '^https://github\\.com/acme/' }}\n\
         mappings:\n  - from: app\n    to: mirror\n",
        registry.host,
        target.host,
        root.display()
    ));

    let output = ocync(&["sync", "--config", &config.path, "--json"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let outcomes = outcomes(&output);
    for tag in ["keyless", "bundled"] {
        assert_eq!(outcomes[tag]["status"], "synced", "{tag}: {}", describe(&output));
        assert_eq!(outcomes[tag]["signer"], format!("keyless {ISSUER} {RELEASE}").as_str(), "{tag}");
        assert_eq!(
            skopeo_digest(&target.skopeo_reference(&format!("mirror:{tag}")), &[]),
            images[tag].digest().to_string()
        );
    }
    let error = |tag: &str| outcomes[tag]["error"].as_str().unwrap().to_string();
    assert!(
        error("stranger")
            .contains(&format!("certificate identity {ISSUER} https://github.com/evil/x matches no keyless identity")),
        "{}",
        error("stranger")
    );
    assert!(
        error("expired").contains("certificate does not chain to a Fulcio CA of the trusted root at the log time"),
        "{}",
        error("expired")
    );
    assert_eq!(tags(&target.skopeo_reference("mirror")), ["bundled", "keyless"]);
}
