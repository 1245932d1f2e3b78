//! Referrers and platform selection against the counting in-memory registry: what lands, and
//! what a warm run costs (positive and negative counts), with and without the referrers API.

use super::*;
use crate::oci::{Referrer, fallback_tag, index_of, parse_index};
use crate::testing::memory::{MemoryRegistry, Op};
use crate::testing::testdata::{self, Built, Image};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

fn engine() -> Engine {
    Engine::new(Limits::new(8, []), Cancel::default(), 4)
}

fn job<'a>(
    source: &'a MemoryRegistry,
    target: &'a MemoryRegistry,
    policy: &'a ArtifactPolicy,
    platforms: &'a [Platform],
) -> ImageJob<'a, MemoryRegistry> {
    ImageJob {
        source: Source { registry: source, repository: "app", reference: "v1".into(), digest: None, media_type: None },
        targets: vec![Target { registry: target, repository: "mirror", reference: "v1".into(), current: None }],
        artifacts: Some(policy),
        platforms,
        verify: None,
    }
}

async fn push_by_digest(registry: &MemoryRegistry, repository: &str, image: &Image) {
    testdata::push(registry, repository, image.manifest.digest.as_str(), &Built::Image(image.clone())).await.unwrap();
}

/// What a registry without the API holds for a subject after a tool attached `referrers`.
async fn attach_by_tag(registry: &MemoryRegistry, subject: &Digest, referrers: &[&Image]) -> Manifest {
    for referrer in referrers {
        push_by_digest(registry, "app", referrer).await;
    }
    let entries: Vec<Referrer> = referrers.iter().map(|r| Referrer::describe(&r.manifest).unwrap().1).collect();
    let index = index_of(&entries);
    registry.put_manifest("app", &fallback_tag(subject), &index).await.unwrap();
    index
}

fn children(built: &Built) -> &[Image] {
    match built {
        Built::Index { children, .. } => children,
        Built::Image(_) => panic!("not an index"),
    }
}

fn top(built: &Built) -> Manifest {
    match built {
        Built::Index { index, .. } => index.clone(),
        Built::Image(image) => image.manifest.clone(),
    }
}

fn reset(registries: &[&MemoryRegistry]) {
    registries.iter().for_each(|r| r.reset_counts());
}

/// An index with a notation signature over it, an SBOM over its first child and a cosign
/// bundle signature over that SBOM, at a source with the referrers API.
async fn signed_with_api(seed: u64) -> (MemoryRegistry, Built, Vec<Image>) {
    let source = MemoryRegistry::with_referrers_api("src");
    let built = testdata::index(seed, &[(0, 5000)], &PLATFORMS, false);
    source.insert("app", "v1", &built);
    let signature = testdata::notation_signature(&top(&built), seed);
    let sbom = testdata::sbom_referrer(&children(&built)[0].manifest);
    let sbom_signature = testdata::bundle_signature(&sbom.manifest, seed);
    for referrer in [&signature, &sbom, &sbom_signature] {
        push_by_digest(&source, "app", referrer).await;
    }
    (source, built, vec![signature, sbom, sbom_signature])
}

#[tokio::test]
async fn referrers_of_the_index_its_children_and_other_referrers_follow_through_the_api() {
    let (source, built, referrers) = signed_with_api(1).await;
    let target = MemoryRegistry::with_referrers_api("dst");
    let policy = ArtifactPolicy::default();

    let report = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.targets[0].stats.referrers_copied, 3);
    for referrer in &referrers {
        assert!(target.has_manifest("mirror", &referrer.manifest.digest), "{}", referrer.manifest.digest);
    }
    let listed = target.list_referrers("mirror", built.digest(), None).await.unwrap().unwrap();
    assert_eq!(listed[0].digest, referrers[0].manifest.digest);
    assert!(target.tags("mirror").keys().all(|t| t == "v1"), "no fallback tags where the API exists");
}

