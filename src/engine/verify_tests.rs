//! `verify` in the engine, against the counting in-memory registry: what is admitted, what is
//! refused before any byte is written, and that images already in place cost no verification.

use super::*;
use crate::testing::keys::{KeyPair, SigningKind};
use crate::testing::memory::{MemoryRegistry, Op};
use crate::testing::testdata::{self, Built};
use crate::verify::{Mode, Policy, PublicKey};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

fn engine() -> Engine {
    Engine::new(Limits::new(8, []), Cancel::default(), 4)
}

fn policy(mode: Mode, keys: &[&KeyPair]) -> Policy {
    Policy {
        mode,
        keys: keys.iter().map(|k| PublicKey::from_pem(k.public_pem().as_bytes()).unwrap()).collect(),
        identities: Vec::new(),
        trusted_root: None,
    }
}

fn job<'a>(source: &'a MemoryRegistry, target: &'a MemoryRegistry, policy: &'a Policy) -> ImageJob<'a, MemoryRegistry> {
    ImageJob {
        source: Source { registry: source, repository: "app", reference: "v1".into(), digest: None, media_type: None },
        targets: vec![Target { registry: target, repository: "mirror", reference: "v1".into(), current: None }],
        artifacts: None,
        platforms: &[],
        verify: Some(policy),
    }
}

/// The source with `v1` (an index) and, for each signer, its `.sig` tag.
fn signed_source(seed: u64, signers: &[&KeyPair]) -> (MemoryRegistry, Built) {
    let source = MemoryRegistry::new("src");
    let built = testdata::index(seed, &[(0, 4_000)], &PLATFORMS, false);
    source.insert("app", "v1", &built);
    for signer in signers {
        let signature = testdata::signed_cosign_signature(built.digest(), |m| signer.sign(m));
        source.insert("app", &crate::oci::cosign_tag(built.digest(), "sig"), &Built::Image(signature));
    }
    (source, built)
}

fn failure(report: &ImageReport) -> &str {
    match &report.targets[0].outcome {
        Outcome::Failed { error, .. } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn untouched(target: &MemoryRegistry) {
    assert_eq!(target.count(Op::PutManifest) + target.count(Op::PushBlob) + target.count(Op::Mount), 0);
    assert!(target.tags("mirror").is_empty());
}

#[tokio::test]
async fn an_index_signed_by_a_listed_key_is_copied_and_its_signer_reported() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, built) = signed_source(1, &[&key]);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);

    let report = engine().copy(&job(&source, &target, &policy)).await;

    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.signer, Some(format!("key {}", key.fingerprint())));
    assert_eq!(target.tags("mirror")["v1"], *built.digest());
}

#[tokio::test]
async fn an_unsigned_image_under_enforce_fails_and_writes_nothing() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, built) = signed_source(2, &[]);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);

    let report = engine().copy(&job(&source, &target, &policy)).await;

    let error = failure(&report);
    assert!(error.starts_with("unverified: src/app:v1: "), "{error}");
    assert!(error.contains(&format!("no {} tag", crate::oci::cosign_tag(built.digest(), "sig"))), "{error}");
    assert!(error.contains("no sigstore bundle referrer"), "{error}");
    assert_eq!(report.signer, None);
    untouched(&target);
}

#[tokio::test]
async fn an_unsigned_image_under_warn_is_copied_with_a_warning() {
    let key = KeyPair::generate(SigningKind::Ed25519);
    let (source, built) = signed_source(3, &[]);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Warn, &[&key]);

    let report = engine().copy(&job(&source, &target, &policy)).await;

    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert!(report.warnings[0].starts_with("unverified: no sha256-"), "{:?}", report.warnings);
    assert!(report.warnings[0].ends_with("copied because verify.mode is warn"), "{:?}", report.warnings);
    assert_eq!(target.tags("mirror")["v1"], *built.digest());
}

#[tokio::test]
async fn a_signature_by_an_unlisted_key_or_over_another_digest_is_refused_with_each_reason() {
    let (trusted, stranger) = (KeyPair::generate(SigningKind::P384), KeyPair::generate(SigningKind::P384));
    let (source, built) = signed_source(4, &[&stranger]);
    // A second layer: the trusted key's real signature, but over another image's digest.
    let other = testdata::index(5, &[(0, 100)], &PLATFORMS, false);
    let forged = testdata::signed_cosign_signature(other.digest(), |m| trusted.sign(m));
    let tag = crate::oci::cosign_tag(built.digest(), "sig");
    source.insert("app", &tag, &Built::Image(forged));
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&trusted]);

    let report = engine().copy(&job(&source, &target, &policy)).await;

    let error = failure(&report);
    assert!(error.contains(&format!("{tag}[0]: signs {}, not this image", other.digest())), "{error}");
    untouched(&target);

    // And the stranger's signature alone: the key is not listed.
    let (source, _) = signed_source(6, &[&stranger]);
    let report = engine().copy(&job(&source, &target, &policy)).await;
    assert!(failure(&report).contains("[0]: no listed key (1) verifies the signature"), "{report:?}");
    untouched(&target);
}

#[tokio::test]
async fn a_bundle_referrer_signed_by_a_listed_key_is_accepted() {
    let key = KeyPair::generate(SigningKind::Rsa);
    let (source, built) = signed_source(7, &[]);
    let Built::Index { index, .. } = &built else { panic!("an index") };
    let bundle = testdata::signed_bundle(index, built.digest(), |m| key.sign(m));
    testdata::push(&source, "app", bundle.manifest.digest.as_str(), &Built::Image(bundle.clone())).await.unwrap();
    let listing = crate::oci::index_of(&[crate::oci::Referrer::describe(&bundle.manifest).unwrap().1]);
    source.put_manifest("app", &crate::oci::fallback_tag(built.digest()), &listing).await.unwrap();
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);

    let report = engine().copy(&job(&source, &target, &policy)).await;

    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.signer, Some(format!("key {}", key.fingerprint())));
}

