//! Registries that misbehave, through the fault proxy: refused monolithic uploads, relative
//! `Location`s, declined mounts, 503s and reset connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tools::{TempConfig, skopeo_digest};
use ocync::testing::testdata::{self, Built};

fn image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 300_000), (seed + 1, 1000)], ("linux", "amd64"), false))
}

fn report(output: &std::process::Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", describe(output));
    serde_json::from_slice(&output.stdout).expect("one JSON report on stdout")
}

#[tokio::test]
async fn a_refused_monolithic_upload_switches_to_chunks() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = image(50);
    seed(&source, "team/app", "v1", &built).await;
    let proxy = FaultProxy::start(&target.host, |request| {
        if request.method == "PUT" && request.target.contains("/blobs/uploads/") && request.body_len > 0 {
            Action::Respond { status: 413, headers: vec![], body: "too large".into() }
        } else {
            Action::Forward
        }
    });

    // One transfer at a time, so exactly one monolithic attempt precedes the switch.
    let output =
        ocync(&["copy", "--json", "--concurrency", "1", &source.reference("team/app:v1"), &proxy.reference("app:v1")]);
    assert_eq!(report(&output)["stats"]["blobs_copied"], 3);
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
    let seen = proxy.seen();
    let refused = seen.iter().filter(|r| r.method == "PUT" && r.target.contains("/blobs/") && r.body_len > 0).count();
    assert_eq!(refused, 1, "only the first monolithic upload is tried: {seen:?}");
    assert!(seen.iter().any(|r| r.method == "PATCH"), "chunks were sent");
}

#[tokio::test]
async fn relative_upload_locations_are_resolved_against_the_registry() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = image(60);
    seed(&source, "team/app", "v1", &built).await;
    let proxy = FaultProxy::start(&target.host, |_| Action::ForwardWithRelativeLocation);

    report(&ocync(&["copy", "--json", &source.reference("team/app:v1"), &proxy.reference("app:v1")]));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
}

#[tokio::test]
async fn a_declined_mount_uploads_in_the_session_the_registry_opened() {
    let registry = TestRegistry::plain();
    let built = image(70);
    seed(&registry, "team/app", "v1", &built).await;
    // Strip the mount parameters: the registry then answers 202 with a fresh upload session.
    let proxy = FaultProxy::start(&registry.host, |request| match request.target.split_once('?') {
        Some((path, query)) if request.method == "POST" && query.contains("mount=") => {
            Action::ForwardTo(path.to_string())
        }
        _ => Action::Forward,
    });

    let output = ocync(&["copy", "--json", &proxy.reference("team/app:v1"), &proxy.reference("copy/app:v1")]);
    let report = report(&output);
    assert_eq!(report["stats"]["blobs_mounted"], 0, "{report}");
    assert_eq!(report["stats"]["blobs_copied"], 3, "{report}");
    let posts = proxy.seen().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 3, "one POST per blob: the 202 session is reused, not opened again");
    assert_eq!(skopeo_digest(&registry.skopeo_reference("copy/app:v1"), &[]), built.digest().to_string());
}

#[tokio::test]
async fn transient_503s_and_resets_are_retried() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = image(80);
    seed(&source, "team/app", "v1", &built).await;
    let manifest_heads = Arc::new(AtomicUsize::new(0));
    let blob_gets = Arc::new(AtomicUsize::new(0));
    let (heads, gets) = (manifest_heads.clone(), blob_gets.clone());
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "HEAD"
            && request.target.contains("/manifests/")
            && heads.fetch_add(1, Ordering::SeqCst) < 2
        {
            return Action::Respond {
                status: 503,
                headers: vec![("Retry-After".into(), "0".into())],
                body: String::new(),
            };
        }
        if request.method == "GET" && request.target.contains("/blobs/") && gets.fetch_add(1, Ordering::SeqCst) == 0 {
            return Action::Reset;
        }
        Action::Forward
    });

    report(&ocync(&["copy", "--json", &proxy.reference("team/app:v1"), &target.reference("app:v1")]));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
    assert_eq!(manifest_heads.load(Ordering::SeqCst), 3, "two 503s then success");
}

