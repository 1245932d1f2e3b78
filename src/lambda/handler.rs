//! Routing an invocation and doing its work, with the clients and config cache of a warm
//! container reused across invocations, and one engine and deadline per invocation.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::message::{ConfigRef, MESSAGE_VERSION, SyncMessage};
use crate::cancel::Cancel;
use crate::config::{Config, ConfigLocation, Mapping, S3ConfigCache};
use crate::engine::Engine;
use crate::sync::{self, ClientCache, RunStatus, SyncReport};

/// SQS accepts at most this many entries per `SendMessageBatch`.
const SQS_BATCH: usize = 10;
/// Attempts for entries a `SendMessageBatch` answered as failed.
const SEND_ATTEMPTS: usize = 3;

/// What an invocation asks for.
#[derive(Debug)]
pub enum Invocation {
    /// A schedule: plan the fan-out.
    Schedule,
    /// SQS records to sync.
    Sqs(SqsEvent),
    /// Sync every mapping inline.
    SyncAll,
    /// Sync one mapping inline.
    Mapping(SyncMessage),
}

/// Reads the shape of an event.
pub fn classify(event: &Value) -> Result<Invocation, String> {
    if event.get("Records").is_some() {
        return serde_json::from_value(event.clone())
            .map(Invocation::Sqs)
            .map_err(|e| format!("malformed SQS event: {e}"));
    }
    let scheduled = event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        || event.get("ocync").and_then(Value::as_str) == Some("schedule");
    if scheduled {
        return Ok(Invocation::Schedule);
    }
    if event.get("sync").and_then(Value::as_str) == Some("all") {
        return Ok(Invocation::SyncAll);
    }
    if event.get("mapping").is_some() {
        return SyncMessage::parse(&event.to_string()).map(Invocation::Mapping).map_err(|e| e.to_string());
    }
    Err("unrecognised event: expected a schedule, an SQS event, {\"sync\": \"all\"} or a mapping message".into())
}

/// The function's state, built once per container.
pub struct Handler {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    location: ConfigLocation,
    queue_url: Option<String>,
    configs: S3ConfigCache,
    /// Registry clients (tokens, connection pools, pacing), kept per registry entry across
    /// invocations of this container.
    clients: ClientCache,
    /// No new transfer starts once the remaining time is below this (at most a third of the
    /// invocation's time).
    pub deadline_margin: Duration,
    /// Transfers still in flight when the remaining time is below this (at most a tenth of the
    /// invocation's time) are abandoned, so the function answers before it is killed and the
    /// records that did finish are not redelivered.
    pub finish_margin: Duration,
    /// SQS records synced at once.
    pub records_at_once: usize,
}

impl Handler {
    /// A handler for the config at `location` and the fan-out queue, if any.
    pub fn new(
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        location: ConfigLocation,
        queue_url: Option<String>,
    ) -> Self {
        Handler {
            s3,
            sqs,
            location,
            queue_url,
            configs: S3ConfigCache::default(),
            clients: ClientCache::default(),
            deadline_margin: Duration::from_secs(30),
            finish_margin: Duration::from_secs(3),
            records_at_once: 4,
        }
    }

    /// From the environment: `OCYNC_CONFIG` (required), `OCYNC_QUEUE_URL`,
    /// `OCYNC_DEADLINE_MARGIN_SECONDS`, `OCYNC_FINISH_MARGIN_SECONDS`, `OCYNC_RECORD_CONCURRENCY`,
    /// and the AWS SDK's own.
    pub async fn from_environment() -> Result<Handler, String> {
        let location = std::env::var("OCYNC_CONFIG")
            .map_err(|_| "OCYNC_CONFIG is not set (expected s3://bucket/key)".to_string())?;
        let location = ConfigLocation::parse(&location).map_err(|e| e.to_string())?;
        let shared = crate::aws::sdk_config(None, None).await;
        let sqs = aws_sdk_sqs::Client::new(&shared);
        let mut handler = Handler::new(
            crate::config::s3_client().await,
            sqs,
            location,
            std::env::var("OCYNC_QUEUE_URL").ok().filter(|q| !q.is_empty()),
        );
        if let Some(margin) = std::env::var("OCYNC_DEADLINE_MARGIN_SECONDS").ok().and_then(|v| v.parse().ok()) {
            handler.deadline_margin = Duration::from_secs(margin);
        }
        if let Some(margin) = std::env::var("OCYNC_FINISH_MARGIN_SECONDS").ok().and_then(|v| v.parse().ok()) {
            handler.finish_margin = Duration::from_secs(margin);
        }
        if let Some(n) = std::env::var("OCYNC_RECORD_CONCURRENCY").ok().and_then(|v| v.parse().ok()) {
            handler.records_at_once = n;
        }
        Ok(handler)
    }

