//! Lambda continuations end to end (moto as S3 and SQS, real registries, a slowed source): a
//! mapping longer than one invocation finishes through messages the worker sends to its own
//! queue; no progress, the cap, or a continuation that cannot be sent leave the record to SQS's
//! redelivery; an image interrupted at the deadline reports the blobs it already sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ocync::lambda::{CONTINUATION_ATTRIBUTE, Handler, SyncMessage};
use ocync::registry::Registry as _;
use ocync::testing::testdata::{self, Built};
use serde_json::{Value, json};

use crate::copy::seed;
use crate::lambda::{World, failures, message, soon, sqs_event};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};

/// Seven layers of 150 kB and a config: eight blob transfers.
fn big_image() -> Built {
    let layers: Vec<(u64, u64)> = (0..7).map(|n| (500 + n, 150_000)).collect();
    Built::Image(testdata::image(&layers, ("linux", "amd64"), false))
}

/// One mapping `demo/big -> mirror/big`, one transfer at a time, the source reached at `through`.
fn big_config(through: &str, target: &TestRegistry) -> String {
    format!(
        "global: {{ max_concurrent_transfers: 1 }}\nregistries:\n  up: {{ url: \"http://{through}\" }}\n  down: {{ url: \"http://{}\" }}\ndefaults: {{ source: up, targets: down }}\nmappings:\n  - {{ from: demo/big, to: mirror/big }}\n",
        target.host
    )
}

/// Every blob GET of `demo/big` is answered `delay` late.
fn slow_source(world: &World, delay: Duration) -> FaultProxy {
    FaultProxy::start(&world.source.host, move |request| {
        if request.method == "GET" && request.target.contains("/demo/big/blobs/") {
            Action::Delay(delay)
        } else {
            Action::Forward
        }
    })
}

/// A world with the big image at the source, behind a proxy built by `proxy`, and its config in S3.
async fn big_world(proxy: impl FnOnce(&World) -> FaultProxy) -> (World, FaultProxy, Built, String) {
    let world = World::new().await;
    let built = big_image();
    seed(&world.source, "demo/big", "v1", &built).await;
    let proxy = proxy(&world);
    let text = big_config(&proxy.host, &world.target);
    world.put_config(&text).await;
    (world, proxy, built, text)
}

/// A handler whose invocations of 8 s start no transfer after 5.5 s and abandon those in flight
/// at 7.2 s: with blobs 2 s late and one at a time, about three blobs land per invocation.
fn short_handler(world: &World) -> Handler {
    let mut handler = world.handler(true);
    handler.settings.deadline_margin = Duration::from_millis(2500);
    handler.settings.finish_margin = Duration::from_millis(800);
    handler.settings.continuation_min_bytes = 100_000;
    handler
}

const INVOCATION: Duration = Duration::from_secs(8);

/// A message on the queue: its id, body and continuation attribute.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: String,
    count: Option<String>,
}