#[tokio::test]
async fn a_registry_that_keeps_failing_fails_the_copy_after_bounded_retries() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/app", "v1", &image(90)).await;
    let proxy = FaultProxy::start(&source.host, |request| match request.method.as_str() {
        "GET" => Action::Respond {
            status: 500,
            headers: vec![],
            body: r#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#.into(),
        },
        _ => Action::Forward,
    });

    let (from, to) = (proxy.reference("team/app:v1"), target.reference("app:v1"));
    let output = ocync(&["copy", &from, &to, "--no-referrers"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("answered 500 to GET manifest sha256:"), "{}", describe(&output));
    assert!(stdout.contains("in team/app: UNKNOWN: disk on fire"), "{}", describe(&output));
    let gets = proxy.seen().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 4, "one try and three retries");

    // With referrers, the first GET is the referrers-API probe: bounded the same way, and the
    // image fails there rather than retrying again on another path.
    let output = ocync(&["copy", &from, &to]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("answered 500 to GET referrers of sha256:"), "{}", describe(&output));
    let gets = proxy.seen().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 8, "four more: one try and three retries");
    assert!(target.requests().iter().all(|(method, _)| method == "HEAD"), "nothing pushed");
}

/// One-second request and idle timeouts, so stalls fail fast.
fn config_with_timeouts() -> TempConfig {
    TempConfig::new("global:\n  timeout: 1s\n  idle_timeout: 1s\n")
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let target = TestRegistry::plain();
    let upstream = TestRegistry::plain();
    let proxy = FaultProxy::start(&upstream.host, |_| Action::Stall);
    let config = config_with_timeouts();
    let output =
        ocync(&["copy", "--config", &config.path, &proxy.reference("team/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let expected = format!("timed out talking to {} (HEAD manifest v1 in team/app) after 1s", proxy.host);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&expected), "{}", describe(&output));
}

#[tokio::test]
async fn a_blob_body_that_stops_flowing_hits_the_idle_timeout_and_pushes_nothing() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = image(100);
    seed(&source, "team/app", "v1", &built).await;
    let layer = built.blobs()[1].descriptor.digest.to_string();
    let stalled = layer.clone();
    // Headers and part of the 300 kB layer arrive, then nothing.
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&stalled) {
            Action::StallAfter(100_000)
        } else {
            Action::Forward
        }
    });
    let config = config_with_timeouts();
    let output =
        ocync(&["copy", "--config", &config.path, &proxy.reference("team/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let expected = format!("timed out talking to {} (GET blob {layer} in team/app) after 1s", proxy.host);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&expected), "{}", describe(&output));
    let gets = proxy.seen().iter().filter(|r| r.target.ends_with(&layer)).count();
    assert_eq!(gets, 3, "the transfer is retried from the source, three attempts in all");
    assert!(
        target.requests().iter().all(|(method, path)| method != "PUT" || !path.contains("/manifests/")),
        "no tag pushed"
    );
}

/// Two images (seeds 200 and 210) in two repositories, and a config mirroring both.
async fn two_repositories(source: &TestRegistry, target: &TestRegistry, through: &str) -> (TempConfig, Vec<Built>) {
    let images: Vec<Built> = (0..2).map(|i| image(200 + i * 10)).collect();
    seed(source, "team/one", "v1", &images[0]).await;
    seed(source, "team/two", "v1", &images[1]).await;
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{through}\" }}\n  down: {{ url: \"http://{}\" }}\n\
         defaults: {{ source: up, targets: down }}\nmappings:\n  - from: team/one\n  - from: team/two\n",
        target.host
    ));
    (config, images)
}

fn layer_of(built: &Built) -> String {
    built.blobs().iter().max_by_key(|b| b.descriptor.size).unwrap().descriptor.digest.to_string()
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_the_sync_completes() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let heads = Arc::new(AtomicUsize::new(0));
    let counter = heads.clone();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "HEAD" && counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::Respond { status: 429, headers: vec![("Retry-After".into(), "2".into())], body: String::new() }
        } else {
            Action::Forward
        }
    });
    let (config, images) = two_repositories(&source, &target, &proxy.host).await;

    let output = ocync(&["sync", "--config", &config.path]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let seen = proxy.seen();
    let throttled = &seen.iter().find(|r| r.method == "HEAD").unwrap().target;
    let tries: Vec<_> = seen.iter().filter(|r| r.method == "HEAD" && &r.target == throttled).collect();
    let waited = tries[1].at.duration_since(tries[0].at);
    assert!(waited >= std::time::Duration::from_secs(2), "Retry-After: 2 was not obeyed: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(4), "waited far longer than asked: {waited:?}");
    for (repository, built) in ["team/one", "team/two"].iter().zip(&images) {
        assert_eq!(
            skopeo_digest(&target.skopeo_reference(&format!("{repository}:v1")), &[]),
            built.digest().to_string()
        );
    }
}

#[tokio::test]
async fn a_connection_reset_mid_blob_is_retried_from_the_source() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let seeded = image(300);
    let layer = layer_of(&seeded);
    let (cut, gets) = (layer.clone(), Arc::new(AtomicUsize::new(0)));
    let counter = gets.clone();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&cut) && counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::CutAfter(100_000)
        } else {
            Action::Forward
        }
    });
    seed(&source, "team/app", "v1", &seeded).await;

    let output = ocync(&["copy", &proxy.reference("team/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(gets.load(Ordering::SeqCst), 2, "one cut download, one retry");
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), seeded.digest().to_string());
}

