//! The Lambda handler end to end: moto as S3 and SQS, real registries, the event files in
//! `events/`, and the function under `cargo lambda watch`.

use std::time::{Duration, Instant};

use ocync::config::ConfigLocation;
use ocync::lambda::{Handler, SyncMessage};
use ocync::registry::Registry as _;
use ocync::testing::testdata::{self, Built};
use serde_json::{Value, json};

use crate::copy::seed;
use crate::support::TestRegistry;
use crate::support::moto::MotoServer;
use crate::support::proxy::{Action, FaultProxy};

pub(crate) const BUCKET: &str = "ocync-config";
pub(crate) const KEY: &str = "ocync.yaml";
const REPOSITORIES: [&str; 3] = ["demo/app", "demo/api", "demo/web"];

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 200_000), (seed + 1, 500)], ("linux", "amd64"), false))
}

/// Three mappings `demo/X -> mirror/X` (mapping 0 as in the event files), source reached at `through`.
fn config_text(through: &str, target: &TestRegistry) -> String {
    let mut text = format!(
        "registries:\n  up: {{ url: \"http://{through}\" }}\n  down: {{ url: \"http://{}\" }}\ndefaults: {{ source: up, targets: down }}\nmappings:\n",
        target.host
    );
    for repository in REPOSITORIES {
        text += &format!("  - from: {repository}\n    to: {}\n", repository.replace("demo/", "mirror/"));
    }
    text
}

pub(crate) struct World {
    pub(crate) moto: MotoServer,
    pub(crate) source: TestRegistry,
    pub(crate) target: TestRegistry,
    images: Vec<Built>,
    pub(crate) queue_url: String,
}

impl World {
    pub(crate) async fn new() -> World {
        let moto = MotoServer::start();
        let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
        let mut images = Vec::new();
        for (i, repository) in REPOSITORIES.iter().enumerate() {
            let built = image(100 + 10 * i as u64);
            seed(&source, repository, "v1", &built).await;
            images.push(built);
        }
        moto.s3_client().create_bucket().bucket(BUCKET).send().await.expect("create bucket");
        let queue = moto.sqs_client().create_queue().queue_name("ocync-work").send().await.expect("create queue");
        let queue_url = queue.queue_url().unwrap().to_string();
        World { moto, source, target, images, queue_url }
    }

    pub(crate) async fn put_config(&self, text: &str) {
        self.moto
            .s3_client()
            .put_object()
            .bucket(BUCKET)
            .key(KEY)
            .body(text.as_bytes().to_vec().into())
            .send()
            .await
            .expect("put config");
    }

    pub(crate) fn handler(&self, queue: bool) -> Handler {
        let location = ConfigLocation::S3 { bucket: BUCKET.into(), key: KEY.into() };
        let queue_url = queue.then(|| self.queue_url.clone());
        Handler::new(self.moto.s3_client(), self.moto.sqs_client(), location, queue_url)
    }

    async fn receive_all(&self) -> Vec<(String, String)> {
        let mut messages = Vec::new();
        for _ in 0..5 {
            let answer = self
                .moto
                .sqs_client()
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            messages.extend(
                answer.messages().iter().map(|m| (m.message_id().unwrap().to_string(), m.body().unwrap().to_string())),
            );
        }
        messages
    }

    async fn target_digest(&self, repository: &str) -> Option<String> {
        let client = self.target.anonymous_client();
        client.head_manifest(&repository.replace("demo/", "mirror/"), "v1").await.unwrap().map(|h| h.digest.to_string())
    }
}

pub(crate) fn sqs_event(messages: &[(String, String)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}))
        .collect();
    json!({ "Records": records })
}

/// The work message for mapping `index` of the config `text`.
pub(crate) fn message(text: &str, index: usize) -> Value {
    let config = ocync::config::Config::parse(text, "t", |_| None).unwrap_or_else(|e| panic!("{e}"));
    let key = config.mappings[index].key();
    json!({"version": 1, "run_id": "r", "config": {"bucket": BUCKET, "key": KEY}, "mapping": index, "mapping_key": key})
}

