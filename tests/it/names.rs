//! Hostile registries, issue 14 classes 1 and 4 (names and graphs): tags that are really paths,
//! listings whose pages never end or loop, and indexes nested past the depth cap.

use std::time::{Duration, Instant};

use ocync::registry::{Error, HttpRegistry, Registry, RegistrySettings};

use crate::support::hostile_registry::{HostileRegistry, Pages};

fn client(host: &str) -> HttpRegistry {
    let mut settings = RegistrySettings::new(host);
    settings.plain_http = true;
    HttpRegistry::new(settings).expect("client for a loopback server")
}

/// Lists `app`'s tags at a hostile server; the error, the requests it took, and how long.
async fn list_hostile(pages: Pages) -> (Error, usize, Duration) {
    let server = HostileRegistry::standalone("app", pages);
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