    /// Handles one invocation that must finish by `deadline`.
    pub async fn handle(&self, event: Value, deadline: Instant) -> Result<Value, String> {
        let started = Instant::now();
        let invocation = classify(&event).inspect_err(|error| tracing::error!(%error, "invocation refused"))?;
        match invocation {
            Invocation::Schedule => self.schedule(deadline).await,
            Invocation::Sqs(event) => {
                let response = self.sqs_batch(event, deadline).await;
                let failures = response.batch_item_failures.len();
                tracing::info!(failures, duration_ms = started.elapsed().as_millis() as u64, "SQS batch done");
                Ok(serde_json::to_value(response).expect("responses serialise"))
            }
            Invocation::SyncAll => {
                let config = self.load().await?;
                let indices: Vec<usize> = config.mappings.iter().map(|m| m.index).collect();
                let report = self.sync_mappings(&config, &indices, deadline).await;
                summarise(&[&report], started);
                Ok(serde_json::to_value(&report).expect("reports serialise"))
            }
            Invocation::Mapping(message) => {
                check_origin(&self.location, &message.config)
                    .inspect_err(|error| tracing::error!(%error, "invocation refused"))?;
                let config = self.load().await?;
                check_mapping(&config, &message)?;
                let report = self.sync_mappings(&config, &[message.mapping], deadline).await;
                summarise(&[&report], started);
                Ok(serde_json::to_value(&report).expect("reports serialise"))
            }
        }
    }

    /// Loads the function's own config, `OCYNC_CONFIG`, whatever an event names: the
    /// messages only say which mapping to sync (see [`check_origin`]).
    async fn load(&self) -> Result<Arc<Config>, String> {
        match &self.location {
            ConfigLocation::S3 { bucket, key } => {
                Ok(self.configs.load(&self.s3, bucket, key).await.map_err(|e| e.to_string())?.config)
            }
            ConfigLocation::File(path) => Config::load(path).map(Arc::new).map_err(|e| e.to_string()),
        }
    }

    /// The schedule: validate the config, then one message per mapping (or sync inline).
    async fn schedule(&self, deadline: Instant) -> Result<Value, String> {
        let started = Instant::now();
        let config = self.load().await.inspect_err(|error| tracing::error!(%error, "config refused; nothing sent"))?;
        let Some(queue_url) = &self.queue_url else {
            let indices: Vec<usize> = config.mappings.iter().map(|m| m.index).collect();
            let report = self.sync_mappings(&config, &indices, deadline).await;
            summarise(&[&report], started);
            return Ok(serde_json::to_value(&report).expect("reports serialise"));
        };
        let ConfigLocation::S3 { bucket, key } = &self.location else {
            return Err("fan-out needs the config in S3 (OCYNC_CONFIG=s3://bucket/key)".into());
        };
        let version_id = self.configs.load(&self.s3, bucket, key).await.map_err(|e| e.to_string())?.version_id;
        let run_id = run_id();
        let messages: Vec<SyncMessage> = config
            .mappings
            .iter()
            .map(|mapping| SyncMessage {
                version: MESSAGE_VERSION,
                run_id: run_id.clone(),
                config: ConfigRef { bucket: bucket.clone(), key: key.clone(), version_id: version_id.clone() },
                mapping: mapping.index,
                mapping_key: mapping.key(),
            })
            .collect();
        let sent = self.send_all(queue_url, &messages).await?;
        tracing::info!(%run_id, messages = sent, duration_ms = started.elapsed().as_millis() as u64, "fan-out sent");
        Ok(json!({ "run_id": run_id, "messages": sent }))
    }