/// One record (`record-N`) per mapping of the config `text`.
fn records(text: &str) -> Vec<(String, String)> {
    let count = ocync::config::Config::parse(text, "t", |_| None).unwrap_or_else(|e| panic!("{e}")).mappings.len();
    (0..count).map(|index| (format!("record-{index}"), message(text, index).to_string())).collect()
}

pub(crate) fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn soon() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fans_out_one_message_per_mapping_and_the_workers_sync_them() {
    let world = World::new().await;
    world.put_config(&config_text(&world.source.host, &world.target)).await;
    let handler = world.handler(true);

    let answer = handler.handle(event("schedule.json"), soon()).await.expect("schedule");
    assert_eq!(answer["messages"], 3);
    let messages = world.receive_all().await;
    assert_eq!(messages.len(), 3, "exactly one message per mapping");
    let mut mappings: Vec<usize> = messages.iter().map(|(_, body)| SyncMessage::parse(body).unwrap().mapping).collect();
    mappings.sort();
    assert_eq!(mappings, [0, 1, 2]);
    assert!(
        messages.iter().all(|(_, body)| !body.contains("password") && body.contains("\"bucket\":\"ocync-config\""))
    );

    let response = handler.handle(sqs_event(&messages), soon()).await.expect("sqs batch");
    assert_eq!(failures(&response), Vec::<String>::new());
    for (repository, built) in REPOSITORIES.iter().zip(&world.images) {
        assert_eq!(world.target_digest(repository).await.as_deref(), Some(built.digest().as_str()), "{repository}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_v2_input_without_a_queue_syncs_inline() {
    let world = World::new().await;
    world.put_config(&config_text(&world.source.host, &world.target)).await;
    let report = world.handler(false).handle(event("schedule-v2.json"), soon()).await.expect("inline schedule");
    assert_eq!(report["status"], "success");
    assert_eq!(report["totals"]["synced"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_fails_alone() {
    let world = World::new().await;
    world.put_config(&config_text(&world.source.host, &world.target)).await;

    let response = world.handler(true).handle(event("sqs-batch-malformed.json"), soon()).await.expect("batch");
    assert_eq!(failures(&response), ["d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"]);
    assert_eq!(world.target_digest("demo/app").await.as_deref(), Some(world.images[0].digest().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_files_drive_direct_and_single_record_invocations() {
    let world = World::new().await;
    world.put_config(&config_text(&world.source.host, &world.target)).await;
    let handler = world.handler(true);

    let one = handler.handle(event("sqs-one-mapping.json"), soon()).await.expect("one record");
    assert_eq!(failures(&one), Vec::<String>::new());
    let direct = handler.handle(event("direct-mapping.json"), soon()).await.expect("direct mapping");
    assert_eq!(direct["totals"]["skipped"], 1, "already synced by the SQS record");
    let all = handler.handle(event("direct-sync-all.json"), soon()).await.expect("sync all");
    assert_eq!((all["totals"]["synced"].as_u64(), all["totals"]["skipped"].as_u64()), (Some(2), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_deadline_leaves_records_for_redelivery_and_the_rerun_sends_no_blob_twice() {
    let world = World::new().await;
    // Mapping 0's blobs come slowly; the deadline passes while they are in flight.
    let proxy = FaultProxy::start(&world.source.host, |request| {
        if request.method == "GET" && request.target.contains("/demo/app/blobs/") {
            Action::Delay(Duration::from_secs(4))
        } else {
            Action::Forward
        }
    });
    world.put_config(&config_text(&proxy.host, &world.target)).await;
    let mut handler = world.handler(true);
    handler.settings.records_at_once = 1;
    handler.settings.deadline_margin = Duration::from_millis(2000);
    handler.settings.finish_margin = Duration::from_millis(600);
    let messages = records(&config_text(&proxy.host, &world.target));

    // Transfers must stop starting 4 s from now, while mapping 0's blobs (4 s late, so done
    // after 4 s) are in flight; they finish before in-flight work is abandoned at 5.4 s (the
    // margins are at their caps, a third and a tenth of 6 s), and the others never start.
    let response =
        handler.handle(sqs_event(&messages), Instant::now() + Duration::from_millis(6000)).await.expect("batch");
    assert_eq!(failures(&response), ["record-1", "record-2"]);
    assert_eq!(world.target_digest("demo/app").await.as_deref(), Some(world.images[0].digest().as_str()));
    assert_eq!(world.target_digest("demo/api").await, None);

    // SQS redelivers; this time there is time for everything, and mapping 0 costs HEADs only.
    let response = handler.handle(sqs_event(&messages), soon()).await.expect("rerun");
    assert_eq!(failures(&response), Vec::<String>::new());
    let uploads = world.target.count("PUT", "/blobs/uploads/");
    assert_eq!(
        uploads, 9,
        "three images of three blobs each (config, two layers): every blob uploaded once across both runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_stalled_past_the_deadline_fails_only_its_record_and_the_handler_answers_in_time() {
    let world = World::new().await;
    // Mapping 0's blobs never arrive until `stalling` is cleared.
    let stalling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = stalling.clone();
    let proxy = FaultProxy::start(&world.source.host, move |request| {
        if flag.load(std::sync::atomic::Ordering::SeqCst)
            && request.method == "GET"
            && request.target.contains("/demo/app/blobs/")
        {
            Action::Stall
        } else {
            Action::Forward
        }
    });
    let text = config_text(&proxy.host, &world.target);
    world.put_config(&text).await;
    let mut handler = world.handler(true);
    handler.settings.deadline_margin = Duration::from_secs(1);
    handler.settings.finish_margin = Duration::from_millis(500);
    let messages: Vec<(String, String)> = records(&text).into_iter().take(2).collect();

    let deadline = Instant::now() + Duration::from_secs(5);
    let response = handler.handle(sqs_event(&messages), deadline).await.expect("batch");
    assert!(Instant::now() < deadline, "the handler answered before the invocation deadline");
    assert_eq!(failures(&response), ["record-0"], "only the stalled record is redelivered");
    assert_eq!(world.target_digest("demo/app").await, None, "nothing incomplete was tagged");
    assert_eq!(world.target_digest("demo/api").await.as_deref(), Some(world.images[1].digest().as_str()));

    // SQS redelivers the stalled record; the source answers now.
    stalling.store(false, std::sync::atomic::Ordering::SeqCst);
    let rerun = vec![messages[0].clone()];
    let response = handler.handle(sqs_event(&rerun), soon()).await.expect("rerun");
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(world.target_digest("demo/app").await.as_deref(), Some(world.images[0].digest().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_container_syncs_a_new_mapping_from_a_registry_no_mapping_used_before() {
    let world = World::new().await;
    let third = TestRegistry::plain();
    let built = image(300);
    seed(&third, "demo/extra", "v1", &built).await;
    // `third` is configured from the start, so the registries section never changes.
    let before = config_text(&world.source.host, &world.target).replacen(
        "registries:\n",
        &format!("registries:\n  third: {{ url: \"http://{}\" }}\n", third.host),
        1,
    );
    world.put_config(&before).await;
    let handler = world.handler(true);
    let first = handler.handle(message(&before, 0), soon()).await.expect("mapping 0");
    assert_eq!(first["status"], "success", "{first}");

    let after = before + "  - { from: demo/extra, source: third, to: mirror/extra }\n";
    world.put_config(&after).await;
    let report = handler.handle(message(&after, 3), soon()).await.expect("the new mapping");
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(world.target_digest("demo/extra").await.as_deref(), Some(built.digest().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_of_a_batch_read_a_layer_they_share_from_the_source_once() {
    let world = World::new().await;
    let base = (7, 300_000);
    let images: Vec<Built> =
        [70, 71].map(|own| Built::Image(testdata::image(&[base, (own, 500)], ("linux", "amd64"), false))).into();
    for (repository, built) in ["base/one", "base/two"].iter().zip(&images) {
        seed(&world.source, repository, "v1", built).await;
    }
    let text = format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\ndefaults: {{ source: up, targets: down }}\nmappings:\n  - {{ from: base/one, to: mirror/one }}\n  - {{ from: base/two, to: mirror/two }}\n",
        world.source.host, world.target.host
    );
    world.put_config(&text).await;
    world.source.reset_log();

    let response = world.handler(true).handle(sqs_event(&records(&text)), soon()).await.expect("batch");
    assert_eq!(failures(&response), Vec::<String>::new());
    let target = world.target.anonymous_client();
    for (repository, built) in ["mirror/one", "mirror/two"].iter().zip(&images) {
        let landed = target.head_manifest(repository, "v1").await.unwrap().map(|h| h.digest.to_string());
        assert_eq!(landed.as_deref(), Some(built.digest().as_str()), "{repository}");
    }
    let shared = testdata::Blob::random(base.0, base.1).descriptor.digest;
    assert_eq!(world.source.count("GET", &format!("/blobs/{shared}")), 1, "the shared layer is read once");
    let own = testdata::Blob::random(70, 500).descriptor.digest;
    assert_eq!(world.source.count("GET", &format!("/blobs/{own}")), 1, "each image's own layer is read too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_sends_nothing_and_says_why() {
    let world = World::new().await;
    world
        .put_config("registries:\n  up: { url: a.io }\nmappings:\n  - from: x\n    source: nowhere\n    targets: up\n")
        .await;

    let error = world.handler(true).handle(event("schedule.json"), soon()).await.unwrap_err().to_string();
    assert!(
        error.contains("s3://ocync-config/ocync.yaml")
            && error.contains("mappings[0].source (line 5): unknown registry `nowhere`"),
        "{error}"
    );
    assert!(world.receive_all().await.is_empty(), "no message for an invalid config");
}

#[test]
fn every_event_file_is_recognised_and_round_trips() {
    let dir = format!("{}/events", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "direct-mapping.json",
            "direct-sync-all.json",
            "schedule-v2.json",
            "schedule.json",
            "sqs-batch-malformed.json",
            "sqs-continuation.json",
            "sqs-one-mapping.json"
        ]
    );
    for name in &names {
        let value = event(name);
        let invocation = ocync::lambda::classify(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let ocync::lambda::Invocation::Sqs(sqs) = invocation {
            let again: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(serde_json::to_value(&sqs).unwrap()).unwrap();
            assert_eq!(again, sqs, "{name}");
            let counts: Vec<u32> =
                sqs.records.iter().map(|r| ocync::lambda::continuation_count(&r.message_attributes).unwrap()).collect();
            let expected = if name == "sqs-continuation.json" { vec![1] } else { vec![0; counts.len()] };
            assert_eq!(counts, expected, "{name}: the continuation count of each record");
        }
    }
}

/// `cargo lambda watch` serving the real `bootstrap` binary, stopped (with the function it
/// runs) by killing the process group it leads. What the watcher and the function print
/// (the function's log stream) goes to `output`.
struct Watch {
    child: std::process::Child,
    port: u16,
    output: tempfile::NamedTempFile,
}

impl Watch {
    fn start(env: &[(String, String)]) -> Watch {
        let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cargo-lambda");
        assert!(binary.is_file(), "cargo-lambda is not installed: .venv/bin/pip install cargo-lambda (or run .ci/run)");
        let port = crate::support::tools::free_port();
        let env_vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let output = tempfile::NamedTempFile::new().expect("watch output file");
        // A session of its own: when cargo-lambda stops it signals its whole process group,
        // which must not include the test runner.
        let child = std::process::Command::new("setsid")
            .arg(binary)
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .args(["--features", "lambda", "--bin", "bootstrap", "--env-var", &env_vars.join(",")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(output.reopen().expect("watch output file"))
            .stderr(output.reopen().expect("watch output file"))
            .spawn()
            .expect("start cargo lambda watch");
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "cargo lambda watch did not listen on {port}");
            std::thread::sleep(Duration::from_millis(200));
        }
        Watch { child, port, output }
    }

    /// The EMF documents the function has printed so far, once there are at least `count`
    /// (the log stream may trail the invoke's answer by a moment).
    fn metrics(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let printed = std::fs::read_to_string(self.output.path()).unwrap_or_default();
            let documents = crate::emf::documents(&printed);
            if documents.len() >= count || Instant::now() > deadline {
                return documents;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn invoke(&self, event_file: &str) -> std::process::Output {
        self.invoke_path(&format!("{}/events/{event_file}", env!("CARGO_MANIFEST_DIR")))
    }

    fn invoke_path(&self, event_path: &str) -> std::process::Output {
        let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cargo-lambda");
        // The first invoke waits for the watcher to build the function (minutes on a cold
        // machine); a build that fails leaves the invoke waiting for ever, so it is bounded.
        std::process::Command::new("timeout")
            .arg("900")
            .arg(binary)
            .args([
                "lambda",
                "invoke",
                "bootstrap",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &self.port.to_string(),
            ])
            .args(["--data-file", event_path])
            .output()
            .expect("run cargo lambda invoke")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The watcher and the function it started share the process group it leads.
        let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_lambda_watch_and_invoke_run_the_function_locally() {
    let world = World::new().await;
    world.put_config(&config_text(&world.source.host, &world.target)).await;
    let mut env: Vec<(String, String)> = world.moto.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    env.push(("AWS_S3_FORCE_PATH_STYLE".into(), "true".into()));
    env.push(("OCYNC_CONFIG".into(), format!("s3://{BUCKET}/{KEY}")));
    env.push(("OCYNC_METRICS_NAMESPACE".into(), "ocync-test".into()));
    let watch = Watch::start(&env);

    let output = watch.invoke("direct-sync-all.json");
    assert!(output.status.success(), "invoke failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("the function answers its report");
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(report["totals"]["synced"], 3);
    for (repository, built) in REPOSITORIES.iter().zip(&world.images) {
        assert_eq!(world.target_digest(repository).await.as_deref(), Some(built.digest().as_str()));
    }
    // Its metrics: the totals and one mirror lag per mapping, as valid EMF, equal to the report.
    let documents = watch.metrics(4);
    crate::emf::assert_valid(&documents);
    assert_eq!(documents.len(), 4, "{documents:#?}");
    assert_invocation_metrics(&documents[0], &report, None);
    let mut lagged: Vec<&str> = documents[1..].iter().map(|d| d["Mapping"].as_str().unwrap()).collect();
    lagged.sort();
    assert_eq!(lagged, ["demo/api -> mirror/api", "demo/app -> mirror/app", "demo/web -> mirror/web"]);
    for lag in &documents[1..] {
        assert_eq!(lag["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function", "Mapping"]]));
        let seconds = lag["MirrorLag"].as_f64().unwrap();
        assert!((0.0..300.0).contains(&seconds), "the lag is the run's own duration: {seconds}");
    }

    // A schedule without a queue syncs inline and sends its fan-out size with the totals.
    let output = watch.invoke("schedule-v2.json");
    assert!(output.status.success(), "invoke failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("the function answers its report");
    assert_eq!(report["totals"]["skipped"], 3, "{report}");
    let documents = watch.metrics(8);
    crate::emf::assert_valid(&documents);
    assert_eq!(documents.len(), 8, "{documents:#?}");
    assert_invocation_metrics(&documents[4], &report, Some(3));

    // A worker's record from a run scheduled an hour ago: its lag counts from the schedule.
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let millis = hour_ago.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let mut record = event("sqs-one-mapping.json");
    let text = config_text(&world.source.host, &world.target);
    let mut body = message(&text, 0);
    body["run_id"] = json!(format!("{millis:x}-0a1b2c3d"));
    record["Records"][0]["body"] = json!(body.to_string());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), record.to_string()).unwrap();
    let output = watch.invoke_path(file.path().to_str().unwrap());
    assert!(output.status.success(), "invoke failed: {}", String::from_utf8_lossy(&output.stderr));
    let response: Value = serde_json::from_slice(&output.stdout).expect("the batch response");
    assert_eq!(failures(&response), Vec::<String>::new());
    let documents = watch.metrics(10);
    crate::emf::assert_valid(&documents);
    assert_eq!(documents.len(), 10, "{documents:#?}");
    let one = json!({"totals": {"synced": 0, "skipped": 1, "failed": 0, "bytes": 0, "mappings": 1}});
    assert_invocation_metrics(&documents[8], &one, None);
    assert_eq!(documents[9]["Mapping"], "demo/app -> mirror/app");
    let lag = documents[9]["MirrorLag"].as_f64().unwrap();
    assert!((3600.0..3900.0).contains(&lag), "an hour and the invocation: {lag}");
}

/// The totals document of an invocation holds the figures of its `report`.
fn assert_invocation_metrics(document: &Value, report: &Value, scheduled: Option<u64>) {
    let directive = &document["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "ocync-test", "OCYNC_METRICS_NAMESPACE is honoured");
    assert_eq!(directive["Dimensions"], json!([["Function"]]));
    assert_eq!(document["Function"], "bootstrap", "the function's name, as cargo lambda sets it");
    let totals = &report["totals"];
    let expected = [
        ("ImagesSynced", &totals["synced"]),
        ("ImagesSkipped", &totals["skipped"]),
        ("ImagesFailed", &totals["failed"]),
        ("BytesCopied", &totals["bytes"]),
        ("MappingsInSync", &totals["mappings"]),
    ];
    for (name, value) in expected {
        assert_eq!(document[name].as_f64(), value.as_f64(), "{name} in {document}");
    }
    assert_eq!(document["Continuations"], 0.0);
    assert_eq!(
        document["MappingsScheduled"].as_u64().or(document["MappingsScheduled"].as_f64().map(|f| f as u64)),
        scheduled
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let stamp = document["_aws"]["Timestamp"].as_u64().unwrap();
    assert!(now - stamp < 600_000, "a timestamp of this invocation: {stamp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_config_cache_gets_the_object_again_only_when_its_etag_changes() {
    let world = World::new().await;
    let text = config_text(&world.source.host, &world.target);
    world.put_config(&text).await;
    // Every S3 request the cache makes goes through a proxy that counts them.
    let moto_host = world.moto.endpoint.trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(&moto_host, |_| Action::Forward);
    let s3 = aws_sdk_s3::Client::from_conf(
        world.moto.s3_client().config().to_builder().endpoint_url(format!("http://{}", proxy.host)).build(),
    );
    let gets = || {
        proxy.seen().iter().filter(|r| r.method == "GET" && r.target.starts_with(&format!("/{BUCKET}/{KEY}"))).count()
    };
    let cache = ocync::config::S3ConfigCache::default();

    let first = cache.load(&s3, BUCKET, KEY).await.expect("first load");
    assert_eq!(first.config.mappings.len(), 3);
    assert_eq!(gets(), 1);
    let second = cache.load(&s3, BUCKET, KEY).await.expect("second load");
    assert_eq!(gets(), 1, "an unchanged ETag is answered from the cache (a HEAD only)");
    assert_eq!(second.etag, first.etag);
    assert!(std::sync::Arc::ptr_eq(&first.config, &second.config), "the cached config itself");
    assert!(proxy.seen().iter().any(|r| r.method == "HEAD"), "the ETag was checked");

    let changed = text + "  - from: demo/extra\n";
    world.put_config(&changed).await;
    let third = cache.load(&s3, BUCKET, KEY).await.expect("load after a change");
    assert_eq!(gets(), 2, "a changed object is read again");
    assert_ne!(third.etag, first.etag);
    assert_eq!(third.config.mappings.len(), 4, "the new config, not the cached one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_naming_another_config_fails_alone_and_nothing_is_synced_for_it() {
    let world = World::new().await;
    let own = config_text(&world.source.host, &world.target);
    world.put_config(&own).await;
    // Someone who can send to the queue writes a config of their own: mapping 0 lands in `pwned/app`.
    let foreign = own.replace("to: mirror/app", "to: pwned/app");
    let s3 = world.moto.s3_client();
    s3.create_bucket().bucket("elsewhere").send().await.expect("create bucket");
    for (bucket, key) in [("elsewhere", KEY), (BUCKET, "other.yaml")] {
        let body = foreign.as_bytes().to_vec().into();
        s3.put_object().bucket(bucket).key(key).body(body).send().await.expect("put foreign config");
    }
    let mut other_bucket = message(&foreign, 0);
    other_bucket["config"]["bucket"] = json!("elsewhere");
    let mut other_key = message(&foreign, 0);
    other_key["config"]["key"] = json!("other.yaml");
    world.source.reset_log();
    world.target.reset_log();

    let batch = [
        ("other-bucket".to_string(), other_bucket.to_string()),
        ("other-key".to_string(), other_key.to_string()),
        ("own".to_string(), message(&own, 1).to_string()),
    ];
    let response = world.handler(true).handle(sqs_event(&batch), soon()).await.expect("sqs batch");
    let mut failed = failures(&response);
    failed.sort();
    assert_eq!(failed, ["other-bucket", "other-key"], "the foreign records fail, the own one succeeds");
    assert_eq!(world.target_digest("demo/api").await.as_deref(), Some(world.images[1].digest().as_str()));
    let direct =
        world.handler(true).handle(other_bucket, soon()).await.expect_err("a direct invocation too").to_string();
    assert!(direct.contains("reads only s3://ocync-config/ocync.yaml (OCYNC_CONFIG)"), "{direct}");

    let touched = |requests: Vec<(String, String)>, fragment: &str| {
        requests.into_iter().filter(|(_, path)| path.contains(fragment)).collect::<Vec<_>>()
    };
    assert_eq!(touched(world.source.requests(), "/v2/demo/app/"), [], "nothing of mapping 0 was read");
    assert_eq!(touched(world.target.requests(), "/v2/pwned/"), [], "nothing reached the foreign config's target");
    assert_eq!(touched(world.target.requests(), "/v2/mirror/app/"), [], "nor mapping 0 of the own config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_in_s3_reading_the_functions_credentials_is_refused_and_sends_nothing() {
    let world = World::new().await;
    let text = config_text(&world.source.host, &world.target).replace(
        "down: {",
        "down: { auth_type: basic, credentials: { username: x, password: \"${AWS_SESSION_TOKEN}\" },",
    );
    world.put_config(&text).await;

    let error = world.handler(true).handle(event("schedule.json"), soon()).await.unwrap_err().to_string();
    assert!(
        error.contains("s3://ocync-config/ocync.yaml")
            && error.contains("AWS_SESSION_TOKEN is the platform's own credential"),
        "{error}"
    );
    assert!(world.receive_all().await.is_empty(), "no message for a refused config");
    assert_eq!(world.target_digest("demo/app").await, None, "nothing synced");
}

/// The schedule's wall time for `OCYNC_TEST_FANOUT_MAPPINGS` mappings (default 2,000), printed
/// for the README's figures; the assertion is that every message landed, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_of_thousands_of_mappings_lands_every_message() {
    let count: usize = std::env::var("OCYNC_TEST_FANOUT_MAPPINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let world = World::new().await;
    let mut text = config_text(&world.source.host, &world.target);
    text.truncate(text.find("mappings:\n").expect("mappings section"));
    text += "mappings:\n";
    for n in 0..count {
        text += &format!("  - {{ from: demo/m{n} }}\n");
    }
    world.put_config(&text).await;

    let started = Instant::now();
    let answer = world.handler(true).handle(event("schedule.json"), soon()).await.expect("schedule");
    let elapsed = started.elapsed();
    eprintln!("fan-out of {count} mappings against moto: {} ms", elapsed.as_millis());
    assert_eq!(answer["messages"], count);
    let attributes = world
        .moto
        .sqs_client()
        .get_queue_attributes()
        .queue_url(&world.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes");
    let queued = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages));
    assert_eq!(queued.map(String::as_str), Some(count.to_string().as_str()), "one message per mapping on the queue");
}

/// A stand-in for SQS's `SendMessageBatch` that answers every call after `latency` (a round
/// trip to SQS) and accepts every entry, counting entries and the most calls in flight. moto
/// cannot time a large fan-out: its queue walks every message it holds for each one added.
struct SlowSqs {
    url: String,
    entries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _server: crate::support::http::Server,
}

impl SlowSqs {
    fn start(latency: Duration) -> SlowSqs {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (entries, most) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
        let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
        let (counted, most_seen) = (entries.clone(), most.clone());
        let server = crate::support::http::Server::start(listener, "slow-sqs", "slow SQS", move |stream| {
            let (counted, most_seen, in_flight) = (counted.clone(), most_seen.clone(), in_flight.clone());
            // A thread per call, so calls overlap as they do at SQS.
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone stream"));
                let Ok(Some(request)) = crate::support::http::read_request(&mut reader) else { return };
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most_seen.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(latency);
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let ids: Vec<&str> =
                    body["Entries"].as_array().into_iter().flatten().filter_map(|e| e["Id"].as_str()).collect();
                counted.fetch_add(ids.len(), Ordering::SeqCst);
                let successful: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"Id": id, "MessageId": format!("m-{id}"), "MD5OfMessageBody": "0".repeat(32)}))
                    .collect();
                let answer = json!({"Successful": successful, "Failed": []}).to_string();
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let headers = [("Content-Type", "application/x-amz-json-1.0")];
                let _ = crate::support::http::write_response(&mut stream, "200 OK", &headers, answer.as_bytes());
            });
            Ok(())
        });
        SlowSqs { url, entries, most_in_flight: most, _server: server }
    }
}

/// 10,000 mappings fan out in seconds when each `SendMessageBatch` takes a 20 ms round trip:
/// several calls are in flight at once (one at a time would take 1,000 × 20 ms = 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mappings_fan_out_with_several_batches_in_flight() {
    let world = World::new().await;
    let mut text = config_text(&world.source.host, &world.target);
    text.truncate(text.find("mappings:\n").expect("mappings section"));
    text += "mappings:\n";
    for n in 0..10_000 {
        text += &format!("  - {{ from: demo/m{n} }}\n");
    }
    world.put_config(&text).await;
    let sqs = SlowSqs::start(Duration::from_millis(20));
    let client =
        aws_sdk_sqs::Client::from_conf(world.moto.sqs_client().config().to_builder().endpoint_url(&sqs.url).build());
    let location = ConfigLocation::S3 { bucket: BUCKET.into(), key: KEY.into() };
    let handler = Handler::new(world.moto.s3_client(), client, location, Some(format!("{}/123456789012/q", sqs.url)));

    let started = Instant::now();
    let answer = handler.handle(event("schedule.json"), soon()).await.expect("schedule");
    let elapsed = started.elapsed();
    eprintln!("fan-out of 10000 mappings, 20 ms per SendMessageBatch: {} ms", elapsed.as_millis());
    assert_eq!(answer["messages"], 10_000);
    assert_eq!(sqs.entries.load(std::sync::atomic::Ordering::SeqCst), 10_000);
    assert_eq!(sqs.most_in_flight.load(std::sync::atomic::Ordering::SeqCst), 8, "eight calls at once");
}