/// Every message on the queue now (waiting a second for stragglers).
async fn drain(world: &World) -> Vec<Received> {
    let mut received = Vec::new();
    loop {
        let answer = world
            .moto
            .sqs_client()
            .receive_message()
            .queue_url(&world.queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if answer.messages().is_empty() {
            return received;
        }
        received.extend(answer.messages().iter().map(|m| {
            Received {
                id: m.message_id().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                count: m
                    .message_attributes()
                    .and_then(|a| a.get(CONTINUATION_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .map(str::to_string),
            }
        }));
    }
}

/// The SQS event Lambda builds for `records`, with their continuation attribute if any.
fn event_of(records: &[Received]) -> Value {
    let mut event = sqs_event(&records.iter().map(|r| (r.id.clone(), r.body.clone())).collect::<Vec<_>>());
    for (record, received) in event["Records"].as_array_mut().expect("records").iter_mut().zip(records) {
        if let Some(count) = &received.count {
            record["messageAttributes"] = json!({ CONTINUATION_ATTRIBUTE: {
                "stringValue": count, "stringListValues": [], "binaryListValues": [], "dataType": "Number"
            }});
        }
    }
    event
}

/// Blob uploads the registry completed (closing `PUT` answered 201), per digest.
fn completed_uploads(registry: &TestRegistry) -> BTreeMap<String, usize> {
    let mut uploads = BTreeMap::new();
    for line in registry.log_text().lines() {
        let Some(start) = line.find("\"PUT /v2/") else { continue };
        let rest = &line[start + 1..];
        let Some((request, after)) = rest.split_once('"') else { continue };
        if !request.contains("/blobs/uploads/") || after.split_whitespace().next() != Some("201") {
            continue;
        }
        let Some((_, query)) = request.split_once("digest=") else { continue };
        let digest = query.split(['&', ' ']).next().unwrap_or_default().replace("%3A", ":").replace("%3a", ":");
        *uploads.entry(digest).or_insert(0) += 1;
    }
    uploads
}

async fn mirrored(world: &World) -> Option<String> {
    let client = world.target.anonymous_client();
    client.head_manifest("mirror/big", "v1").await.expect("HEAD at the target").map(|h| h.digest.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_longer_than_one_invocation_finishes_through_continuations() {
    let (world, _proxy, built, text) = big_world(|world| slow_source(world, Duration::from_secs(2))).await;
    let handler = short_handler(&world);
    // The schedule's message as a build before continuations writes it: no attribute.
    let original = message(&text, 0).to_string();
    let mut records = vec![Received { id: "first".into(), body: original.clone(), count: None }];
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations <= 8, "the mapping did not finish in 8 invocations");
        let response = handler.handle(event_of(&records), Instant::now() + INVOCATION).await.expect("batch");
        assert_eq!(failures(&response), Vec::<String>::new(), "invocation {invocations}: no record left to redelivery");
        let queued = drain(&world).await;
        if mirrored(&world).await.is_some() {
            assert!(queued.is_empty(), "the finishing invocation continues nothing: {queued:?}");
            break;
        }
        assert_eq!(queued.len(), 1, "invocation {invocations}: exactly one continuation: {queued:?}");
        assert_eq!(queued[0].count.as_deref(), Some(invocations.to_string().as_str()), "the count goes up by one");
        assert_eq!(
            SyncMessage::parse(&queued[0].body).expect("today's body"),
            SyncMessage::parse(&original).unwrap(),
            "the continuation's body is the original message"
        );
        records = queued;
    }
    assert!(invocations >= 3, "the mapping needed {invocations} invocations; the test wants at least 3");
    assert_eq!(mirrored(&world).await.as_deref(), Some(built.digest().as_str()));
    let uploads = completed_uploads(&world.target);
    let expected: BTreeMap<String, usize> =
        built.blobs().iter().map(|b| (b.descriptor.digest.to_string(), 1)).collect();
    assert_eq!(uploads, expected, "every blob uploaded exactly once across {invocations} invocations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_source_makes_no_progress_and_the_record_is_redelivered_not_continued() {
    let (world, _proxy, _, text) = big_world(|world| {
        FaultProxy::start(&world.source.host, |request| {
            if request.method == "GET" && request.target.contains("/demo/big/blobs/") {
                Action::Stall
            } else {
                Action::Forward
            }
        })
    })
    .await;
    let mut handler = short_handler(&world);
    handler.settings.deadline_margin = Duration::from_secs(1);
    handler.settings.finish_margin = Duration::from_millis(500);
    let records = [Received { id: "stalled".into(), body: message(&text, 0).to_string(), count: None }];

    let response = handler.handle(event_of(&records), Instant::now() + Duration::from_secs(5)).await.expect("batch");
    assert_eq!(failures(&response), ["stalled"]);
    assert!(drain(&world).await.is_empty(), "no continuation without progress");
    assert_eq!(mirrored(&world).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_ends_a_chain_and_an_unsendable_continuation_leaves_the_record_to_redelivery() {
    let (world, _proxy, _, text) = big_world(|world| slow_source(world, Duration::from_secs(2))).await;
    let mut handler = short_handler(&world);
    handler.settings.max_continuations = 2;
    let body = message(&text, 0).to_string();

    let at_cap = [Received { id: "at-cap".into(), body: body.clone(), count: Some("2".into()) }];
    let response = handler.handle(event_of(&at_cap), Instant::now() + INVOCATION).await.expect("batch");
    assert_eq!(failures(&response), ["at-cap"], "a chain at the cap is not continued");
    assert!(drain(&world).await.is_empty(), "no message sent at the cap");
    assert!(!completed_uploads(&world.target).is_empty(), "the invocation did make progress");

    // Below the cap, but the queue cannot take the continuation: the record is not lost.
    let location =
        ocync::config::ConfigLocation::S3 { bucket: crate::lambda::BUCKET.into(), key: crate::lambda::KEY.into() };
    let nowhere = Some(format!("{}/123456789012/no-such-queue", world.moto.endpoint));
    let mut unsendable = Handler::new(world.moto.s3_client(), world.moto.sqs_client(), location, nowhere);
    unsendable.settings = handler.settings.clone();
    let first = [Received { id: "first".into(), body, count: None }];
    let response = unsendable.handle(event_of(&first), Instant::now() + INVOCATION).await.expect("batch");
    assert_eq!(failures(&response), ["first"], "a continuation that was not sent leaves the record to SQS");
    assert!(drain(&world).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_a_field_this_build_does_not_know_is_synced() {
    let world = World::new().await;
    let built = big_image();
    seed(&world.source, "demo/big", "v1", &built).await;
    let text = big_config(&world.source.host, &world.target);
    world.put_config(&text).await;
    let mut body = message(&text, 0);
    body["priority"] = json!("high");
    body["config"]["region"] = json!("us-east-1");
    let records = [Received { id: "newer".into(), body: body.to_string(), count: Some("0".into()) }];

    let response = world.handler(true).handle(event_of(&records), soon()).await.expect("batch");
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(mirrored(&world).await.as_deref(), Some(built.digest().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_interrupted_at_the_deadline_reports_the_blobs_it_already_sent() {
    let world = World::new().await;
    // A config and two layers; the second layer never arrives.
    let built = Built::Image(testdata::image(&[(600, 120_000), (601, 80_000)], ("linux", "amd64"), false));
    seed(&world.source, "demo/big", "v1", &built).await;
    let stalled = built.blobs()[2].descriptor.digest.to_string();
    let proxy = FaultProxy::start(&world.source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&format!("/blobs/{stalled}")) {
            Action::Stall
        } else {
            Action::Forward
        }
    });
    let text =
        big_config(&proxy.host, &world.target).replace("max_concurrent_transfers: 1", "max_concurrent_transfers: 4");
    world.put_config(&text).await;
    let mut handler = world.handler(true);
    handler.settings.deadline_margin = Duration::from_secs(1);
    handler.settings.finish_margin = Duration::from_millis(500);

    let report = handler.handle(message(&text, 0), Instant::now() + Duration::from_secs(5)).await.expect("report");
    let entry = &report["mappings"][0]["images"][0];
    assert_eq!(entry["status"], "failed", "{report}");
    assert_eq!(entry["error"].as_str(), Some(ocync::sync::INTERRUPTED), "{report}");
    let landed: u64 = built.blobs()[..2].iter().map(|b| b.descriptor.size).sum();
    assert_eq!(entry["stats"]["blobs_copied"], 2, "the config and the first layer: {report}");
    assert_eq!(entry["stats"]["bytes_landed"], landed, "{report}");
    assert_eq!(report["totals"]["bytes_landed"], landed, "the totals count them too");
    assert_eq!(completed_uploads(&world.target).len(), 2);
}