    /// `SendMessageBatch` in tens; entries SQS answers as failed are sent again.
    async fn send_all(&self, queue_url: &str, messages: &[SyncMessage]) -> Result<usize, String> {
        send_in_batches(queue_url, messages, |pending| async move {
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let answer = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("SendMessageBatch to {queue_url}: {}", crate::aws::describe(&e)))?;
            Ok(BatchAnswer {
                successful: answer.successful().len(),
                failed: answer.failed().iter().map(|f| f.id().to_string()).collect(),
            })
        })
        .await
    }

    /// Syncs the mapping of each record; failed, malformed and unfinished records are reported.
    async fn sqs_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let started = Instant::now();
        let scope = Scope::new(deadline, self.deadline_margin, self.finish_margin);
        let scope = &scope;
        let records = event.records.into_iter().map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            if scope.is_cancelled() {
                tracing::warn!(message_id = %id, "not started: the invocation deadline is near");
                return (id, None);
            }
            // The engine abandons transfers at the stop; this also covers loading and planning.
            let work = self.sync_record(record.body.as_deref().unwrap_or_default(), scope);
            let outcome = tokio::select! {
                biased;
                outcome = work => outcome,
                () = scope.stopped() => Err("unfinished at the invocation deadline".to_string()),
            };
            match outcome {
                Ok(report) => (id, Some(report)),
                Err(error) => {
                    tracing::error!(message_id = %id, %error, "record failed");
                    (id, None)
                }
            }
        });
        let results: Vec<(String, Option<SyncReport>)> =
            futures_util::stream::iter(records).buffer_unordered(self.records_at_once.max(1)).collect().await;
        let reports: Vec<&SyncReport> = results.iter().filter_map(|(_, r)| r.as_ref()).collect();
        summarise(&reports, started);
        let mut response = SqsBatchResponse::default();
        for (id, report) in &results {
            // Interrupted transfers make the report fail, so unfinished records are failures too.
            let succeeded = report.as_ref().is_some_and(|r| r.status == RunStatus::Success);
            if !succeeded {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn sync_record(&self, body: &str, scope: &Scope) -> Result<SyncReport, String> {
        let message = SyncMessage::parse(body).map_err(|e| e.to_string())?;
        check_origin(&self.location, &message.config)?;
        let config = self.load().await?;
        check_mapping(&config, &message)?;
        Ok(self.run(&config, &[message.mapping], scope).await)
    }

    async fn sync_mappings(&self, config: &Config, indices: &[usize], deadline: Instant) -> SyncReport {
        let scope = Scope::new(deadline, self.deadline_margin, self.finish_margin);
        self.run(config, indices, &scope).await
    }

    async fn run(&self, config: &Config, indices: &[usize], scope: &Scope) -> SyncReport {
        let mappings: Vec<&Mapping> = config.mappings.iter().filter(|m| indices.contains(&m.index)).collect();
        let clients = self.clients.clients(config, &mappings).await;
        // In the deadline's cancel scope, so a discovery request waiting out throttling stops
        // at the deadline margin instead of running into the invocation's timeout.
        let plan = scope.cancel.scope(sync::plan(&mappings, &clients, false)).await;
        let engine = scope.engine(config);
        // Abandoning in-flight images is safe: a tag is pushed only once its blobs are confirmed.
        sync::execute_until(&plan, &mappings, &clients, engine, config.global.max_concurrent_transfers, scope.stopped())
            .await
    }
}

/// What the work of one invocation shares: the cancel flag its deadline sets, the later stop
/// at which transfers still in flight are abandoned, and one engine,
/// so `global.max_concurrent_transfers` bounds the whole invocation and the records of a batch
/// read a blob they share from the source once. The deadline timer stops when the invocation
/// ends (the scope is dropped), so it cannot touch a later invocation of a warm container.
struct Scope {
    cancel: Cancel,
    stop: Cancel,
    timer: tokio::task::JoinHandle<()>,
    engine: OnceLock<Engine>,
}

impl Scope {
    /// Sets the flag once the remaining time falls below `margin`, which is at most a third of
    /// the time this invocation has, so a short function timeout still gets work done; then
    /// sets the stop once it falls below `finish` (at most a tenth of that time), leaving the
    /// handler time to answer before the function is killed.
    fn new(deadline: Instant, margin: Duration, finish: Duration) -> Self {
        let (cancel, stop) = (Cancel::default(), Cancel::default());
        let remaining = deadline.saturating_duration_since(Instant::now());
        let cancel_at = deadline.checked_sub(margin.min(remaining / 3)).unwrap_or_else(Instant::now);
        let stop_at = deadline.checked_sub(finish.min(remaining / 10)).unwrap_or_else(Instant::now).max(cancel_at);
        let (trigger, halt) = (cancel.clone(), stop.clone());
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(cancel_at.into()).await;
            tracing::warn!("invocation deadline near: starting no new transfers");
            trigger.cancel();
            tokio::time::sleep_until(stop_at.into()).await;
            tracing::warn!("invocation deadline nearer: abandoning the transfers still in flight");
            halt.cancel();
        });
        Scope { cancel, stop, timer, engine: OnceLock::new() }
    }

    /// Resolves once transfers still in flight must be abandoned.
    async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The invocation's engine, bounded by the limits of the first config a record brings
    /// (the records of a batch come from one fan-out, so from one config).
    fn engine(&self, config: &Config) -> &Engine {
        self.engine.get_or_init(|| sync::engine(config, self.cancel.clone()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

/// What one `SendMessageBatch` answered: how many entries were accepted, and the ids of those
/// it refused.
struct BatchAnswer {
    successful: usize,
    failed: Vec<String>,
}

/// Sends `messages` to `queue_url` in batches of [`SQS_BATCH`] through `send` (entries are `(id, body)`),
/// sending the entries a batch refused again, up to [`SEND_ATTEMPTS`] times. Returns how
/// many were accepted.
async fn send_in_batches<F, Fut>(queue_url: &str, messages: &[SyncMessage], mut send: F) -> Result<usize, String>
where
    F: FnMut(Vec<(String, String)>) -> Fut,
    Fut: Future<Output = Result<BatchAnswer, String>>,
{
    let mut sent = 0;
    for chunk in messages.chunks(SQS_BATCH) {
        let mut pending: Vec<(String, String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| (i.to_string(), serde_json::to_string(m).expect("messages serialise")))
            .collect();
        for attempt in 1..=SEND_ATTEMPTS {
            let answer = send(pending.clone()).await?;
            sent += answer.successful;
            pending.retain(|(id, _)| answer.failed.contains(id));
            if pending.is_empty() {
                break;
            }
            tracing::warn!(attempt, failed = pending.len(), "some messages were not accepted; sending them again");
        }
        if !pending.is_empty() {
            return Err(format!(
                "{} messages were refused by {queue_url} after {SEND_ATTEMPTS} attempts",
                pending.len()
            ));
        }
    }
    Ok(sent)
}

/// Refuses a message that names another config than the function's own `OCYNC_CONFIG`. Whoever
/// can send to the queue (or invoke the function) must not choose the config, and with it the
/// registries the function's credentials go to; a worker syncs only what its own config says.
fn check_origin(own: &ConfigLocation, named: &ConfigRef) -> Result<(), String> {
    let named_location = ConfigLocation::S3 { bucket: named.bucket.clone(), key: named.key.clone() };
    if *own == named_location {
        return Ok(());
    }
    Err(format!(
        "the message names the config {named_location}, but this function reads only {own} (OCYNC_CONFIG); \
         refused, nothing synced for it"
    ))
}

/// Refuses a message whose mapping no longer matches the config.
fn check_mapping(config: &Config, message: &SyncMessage) -> Result<(), String> {
    let mapping = config.mappings.iter().find(|m| m.index == message.mapping).ok_or_else(|| {
        format!(
            "the config has no mapping {} (it has {}); it changed after the run was planned",
            message.mapping,
            config.mappings.len()
        )
    })?;
    if mapping.key() != message.mapping_key {
        return Err(format!(
            "mapping {} is now `{}`, not `{}`: the config changed after the run was planned",
            message.mapping,
            mapping.key(),
            message.mapping_key
        ));
    }
    Ok(())
}

/// One log line per invocation: mappings, images synced / skipped / failed, bytes, duration.
fn summarise(reports: &[&SyncReport], started: Instant) {
    let (mut mappings, mut synced, mut skipped, mut failed, mut bytes) = (0, 0, 0, 0, 0);
    for report in reports {
        mappings += report.totals.mappings;
        synced += report.totals.synced;
        skipped += report.totals.skipped;
        failed += report.totals.failed + report.totals.mappings_failed;
        bytes += report.totals.stats.bytes;
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(mappings, synced, skipped, failed, bytes, duration_ms, "invocation summary");
}

/// A run id: time and randomness, enough to tell runs apart in logs.
fn run_id() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("{millis:x}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_documented_shape() {
        assert!(matches!(
            classify(&json!({"detail-type": "Scheduled Event", "source": "aws.events"})),
            Ok(Invocation::Schedule)
        ));
        assert!(matches!(classify(&json!({"ocync": "schedule"})), Ok(Invocation::Schedule)));
        assert!(matches!(classify(&json!({"sync": "all"})), Ok(Invocation::SyncAll)));
        assert!(matches!(classify(&json!({"Records": []})), Ok(Invocation::Sqs(_))));
        let message = json!({"version": 1, "run_id": "r", "config": {"bucket": "b", "key": "k"}, "mapping": 0, "mapping_key": "a -> a"});
        assert!(matches!(classify(&message), Ok(Invocation::Mapping(_))));
        let unknown = classify(&json!({"hello": "world"})).unwrap_err();
        assert!(unknown.starts_with("unrecognised event"), "{unknown}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_new_work_at_the_margin() {
        let scope =
            Scope::new(Instant::now() + Duration::from_secs(90), Duration::from_secs(30), Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!scope.is_cancelled(), "more than the margin is left");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(scope.is_cancelled(), "less than the margin is left");
        assert!(!scope.stop.is_cancelled(), "in-flight transfers go on until the finish margin");
        tokio::time::sleep(Duration::from_secs(28)).await;
        assert!(scope.stop.is_cancelled(), "less than the finish margin is left: in-flight work is abandoned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_invocation_leaves_no_deadline_timer_behind() {
        let scope =
            Scope::new(Instant::now() + Duration::from_secs(90), Duration::from_secs(30), Duration::from_secs(3));
        let flag = scope.cancel.clone();
        let timer = scope.timer.abort_handle();
        drop(scope);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(timer.is_finished(), "the timer task ended with its invocation");
        assert!(!flag.is_cancelled(), "the timer never fired");
    }

    fn messages(count: usize) -> Vec<SyncMessage> {
        (0..count)
            .map(|mapping| SyncMessage {
                version: 1,
                run_id: "r".into(),
                config: ConfigRef { bucket: "b".into(), key: "k".into(), version_id: None },
                mapping,
                mapping_key: format!("m{mapping} -> m{mapping}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn refused_entries_are_sent_again_and_only_they() {
        let calls = std::sync::Mutex::new(Vec::<Vec<String>>::new());
        let sent = send_in_batches("q", &messages(12), |pending| {
            let ids: Vec<String> = pending.iter().map(|(id, _)| id.clone()).collect();
            let mut calls = calls.lock().unwrap();
            calls.push(ids.clone());
            // The first batch refuses entries 3 and 7 once; everything else is accepted.
            let failed: Vec<String> = if calls.len() == 1 { vec!["3".into(), "7".into()] } else { Vec::new() };
            let answer = BatchAnswer { successful: ids.len() - failed.len(), failed };
            async move { Ok(answer) }
        })
        .await;
        assert_eq!(sent, Ok(12));
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 3, "ten, the two refused again, then the last two: {calls:?}");
        assert_eq!(calls[0].len(), 10);
        assert_eq!(calls[1], ["3", "7"]);
        assert_eq!(calls[2], ["0", "1"]);
    }

    #[tokio::test]
    async fn entries_refused_every_time_fail_the_fan_out() {
        let mut attempts = 0;
        let result = send_in_batches("q", &messages(2), |pending| {
            attempts += 1;
            let answer = BatchAnswer { successful: pending.len() - 1, failed: vec!["1".into()] };
            async move { Ok(answer) }
        })
        .await;
        assert_eq!(attempts, SEND_ATTEMPTS);
        assert_eq!(result, Err(format!("1 messages were refused by q after {SEND_ATTEMPTS} attempts")));
    }

    #[test]
    fn only_the_functions_own_config_is_accepted() {
        let own = ConfigLocation::S3 { bucket: "ocync-config".into(), key: "ocync.yaml".into() };
        let named = |bucket: &str, key: &str| ConfigRef { bucket: bucket.into(), key: key.into(), version_id: None };
        assert_eq!(check_origin(&own, &named("ocync-config", "ocync.yaml")), Ok(()));
        for (bucket, key) in
            [("elsewhere", "ocync.yaml"), ("ocync-config", "other.yaml"), ("ocync-config/ocync.yaml", "")]
        {
            let error = check_origin(&own, &named(bucket, key)).unwrap_err();
            assert!(error.contains("reads only s3://ocync-config/ocync.yaml (OCYNC_CONFIG)"), "{error}");
        }
        let file = ConfigLocation::File("/etc/ocync.yaml".into());
        assert!(
            check_origin(&file, &named("ocync-config", "ocync.yaml")).is_err(),
            "a file config takes no S3 message"
        );
    }

    #[test]
    fn a_changed_config_refuses_the_message() {
        let config = Config::parse(
            "registries:\n  a: { url: a.io }\n  b: { url: b.io }\nmappings:\n  - { from: x, source: a, targets: b }\n",
            "t.yaml",
            |_| None,
        )
        .unwrap();
        let message = |mapping, key: &str| SyncMessage {
            version: 1,
            run_id: "r".into(),
            config: ConfigRef { bucket: "b".into(), key: "k".into(), version_id: None },
            mapping,
            mapping_key: key.into(),
        };
        assert!(check_mapping(&config, &message(0, "x -> x")).is_ok());
        assert!(check_mapping(&config, &message(0, "y -> y")).unwrap_err().contains("is now `x -> x`"));
        assert!(check_mapping(&config, &message(1, "x -> x")).unwrap_err().contains("has no mapping 1"));
    }
}