#[tokio::test]
async fn a_warm_run_through_the_api_costs_listings_only() {
    let (source, _, _) = signed_with_api(2).await;
    let target = MemoryRegistry::with_referrers_api("dst");
    let policy = ArtifactPolicy::default();
    engine().copy(&job(&source, &target, &policy, &[])).await;
    reset(&[&source, &target]);

    let report = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert!(matches!(report.targets[0].outcome, Outcome::Skipped { .. }), "{report:?}");
    // The API probe (a listing of the index, asked once per run), then the index, two
    // children, the signature, the SBOM, the SBOM's signature; one tag list for cosign's
    // tags (a sync has it from discovery). No manifest GET: the target serves the index.
    let source_counts = [(Op::HeadManifest, 1), (Op::ListTags, 1), (Op::ListReferrers, 7)];
    assert_eq!(source.counts(), source_counts.into());
    // Only subjects with referrers upstream are listed at the target: index, child, SBOM.
    let target_counts = [(Op::HeadManifest, 1), (Op::GetManifest, 1), (Op::ListReferrers, 3)];
    assert_eq!(target.counts(), target_counts.into());
}

#[tokio::test]
async fn a_new_upstream_signature_is_the_only_thing_copied() {
    let (source, built, _) = signed_with_api(3).await;
    let target = MemoryRegistry::with_referrers_api("dst");
    let policy = ArtifactPolicy::default();
    engine().copy(&job(&source, &target, &policy, &[])).await;
    let late = testdata::notation_signature(&top(&built), 99);
    push_by_digest(&source, "app", &late).await;
    reset(&[&source, &target]);

    let report = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.targets[0].stats.referrers_copied, 1);
    assert!(target.has_manifest("mirror", &late.manifest.digest));
    assert_eq!(target.count(Op::PutManifest), 1, "the new signature only");
    assert_eq!(target.count(Op::PushBlob), 1, "its envelope; the empty config is there");
    assert_eq!(source.count(Op::GetBlob), 1);
}

#[tokio::test]
async fn without_the_api_the_fallback_index_is_copied_verbatim_and_cosign_tags_as_they_are() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let built = Built::Image(testdata::image(&[(5, 3000)], PLATFORMS[0], false));
    source.insert("app", "v1", &built);
    let notation = testdata::notation_signature(&top(&built), 5);
    let index = attach_by_tag(&source, built.digest(), &[&notation]).await;
    let cosign = cosign_sign(&source, &top(&built), 5).await;
    let policy = ArtifactPolicy::default();

    let report = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert_eq!(report.targets[0].stats.referrers_copied, 2, "{report:?}");
    let tags = target.tags("mirror");
    assert_eq!(tags[&fallback_tag(built.digest())], index.digest, "bit for bit");
    assert_eq!(tags[&crate::oci::cosign_tag(built.digest(), "sig")], cosign.manifest.digest);
    assert!(target.has_manifest("mirror", &notation.manifest.digest));

    reset(&[&source, &target]);
    let warm = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert!(matches!(warm.targets[0].outcome, Outcome::Skipped { .. }), "{warm:?}");
    assert_eq!(target.count(Op::PutManifest) + target.count(Op::PushBlob), 0);
    assert_eq!(source.count(Op::GetBlob), 0);
    // One API probe and one tag list per registry; the fallback index read, the cosign tag
    // HEADed. The image itself is read from the target, which has it, not from the source.
    let expected = [(Op::HeadManifest, 2), (Op::GetManifest, 1), (Op::ListReferrers, 1), (Op::ListTags, 1)];
    assert_eq!(source.counts(), expected.into());
    let expected = [(Op::HeadManifest, 2), (Op::GetManifest, 2), (Op::ListReferrers, 1), (Op::ListTags, 1)];
    assert_eq!(target.counts(), expected.into());
}

#[tokio::test]
async fn a_fallback_index_at_the_target_keeps_the_entries_it_had() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let built = Built::Image(testdata::image(&[(6, 3000)], PLATFORMS[0], false));
    source.insert("app", "v1", &built);
    target.insert("mirror", "v1", &built);
    let upstream = testdata::notation_signature(&top(&built), 6);
    attach_by_tag(&source, built.digest(), &[&upstream]).await;
    // A signature only the mirror has (its own policy signed the copy).
    let local = testdata::bundle_signature(&top(&built), 60);
    push_by_digest(&target, "mirror", &local).await;
    let local_index = index_of(&[Referrer::describe(&local.manifest).unwrap().1]);
    target.put_manifest("mirror", &fallback_tag(built.digest()), &local_index).await.unwrap();
    let policy = ArtifactPolicy::default();

    engine().copy(&job(&source, &target, &policy, &[])).await;
    let merged = target.get_manifest("mirror", &fallback_tag(built.digest())).await.unwrap();
    let listed: Vec<Digest> = parse_index(&merged.bytes).unwrap().into_iter().map(|r| r.digest).collect();
    assert_eq!(listed, [local.manifest.digest.clone(), upstream.manifest.digest.clone()]);
}

