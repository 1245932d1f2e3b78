//! Hostile registries, issue 14 classes 1 and 4 (names and graphs): tags that are really paths,
//! listings whose pages never end or loop, and indexes nested past the depth cap.

use std::time::{Duration, Instant};

use ocync::registry::{Error, HttpRegistry, Registry, RegistrySettings};
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::hostile_registry::{LyingTagServer, Pages, lying_tag_list};
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tools::{TempConfig, skopeo_digest};

fn client(host: &str) -> HttpRegistry {
    let mut settings = RegistrySettings::new(host);
    settings.plain_http = true;
    HttpRegistry::new(settings).expect("client for a loopback server")
}

/// Lists `app`'s tags at a hostile server; the error, the requests it took, and how long.
async fn list_hostile(pages: Pages) -> (Error, usize, Duration) {
    let server = LyingTagServer::standalone("app", pages);
    let started = Instant::now();
    let error = client(server.host()).list_tags("app").await.expect_err("a hostile listing must fail");
    (error, server.requests(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_whose_links_never_end_stops_at_the_entry_cap() {
    let (error, requests, took) = list_hostile(Pages::Endless { page_size: 1000 }).await;
    let text = error.to_string();
    assert!(text.contains("more than 1000000 entries") && text.contains("in app"), "{text}");
    assert_eq!(requests, 1001, "1,000 full pages reach the cap, the next one passes it");
    assert!(took < Duration::from_secs(60), "bounded time: {took:?}");
    eprintln!("endless full pages: {requests} requests in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_of_endless_empty_pages_stops_at_the_page_cap() {
    let (error, requests, took) = list_hostile(Pages::Endless { page_size: 0 }).await;
    let text = error.to_string();
    assert!(text.contains("past 10000 pages") && text.contains("in app"), "{text}");
    assert_eq!(requests, 10_000);
    assert!(took < Duration::from_secs(120), "bounded time: {took:?}");
    eprintln!("endless empty pages: {requests} requests in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_that_links_back_to_an_earlier_page_ends_with_an_error() {
    let (error, requests, _) = list_hostile(Pages::LoopBack { pages: 3 }).await;
    let text = error.to_string();
    assert!(text.contains("already fetched") && text.contains("127.0.0.1") && text.contains("in app"), "{text}");
    assert!(matches!(error, Error::Protocol { .. }), "{error:?}");
    assert_eq!(requests, 3, "the link back is not followed");
}

/// Names a hostile source lists next to the good tag `good`: paths, encoded dots, separators.
const HOSTILE_TAGS: [&str; 7] = [
    "../../v2/other/manifests/latest",
    "..%2f..%2fother%2fmanifests%2flatest",
    "%2e%2e",
    "..",
    "good/../../other",
    "latest?digest=x",
    "latest#x",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_that_are_paths_are_dropped_counted_and_never_reach_another_repository() {
    let (source, mirror) = (TestRegistry::plain(), TestRegistry::plain());
    let good = Built::Image(testdata::image(&[(141, 4096)], ("linux", "amd64"), false));
    let clean = Built::Image(testdata::image(&[(142, 4096)], ("linux", "amd64"), false));
    let other = Built::Image(testdata::image(&[(143, 4096)], ("linux", "amd64"), false));
    seed(&source, "app", "good", &good).await;
    seed(&source, "base", "v1", &clean).await;
    seed(&mirror, "other", "latest", &other).await;

    let mut listed = vec!["good"];
    listed.extend(HOSTILE_TAGS);
    let hostile = FaultProxy::start(&source.host, move |request| {
        lying_tag_list(request, "app", &listed).unwrap_or(Action::Forward)
    });
    let watched = FaultProxy::start(&mirror.host, |_| Action::Forward);
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{}\" }}\n  mirror: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: upstream\n  targets: mirror\n\
         mappings:\n  - from: app\n  - from: base\n",
        hostile.host, watched.host
    ));

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(1), "invalid tags make the run exit 1\n{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["totals"]["invalid_tags"], HOSTILE_TAGS.len(), "{report}");
    assert_eq!(report["mappings"][0]["invalid_tags"], HOSTILE_TAGS.len(), "{report}");
    assert_eq!(report["mappings"][1]["invalid_tags"], 0, "{report}");
    assert_eq!(report["totals"]["synced"], 2, "the good tag and the other mapping: {report}");
    assert_eq!(report["totals"]["failed"], 0, "{report}");

    let digest_at = |path: &str| skopeo_digest(&mirror.skopeo_reference(path), &[]);
    assert_eq!(digest_at("app:good"), good.digest().to_string());
    assert_eq!(digest_at("base:v1"), clean.digest().to_string());
    assert_eq!(digest_at("other:latest"), other.digest().to_string(), "another repository is untouched");

    let outside: Vec<String> = watched
        .seen()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .filter(|line| {
            let path = line.split(' ').nth(1).unwrap_or_default();
            !(path.starts_with("/v2/app/") || path.starts_with("/v2/base/"))
        })
        .collect();
    assert!(outside.is_empty(), "requests at the mirror outside the mapped repositories: {outside:?}");
    let hostile_requests: Vec<String> = hostile.seen().iter().map(|r| r.target.clone()).collect();
    assert!(
        hostile_requests.iter().all(|t| t.starts_with("/v2/app/") || t.starts_with("/v2/base/")),
        "requests at the source outside the mapped repositories: {hostile_requests:?}"
    );
    assert!(
        !hostile_requests.iter().any(|t| t.contains("..") || t.contains("%2e") || t.contains("%2f")),
        "no hostile name reached a request: {hostile_requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_nested_past_the_cap_fails_alone_and_nothing_of_it_reaches_the_mirror() {
    let (source, mirror) = (TestRegistry::plain(), TestRegistry::plain());
    let deep = testdata::nested(151, 12, 2);
    testdata::push_nested(&source.anonymous_client(), "deep", "v1", &deep).await.expect("seed a nested index");
    let plain = Built::Image(testdata::image(&[(152, 4096)], ("linux", "amd64"), false));
    seed(&source, "plain", "v1", &plain).await;
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{}\" }}\n  mirror: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: upstream\n  targets: mirror\n\
         mappings:\n  - from: deep\n  - from: plain\n",
        source.host, mirror.host
    ));
    source.reset_log();

    let output = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    let deep_result = &report["mappings"][0]["images"][0];
    assert_eq!(deep_result["status"], "failed", "{report}");
    assert!(deep_result["error"].as_str().unwrap_or_default().contains("nested more than 8 levels deep"), "{report}");
    assert_eq!(report["totals"]["synced"], 1, "{report}");
    assert_eq!(skopeo_digest(&mirror.skopeo_reference("plain:v1"), &[]), plain.digest().to_string());

    let writes: Vec<(String, String)> = mirror
        .requests()
        .into_iter()
        .filter(|(method, path)| method != "GET" && method != "HEAD" && path.contains("/deep/"))
        .collect();
    assert!(writes.is_empty(), "nothing of the refused image was written: {writes:?}");
    // The tag HEAD, then one GET per level down to the first index past the cap.
    let reads = source.count("GET", "/deep/manifests/");
    assert_eq!(reads, 9, "{:?}", source.requests());
}