#[tokio::test]
async fn a_corrupted_byte_fails_only_the_affected_image() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    // The first repository's image is image(200) (see two_repositories).
    let corrupt = layer_of(&image(200));
    let flipped = corrupt.clone();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&flipped) {
            Action::CorruptBody
        } else {
            Action::Forward
        }
    });
    let (config, _) = two_repositories(&source, &target, &proxy.host).await;

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let failed = &report["mappings"][0]["images"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains(&format!("blob {corrupt} from {}/team/one is corrupt", proxy.host)),
        "{failed}"
    );
    assert_eq!(report["mappings"][1]["images"][0]["status"], "synced");
    let client = target.anonymous_client();
    use ocync::registry::Registry as _;
    assert_eq!(client.head_manifest("team/one", "v1").await.unwrap(), None, "no tag over a corrupt blob");
}

#[tokio::test]
async fn a_truncated_body_that_looks_complete_is_caught_by_its_size() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let seeded = image(400);
    let layer = layer_of(&seeded);
    let truncated = layer.clone();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&truncated) {
            Action::TruncateBody
        } else {
            Action::Forward
        }
    });
    seed(&source, "team/app", "v1", &seeded).await;

    let output = ocync(&["copy", &proxy.reference("team/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("body ended after 150000 of 300000 bytes"),
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn docker_hub_pulls_are_deferred_once_the_budget_is_spent() {
    use ocync::registry::Registry as _;
    let source = TestRegistry::plain();
    seed(&source, "library/app", "v1", &image(500)).await;
    let proxy = FaultProxy::start(&source.host, |request| {
        if request.method == "GET" && request.target.contains("/manifests/") {
            Action::ForwardAddingHeaders(vec![
                ("RateLimit-Limit".into(), "100;w=21600".into()),
                ("RateLimit-Remaining".into(), "1;w=21600".into()),
                ("RateLimit-Reset".into(), "3600".into()),
            ])
        } else {
            Action::Forward
        }
    });
    let mut settings = ocync::registry::RegistrySettings::new(&proxy.host);
    settings.plain_http = true;
    settings.kind = ocync::registry::kind::RegistryKind::DockerHub;
    let hub = ocync::registry::HttpRegistry::new(settings).unwrap();

    hub.get_manifest("library/app", "v1").await.expect("the first pull is within budget");
    let error = hub.get_manifest("library/app", "v1").await.unwrap_err();
    assert!(matches!(error, ocync::registry::Error::Deferred { .. }), "{error}");
    assert!(
        error.to_string().contains("pull budget exhausted (1 of 100 pulls left; the window is 21600s; resets in 3"),
        "{error}"
    );
    assert!(error.to_string().contains(" GMT)"), "the reset time is named: {error}");
    assert!(hub.head_manifest("library/app", "v1").await.unwrap().is_some(), "HEADs are not counted by Hub");
    let gets = proxy.seen().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 1, "the deferred pull never reached the registry");
}

/// ECR's answer to moving an immutable tag, through the real HTTP client: one refused PUT (not
/// retried), a clear per-image failure, and the tag left where it was.
#[tokio::test]
async fn an_ecr_immutable_tag_refusal_fails_the_image_clearly() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let (old, new) = (image(80), image(82));
    seed(&source, "team/app", "v1", &new).await;
    seed(&target, "app", "v1", &old).await;
    let proxy = FaultProxy::start(&target.host, |request| {
        if request.method == "PUT" && request.target == "/v2/app/manifests/v1" {
            Action::Respond {
                status: 400,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: r#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable."}]}"#.into(),
            }
        } else {
            Action::Forward
        }
    });

    let output = ocync(&["copy", "--json", &source.reference("team/app:v1"), &proxy.reference("app:v1")]);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(text.contains("tag v1 is immutable and already points to another digest"), "{text}");
    assert!(text.contains("TAG_INVALID"), "{text}");
    let refused = proxy.seen().iter().filter(|r| r.method == "PUT" && r.target == "/v2/app/manifests/v1").count();
    assert_eq!(refused, 1, "a refusal is an answer, not retried");
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), old.digest().to_string());
}