#[tokio::test]
async fn excluded_artifact_types_stay_behind() {
    let (source, _, referrers) = signed_with_api(7).await;
    let target = MemoryRegistry::with_referrers_api("dst");
    let policy = ArtifactPolicy::new(vec![], vec![testdata::SPDX.into()], false).unwrap();

    engine().copy(&job(&source, &target, &policy, &[])).await;
    assert!(target.has_manifest("mirror", &referrers[0].manifest.digest), "the notation signature");
    assert!(!target.has_manifest("mirror", &referrers[1].manifest.digest), "the SBOM is excluded");
    assert!(!target.has_manifest("mirror", &referrers[2].manifest.digest), "and so is what refers to it");
}

#[tokio::test]
async fn require_fails_an_unsigned_image_and_writes_nothing() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &testdata::index(8, &[], &PLATFORMS, false));
    let policy = ArtifactPolicy::new(vec![], vec![], true).unwrap();

    let report = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert!(
        matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.contains("artifacts.require")),
        "{report:?}"
    );
    assert_eq!(target.count(Op::PutManifest) + target.count(Op::PushBlob) + target.count(Op::BlobExists), 0);
}

#[tokio::test]
async fn platforms_land_only_the_chosen_children_and_the_same_index_twice() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let built = testdata::buildx_index(9, &PLATFORMS);
    source.insert("app", "v1", &built);
    let platforms: Vec<Platform> = vec!["linux/arm64".parse().unwrap()];
    let policy = ArtifactPolicy::default();

    let first = engine().copy(&job(&source, &target, &policy, &platforms)).await;
    assert_eq!(first.targets[0].outcome, Outcome::Synced, "{first:?}");
    let pushed = first.target_digest.clone().expect("a rebuilt index");
    assert_ne!(&pushed, built.digest());
    assert!(first.warnings[0].contains("do not cover it"), "{:?}", first.warnings);
    let all = children(&built);
    let (amd64, arm64, amd64_attestation, arm64_attestation) = (&all[0], &all[1], &all[2], &all[3]);
    for kept in [arm64, arm64_attestation] {
        assert!(target.has_manifest("mirror", &kept.manifest.digest));
    }
    for dropped in [amd64, amd64_attestation] {
        assert!(!target.has_manifest("mirror", &dropped.manifest.digest));
    }
    assert_eq!(target.tags("mirror")["v1"], pushed);

    reset(&[&target]);
    let second = engine().copy(&job(&source, &target, &policy, &platforms)).await;
    assert_eq!(second.target_digest, Some(pushed));
    assert!(matches!(second.targets[0].outcome, Outcome::Skipped { .. }), "{second:?}");
    assert_eq!(target.count(Op::PutManifest), 0);
}

#[tokio::test]
async fn no_platform_match_fails_the_image_with_what_the_index_has() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    source.insert("app", "v1", &testdata::index(10, &[], &PLATFORMS, false));
    let platforms: Vec<Platform> = vec!["linux/s390x".parse().unwrap()];
    let policy = ArtifactPolicy::default();

    let report = engine().copy(&job(&source, &target, &policy, &platforms)).await;
    let Outcome::Failed { error, .. } = &report.targets[0].outcome else { panic!("{report:?}") };
    assert!(error.contains("no child of index") && error.contains("linux/amd64, linux/arm64"), "{error}");
    assert_eq!(target.count(Op::PutManifest), 0);
}