#[tokio::test]
async fn an_image_already_at_the_target_costs_no_verification() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, _) = signed_source(8, &[&key]);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);
    engine().copy(&job(&source, &target, &policy)).await;
    source.reset_counts();

    let report = engine().copy(&job(&source, &target, &policy)).await;

    assert!(matches!(report.targets[0].outcome, Outcome::Skipped { .. }), "{report:?}");
    assert_eq!(source.count(Op::GetManifest) + source.count(Op::GetBlob) + source.count(Op::ListReferrers), 0);
    assert_eq!(report.signer, None, "nothing was checked");
}

#[tokio::test]
async fn a_tag_re_pointed_upstream_to_an_unsigned_digest_is_refused_and_the_old_digest_stays() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, signed) = signed_source(9, &[&key]);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);
    engine().copy(&job(&source, &target, &policy)).await;
    let unsigned = testdata::index(10, &[(0, 4_000)], &PLATFORMS, false);
    source.insert("app", "v1", &unsigned);
    target.reset_counts();

    let report = engine().copy(&job(&source, &target, &policy)).await;

    assert!(failure(&report).starts_with("unverified: "), "{report:?}");
    assert_eq!(target.tags("mirror")["v1"], *signed.digest());
    assert_eq!(target.count(Op::PutManifest) + target.count(Op::PushBlob), 0);
}

#[tokio::test]
async fn with_referrers_an_unverified_image_brings_none_of_them() {
    let key = KeyPair::generate(SigningKind::P256);
    let stranger = KeyPair::generate(SigningKind::P256);
    let (source, _) = signed_source(11, &[&stranger]);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);
    let artifacts = crate::oci::ArtifactPolicy::default();
    let job = ImageJob { artifacts: Some(&artifacts), ..job(&source, &target, &policy) };

    let report = engine().copy(&job).await;

    assert!(failure(&report).contains("no listed key"), "{report:?}");
    untouched(&target);
}

#[tokio::test]
async fn with_platforms_the_source_index_is_verified_and_the_rebuilt_one_copied() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, built) = signed_source(12, &[&key]);
    let (unsigned_source, _) = signed_source(13, &[]);
    let platforms: Vec<crate::oci::Platform> = vec!["linux/arm64".parse().unwrap()];
    let policy = policy(Mode::Enforce, &[&key]);

    let target = MemoryRegistry::new("dst");
    let report = engine().copy(&ImageJob { platforms: &platforms, ..job(&source, &target, &policy) }).await;

    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.signer, Some(format!("key {}", key.fingerprint())), "the source index's signer");
    let rebuilt = report.target_digest.clone().expect("a rebuilt index");
    assert_ne!(rebuilt, *built.digest());
    assert_eq!(target.tags("mirror")["v1"], rebuilt);
    assert!(report.warnings.iter().any(|w| w.contains(&format!("rebuilt from {}", built.digest()))), "{report:?}");

    let target = MemoryRegistry::new("dst");
    let report = engine().copy(&ImageJob { platforms: &platforms, ..job(&unsigned_source, &target, &policy) }).await;
    assert!(failure(&report).starts_with("unverified: "), "{report:?}");
    untouched(&target);
}

#[tokio::test]
async fn a_digest_under_two_tags_is_verified_once_per_run() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, built) = signed_source(14, &[&key]);
    source.insert("app", "latest", &built);
    let target = MemoryRegistry::new("dst");
    let policy = policy(Mode::Enforce, &[&key]);
    let run = engine();
    run.copy(&job(&source, &target, &policy)).await;
    source.reset_counts();

    let mut latest = job(&source, &target, &policy);
    latest.source.reference = "latest".into();
    latest.targets[0].reference = "latest".into();
    let report = run.copy(&latest).await;

    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.signer, Some(format!("key {}", key.fingerprint())));
    assert_eq!(source.count(Op::GetManifest) + source.count(Op::GetBlob), 0, "{:?}", source.counts());
    // A new run verifies again.
    let fresh = MemoryRegistry::new("dst2");
    engine().copy(&job(&source, &fresh, &policy)).await;
    assert!(source.count(Op::GetBlob) > 0);
}

#[tokio::test]
async fn verifying_a_cosign_signature_costs_the_source_one_manifest_and_one_blob_get() {
    let key = KeyPair::generate(SigningKind::P256);
    let (source, _) = signed_source(15, &[&key]);
    let policy = policy(Mode::Enforce, &[&key]);
    let first = MemoryRegistry::new("a");
    let unchecked = ImageJob { verify: None, ..job(&source, &first, &policy) };
    engine().copy(&unchecked).await;
    let without = source.counts();
    source.reset_counts();

    let target = MemoryRegistry::new("b");
    engine().copy(&job(&source, &target, &policy)).await;

    let with = source.counts();
    assert_eq!(with[&Op::GetManifest], without[&Op::GetManifest] + 1, "the .sig tag: {with:?} {without:?}");
    assert_eq!(with[&Op::GetBlob], without[&Op::GetBlob] + 1, "its payload");
    assert_eq!(with.get(&Op::ListReferrers), without.get(&Op::ListReferrers), "no bundle lookup once one verified");
}