#[tokio::test]
async fn a_referrer_that_cannot_be_copied_fails_the_image_and_is_never_listed() {
    let (source, good, bad) = (MemoryRegistry::new("src"), MemoryRegistry::new("good"), MemoryRegistry::new("bad"));
    let built = Built::Image(testdata::image(&[(11, 3000)], PLATFORMS[0], false));
    source.insert("app", "v1", &built);
    let signature = testdata::notation_signature(&top(&built), 11);
    attach_by_tag(&source, built.digest(), &[&signature]).await;
    // The signature's envelope is already at `good`, so only `bad` reads the corrupt bytes.
    let envelope = &signature.blobs[1].descriptor;
    testdata::push(&good, "mirror", "seed", &Built::Image(signature.clone())).await.unwrap();
    source.corrupt_blob(&envelope.digest);
    let policy = ArtifactPolicy::default();
    let job = ImageJob {
        targets: vec![
            Target { registry: &bad, repository: "mirror", reference: "v1".into(), current: None },
            Target { registry: &good, repository: "mirror", reference: "v1".into(), current: None },
        ],
        ..job(&source, &good, &policy, &[])
    };

    let report = engine().copy(&job).await;
    assert!(
        matches!(&report.targets[0].outcome, Outcome::Failed { error, .. } if error.contains("corrupt")),
        "{report:?}"
    );
    assert_eq!(report.targets[1].outcome, Outcome::Synced, "the other target goes on");
    assert_eq!(bad.tags("mirror")["v1"], *built.digest(), "the image itself was complete");
    assert!(!bad.tags("mirror").contains_key(&fallback_tag(built.digest())), "no entry for what did not land");
    assert!(good.tags("mirror").contains_key(&fallback_tag(built.digest())));
}

/// `subject`'s cosign signature under its `.sig` tag, as cosign writes it by default (also
/// on registries with the referrers API).
async fn cosign_sign(registry: &MemoryRegistry, subject: &Manifest, seed: u64) -> Image {
    let signature = testdata::cosign_signature(subject, seed);
    let tag = crate::oci::cosign_tag(&subject.digest, "sig");
    testdata::push(registry, "app", &tag, &Built::Image(signature.clone())).await.unwrap();
    signature
}

#[tokio::test]
async fn cosign_tags_at_a_source_with_the_api_follow_and_satisfy_require() {
    let source = MemoryRegistry::with_referrers_api("src");
    let built = testdata::index(12, &[], &PLATFORMS, false);
    source.insert("app", "v1", &built);
    let signature = cosign_sign(&source, &top(&built), 12).await;
    let target = MemoryRegistry::with_referrers_api("dst");
    let policy = ArtifactPolicy::new(vec![], vec![], true).unwrap();

    let report = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "only a cosign tag signs it: {report:?}");
    assert_eq!(report.targets[0].stats.referrers_copied, 1);
    assert_eq!(target.tags("mirror")[&crate::oci::cosign_tag(built.digest(), "sig")], signature.manifest.digest);
    // Only the tag that exists is HEADed: the image's HEAD and the signature's.
    assert_eq!(source.count(Op::HeadManifest), 2, "{:?}", source.counts());
    assert_eq!(source.count(Op::ListTags), 1);
}

#[tokio::test]
async fn a_warm_run_to_a_target_with_the_api_pushes_no_cosign_tag_again() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::with_referrers_api("dst"));
    let built = Built::Image(testdata::image(&[(13, 3000)], PLATFORMS[0], false));
    source.insert("app", "v1", &built);
    cosign_sign(&source, &top(&built), 13).await;
    let policy = ArtifactPolicy::default();
    let cold = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert_eq!(cold.targets[0].stats.referrers_copied, 1, "{cold:?}");
    reset(&[&source, &target]);

    let warm = engine().copy(&job(&source, &target, &policy, &[])).await;
    assert!(matches!(warm.targets[0].outcome, Outcome::Skipped { .. }), "{warm:?}");
    assert_eq!(warm.targets[0].stats.referrers_copied, 0);
    // The tag's HEAD and the subject's listing; no tag list, nothing pushed, nothing read.
    let expected = [(Op::HeadManifest, 2), (Op::GetManifest, 1), (Op::ListReferrers, 1)];
    assert_eq!(target.counts(), expected.into());
    assert_eq!(source.count(Op::GetManifest) + source.count(Op::GetBlob), 0, "{:?}", source.counts());
}

#[tokio::test]
async fn an_index_is_read_from_a_target_that_has_it_and_from_the_source_otherwise() {
    let (source, _, _) = signed_with_api(14).await;
    let (current, stale) = (MemoryRegistry::with_referrers_api("current"), MemoryRegistry::with_referrers_api("stale"));
    let policy = ArtifactPolicy::default();
    engine().copy(&job(&source, &current, &policy, &[])).await;
    let other = testdata::index(15, &[], &PLATFORMS, false);
    stale.insert("mirror", "v1", &other);
    reset(&[&source, &current]);

    let warm = engine().copy(&job(&source, &current, &policy, &[])).await;
    assert!(matches!(warm.targets[0].outcome, Outcome::Skipped { .. }), "{warm:?}");
    assert_eq!(source.count(Op::GetManifest), 0, "the target served the index");
    assert_eq!(current.count(Op::GetManifest), 1);

    reset(&[&source]);
    let report = engine().copy(&job(&source, &stale, &policy, &[])).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(stale.count(Op::GetManifest), 0, "its tag has another digest: not asked for the index");
    // The index, its two children and the three referrers, from the source.
    assert_eq!(source.count(Op::GetManifest), 6, "{:?}", source.counts());
}

#[tokio::test]
async fn a_referrers_route_refused_with_400_405_501_or_401_means_no_api_asked_once() {
    for status in [400, 405, 501, 401, 403] {
        let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
        source.refuse_referrers(status);
        let first = Built::Image(testdata::image(&[(16, 3000)], PLATFORMS[0], false));
        let second = Built::Image(testdata::image(&[(17, 3000)], PLATFORMS[0], false));
        source.insert("app", "v1", &first);
        source.insert("app", "v2", &second);
        let signature = testdata::notation_signature(&top(&first), 16);
        attach_by_tag(&source, first.digest(), &[&signature]).await;
        let policy = ArtifactPolicy::default();
        let engine = engine();

        let report = engine.copy(&job(&source, &target, &policy, &[])).await;
        assert_eq!(report.targets[0].outcome, Outcome::Synced, "{status}: {report:?}");
        assert_eq!(report.targets[0].stats.referrers_copied, 1, "{status}: through the fallback index");
        let mut second_job = job(&source, &target, &policy, &[]);
        second_job.source.reference = "v2".into();
        second_job.targets[0].reference = "v2".into();
        let report = engine.copy(&second_job).await;
        assert_eq!(report.targets[0].outcome, Outcome::Synced, "{status}: {report:?}");
        assert_eq!(source.count(Op::ListReferrers), 1, "{status}: asked once per registry and run");
    }
}

#[tokio::test]
async fn a_refused_referrers_route_is_no_api_only_where_the_credentials_work() {
    let registry = MemoryRegistry::new("src");
    let built = Built::Image(testdata::image(&[(18, 100)], PLATFORMS[0], false));
    registry.insert("app", "v1", &built);
    registry.insert("denied", "v1", &built);
    registry.fail_repository("denied", 401);
    let unauthorized = |repository: &str| registry::Error::Unauthorized {
        registry: "src".into(),
        repository: repository.into(),
        status: 401,
        detail: String::new(),
    };
    assert!(referrers::refuses_route(&registry, "app", built.digest(), &unauthorized("app")).await);
    assert!(!referrers::refuses_route(&registry, "denied", built.digest(), &unauthorized("denied")).await);
    let server_error = registry::Error::Status {
        registry: "src".into(),
        repository: "app".into(),
        action: "GET referrers".into(),
        status: 500,
        detail: String::new(),
    };
    assert!(!referrers::refuses_route(&registry, "app", built.digest(), &server_error).await, "a 500 stands");
}

#[tokio::test]
async fn platforms_that_match_every_child_push_the_source_index_unchanged() {
    let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
    let built = testdata::buildx_index(19, &PLATFORMS);
    source.insert("app", "v1", &built);
    let platforms: Vec<Platform> = vec!["linux/amd64".parse().unwrap(), "linux/arm64".parse().unwrap()];
    let policy = ArtifactPolicy::default();

    let report = engine().copy(&job(&source, &target, &policy, &platforms)).await;
    assert_eq!(report.targets[0].outcome, Outcome::Synced, "{report:?}");
    assert_eq!(report.target_digest, None, "the source digest");
    assert!(report.warnings.is_empty(), "signatures over the index still hold: {:?}", report.warnings);
    assert_eq!(target.tags("mirror")["v1"], *built.digest());
}
