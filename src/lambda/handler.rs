//! Routing an invocation and doing its work, with the clients and config cache of a warm
//! container reused across invocations, and one engine and deadline per invocation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::Error;
use super::continuation::{Decision, Progress, Redelivery, decide};
use super::deadline::Scope;
use super::fanout::{BatchAnswer, send_in_batches};
use super::message::{CONTINUATION_ATTRIBUTE, ConfigRef, MESSAGE_VERSION, SyncMessage, continuation_count};
use super::metrics::{self, Metrics};
use super::settings::Settings;
use crate::config::{Config, ConfigLocation, Source};
use crate::sync::{self, ClientCache, SyncReport};

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
pub fn classify(event: &Value) -> Result<Invocation, Error> {
    if event.get("Records").is_some() {
        return serde_json::from_value(event.clone())
            .map(Invocation::Sqs)
            .map_err(|e| Error::MalformedEvent(e.to_string()));
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
        return Ok(Invocation::Mapping(SyncMessage::parse(&event.to_string())?));
    }
    Err(Error::UnrecognisedEvent)
}

/// The function's state, built once per container.
pub struct Handler {
    sqs: aws_sdk_sqs::Client,
    /// `OCYNC_CONFIG`, read through its cache.
    config: Source,
    queue_url: Option<String>,
    /// Registry clients (tokens, connection pools, pacing), kept per registry entry across
    /// invocations of this container.
    clients: ClientCache,
    /// Deadline margins, record concurrency and continuation limits.
    pub settings: Settings,
    /// Where the invocation's EMF metrics go (namespace, function dimension).
    pub metrics: Metrics,
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
            sqs,
            config: Source::with_client(location, s3),
            queue_url,
            clients: ClientCache::default(),
            settings: Settings::default(),
            metrics: Metrics::from_lookup(|_| None).expect("the default namespace is valid"),
        }
    }

    /// From the environment: `OCYNC_CONFIG` (required), `OCYNC_QUEUE_URL`, the variables of
    /// [`Settings::from_lookup`], and the AWS SDK's own.
    pub async fn from_environment() -> Result<Handler, Error> {
        let location = std::env::var("OCYNC_CONFIG").map_err(|_| Error::NoConfig)?;
        let location = ConfigLocation::parse(&location)?;
        let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
        let shared = crate::aws::sdk_config(None, None).await;
        let sqs = aws_sdk_sqs::Client::new(&shared);
        let mut handler = Handler::new(
            crate::config::s3_client().await,
            sqs,
            location,
            std::env::var("OCYNC_QUEUE_URL").ok().filter(|q| !q.is_empty()),
        );
        handler.settings = settings;
        handler.metrics = Metrics::from_lookup(|name| std::env::var(name).ok())?;
        Ok(handler)
    }

    /// Handles one invocation that must finish by `deadline`.
    pub async fn handle(&self, event: Value, deadline: Instant) -> Result<Value, Error> {
        let started = Instant::now();
        let wall_started = SystemTime::now();
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
                let report = self.sync_mappings(&config, &[], deadline).await?;
                let mut done = metrics::Invocation::default();
                done.add(&report, wall_started, SystemTime::now());
                self.summarise(&done, started);
                Ok(serde_json::to_value(&report).expect("reports serialise"))
            }
            Invocation::Mapping(message) => {
                check_origin(&self.config.location(), &message.config)
                    .inspect_err(|error| tracing::error!(%error, "invocation refused"))?;
                let config = self.load().await?;
                check_mapping(&config, &message)?;
                let report = self.sync_mappings(&config, &[message.mapping], deadline).await?;
                let mut done = metrics::Invocation::default();
                done.add(&report, run_started(&message.run_id).unwrap_or(wall_started), SystemTime::now());
                self.summarise(&done, started);
                Ok(serde_json::to_value(&report).expect("reports serialise"))
            }
        }
    }

    /// Loads the function's own config, `OCYNC_CONFIG`, whatever an event names: the
    /// messages only say which mapping to sync (see [`check_origin`]).
    async fn load(&self) -> Result<Arc<Config>, Error> {
        Ok(self.config.load().await?.config)
    }

    /// The schedule: validate the config, then one message per mapping (or sync inline).
    async fn schedule(&self, deadline: Instant) -> Result<Value, Error> {
        let (started, wall_started) = (Instant::now(), SystemTime::now());
        let loaded =
            self.config.load().await.inspect_err(|error| tracing::error!(%error, "config refused; nothing sent"))?;
        let (config, version_id) = (loaded.config, loaded.version_id);
        let Some(queue_url) = &self.queue_url else {
            let report = self.sync_mappings(&config, &[], deadline).await?;
            let mut done = metrics::Invocation { scheduled: Some(config.mappings.len()), ..Default::default() };
            done.add(&report, wall_started, SystemTime::now());
            self.summarise(&done, started);
            return Ok(serde_json::to_value(&report).expect("reports serialise"));
        };
        let ConfigLocation::S3 { bucket, key } = self.config.location() else {
            return Err(Error::FanOutNeedsS3);
        };
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
        let fan_out = metrics::Invocation { scheduled: Some(sent), ..Default::default() };
        metrics::emit(&self.metrics, &fan_out.documents(&self.metrics), SystemTime::now());
        Ok(json!({ "run_id": run_id, "messages": sent }))
    }

    /// `SendMessageBatch` in tens; entries SQS answers as failed are sent again.
    async fn send_all(&self, queue_url: &str, messages: &[SyncMessage]) -> Result<usize, Error> {
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
            let answer =
                self.sqs.send_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await.map_err(
                    |e| Error::Sqs {
                        call: "SendMessageBatch",
                        queue: queue_url.to_string(),
                        reason: crate::aws::describe(&e),
                    },
                )?;
            Ok(BatchAnswer {
                successful: answer.successful().len(),
                failed: answer.failed().iter().map(|f| f.id().to_string()).collect(),
            })
        })
        .await
    }

    /// Syncs the mapping of each record, then answers each: done, continued (see
    /// [`super::continuation`]), or a batch item failure for SQS to redeliver.
    async fn sqs_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let (started, wall_started) = (Instant::now(), SystemTime::now());
        let settings = &self.settings;
        let scope = Scope::new(deadline, settings.deadline_margin, settings.finish_margin);
        let scope = &scope;
        let records = event.records.into_iter().map(|record| self.sqs_record(record, scope));
        let results: Vec<Record> =
            futures_util::stream::iter(records).buffer_unordered(settings.records_at_once.max(1)).collect().await;
        let answers = futures_util::future::join_all(results.iter().map(|record| self.answer(record))).await;
        let continuations = answers.iter().filter(|answer| **answer == Answer::Continued).count();
        let mut done = metrics::Invocation { continuations, ..Default::default() };
        let now = SystemTime::now();
        for record in &results {
            if let Some(report) = &record.report {
                let run = record.message.as_ref().and_then(|message| run_started(&message.run_id));
                done.add(report, run.unwrap_or(wall_started), now);
            }
        }
        self.summarise(&done, started);
        let mut response = SqsBatchResponse::default();
        for (record, answer) in results.iter().zip(answers) {
            if answer == Answer::Failed {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = record.id.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// One record's work, until the invocation's stop.
    async fn sqs_record(&self, record: SqsMessage, scope: &Scope) -> Record {
        let id = record.message_id.clone().unwrap_or_default();
        let mut result = Record { id, message: None, count: 0, report: None, at_deadline: false };
        if scope.shutdown.is_stopping() {
            tracing::warn!(message_id = %result.id, "not started: the invocation deadline is near");
            return result;
        }
        let parsed = SyncMessage::parse(record.body.as_deref().unwrap_or_default())
            .and_then(|message| Ok((message, continuation_count(&record.message_attributes)?)));
        let (message, count) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(message_id = %result.id, %error, "record failed");
                return result;
            }
        };
        // The run abandons its transfers at the stop; this also covers loading the config.
        let work = self.sync_record(&message, scope);
        let outcome = tokio::select! {
            biased;
            outcome = work => outcome,
            () = scope.shutdown.abandoned() => Err(Error::Unfinished),
        };
        result.at_deadline = scope.shutdown.is_stopping();
        match outcome {
            Ok(report) => result.report = Some(report),
            Err(error) => tracing::error!(message_id = %result.id, %error, "record failed"),
        }
        (result.message, result.count) = (Some(message), count);
        result
    }

    /// What to answer for a finished record; sends its continuation if it gets one.
    async fn answer(&self, record: &Record) -> Answer {
        let settings = &self.settings;
        let decision = decide(
            record.report.as_ref(),
            record.at_deadline,
            record.count,
            settings.continuation_min_bytes,
            settings.max_continuations,
        );
        let (Some(message), Some(report)) = (&record.message, &record.report) else {
            return if decision == Decision::Done { Answer::Done } else { Answer::Failed };
        };
        let (run_id, mapping) = (&message.run_id, &message.mapping_key);
        let progress = Progress::of(report);
        let (images, bytes_landed) = (progress.images, progress.bytes_landed);
        match decision {
            Decision::Done => Answer::Done,
            Decision::Continue { count } => match self.continue_mapping(message, count).await {
                Ok(()) => {
                    tracing::info!(message_id = %record.id, %run_id, %mapping, continuation = count, images, bytes_landed, "unfinished at the deadline: continued");
                    Answer::Continued
                }
                Err(error) => {
                    tracing::error!(message_id = %record.id, %run_id, %mapping, %error, "continuation not sent; the record is redelivered");
                    Answer::Failed
                }
            },
            Decision::Redeliver { reason: Redelivery::Cap } => {
                tracing::error!(message_id = %record.id, %run_id, %mapping, continuations = record.count, max = settings.max_continuations, "unfinished after the maximum of continuations; the record is redelivered and may reach the dead-letter queue");
                Answer::Failed
            }
            Decision::Redeliver { reason: Redelivery::NoProgress } => {
                tracing::warn!(message_id = %record.id, %run_id, %mapping, bytes_landed, min_bytes = settings.continuation_min_bytes, "unfinished at the deadline without progress; the record is redelivered");
                Answer::Failed
            }
            Decision::Redeliver { .. } => Answer::Failed,
        }
    }

    /// Sends `message` again to the function's own queue, carrying the continuation `count`.
    async fn continue_mapping(&self, message: &SyncMessage, count: u32) -> Result<(), Error> {
        let Some(queue_url) = &self.queue_url else {
            return Err(Error::NoQueue);
        };
        let sqs_error = |reason: String| Error::Sqs { call: "SendMessage", queue: queue_url.to_string(), reason };
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(count.to_string())
            .build()
            .map_err(|e| sqs_error(format!("continuation attribute: {e}")))?;
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(message.body())
            .message_attributes(CONTINUATION_ATTRIBUTE, attribute)
            .send()
            .await
            .map_err(|e| sqs_error(crate::aws::describe(&e)))?;
        Ok(())
    }

    async fn sync_record(&self, message: &SyncMessage, scope: &Scope) -> Result<SyncReport, Error> {
        check_origin(&self.config.location(), &message.config)?;
        let config = self.load().await?;
        check_mapping(&config, message)?;
        self.run(&config, &[message.mapping], scope).await
    }

    /// Syncs the mappings at `indices` (all when empty) inline, under this invocation's deadline.
    async fn sync_mappings(&self, config: &Config, indices: &[usize], deadline: Instant) -> Result<SyncReport, Error> {
        let scope = Scope::new(deadline, self.settings.deadline_margin, self.settings.finish_margin);
        self.run(config, indices, &scope).await
    }

    /// The one run path ([`sync::run`]) over `indices`, with this container's clients and the
    /// invocation's engine and shutdown.
    async fn run(&self, config: &Config, indices: &[usize], scope: &Scope) -> Result<SyncReport, Error> {
        let mappings = sync::select(config, indices)?;
        let clients = self.clients.clients(config, &mappings).await;
        Ok(sync::run(config, &mappings, &clients, scope.engine(config), &scope.shutdown).await?)
    }

    /// One log line per invocation (mappings, images synced / skipped / failed, bytes,
    /// continuations sent, duration) and its EMF metrics on stdout.
    fn summarise(&self, done: &metrics::Invocation, started: Instant) {
        let metrics::Invocation { mappings, synced, skipped, failed, bytes, continuations, .. } = *done;
        let (in_sync, duration_ms) = (done.in_sync.len(), started.elapsed().as_millis() as u64);
        tracing::info!(
            mappings,
            synced,
            skipped,
            failed,
            bytes,
            continuations,
            in_sync,
            duration_ms,
            "invocation summary"
        );
        metrics::emit(&self.metrics, &done.documents(&self.metrics), SystemTime::now());
    }
}

/// One SQS record once its work is over.
struct Record {
    id: String,
    /// The message, once parsed and accepted.
    message: Option<SyncMessage>,
    /// Continuations that led to it.
    count: u32,
    /// What the sync did, if it ran to a report.
    report: Option<SyncReport>,
    /// Whether the deadline margin had passed when its work ended.
    at_deadline: bool,
}

/// How a record is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Deleted: in sync.
    Done,
    /// Deleted: its continuation is on the queue.
    Continued,
    /// A batch item failure.
    Failed,
}

/// Refuses a message that names another config than the function's own `OCYNC_CONFIG`. Whoever
/// can send to the queue (or invoke the function) must not choose the config, and with it the
/// registries the function's credentials go to; a worker syncs only what its own config says.
fn check_origin(own: &ConfigLocation, named: &ConfigRef) -> Result<(), Error> {
    let named = ConfigLocation::S3 { bucket: named.bucket.clone(), key: named.key.clone() };
    if *own == named {
        return Ok(());
    }
    Err(Error::ForeignConfig { named, own: own.clone() })
}

/// Refuses a message whose mapping no longer matches the config.
fn check_mapping(config: &Config, message: &SyncMessage) -> Result<(), Error> {
    let index = message.mapping;
    let mapping = config
        .mappings
        .iter()
        .find(|m| m.index == index)
        .ok_or(Error::NoMapping { index, count: config.mappings.len() })?;
    if mapping.key() != message.mapping_key {
        return Err(Error::MappingChanged { index, now: mapping.key(), named: message.mapping_key.clone() });
    }
    Ok(())
}

/// A run id: time and randomness, enough to tell runs apart in logs.
fn run_id() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("{millis:x}-{:08x}", rand::random::<u32>())
}

/// With the default [`super::MAX_CONTINUATIONS`] a run's chain lasts at most 25 hours of
/// 15-minute invocations. An id older than this is taken for a hand-made or replayed message,
/// whose time is not trusted: its lag counts from the invocation's start instead.
const OLDEST_RUN: Duration = Duration::from_secs(48 * 3600);

/// When the run `run_id` (from [`run_id`]) started: the schedule's time, from which a mapping's
/// mirror lag counts. `None` for another id (a hand-written message) or an implausible time.
fn run_started(run_id: &str) -> Option<SystemTime> {
    let millis = u64::from_str_radix(run_id.split_once('-')?.0, 16).ok()?;
    let started = UNIX_EPOCH.checked_add(Duration::from_millis(millis))?;
    let age = SystemTime::now().duration_since(started).ok()?;
    (age <= OLDEST_RUN).then_some(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_gives_the_time_its_run_started() {
        let id = run_id();
        let started = run_started(&id).expect("a fresh run id");
        let age = SystemTime::now().duration_since(started).unwrap();
        assert!(age < Duration::from_secs(5), "{age:?}");
        let millis = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(run_started(&format!("{:x}-0000abcd", millis(hour_ago))).map(millis), Some(millis(hour_ago)));
        let future = SystemTime::now() + Duration::from_secs(3600);
        for other in ["r", "zz-1", "", &format!("{:x}-1", millis(future)), "1-1"] {
            assert_eq!(run_started(other), None, "{other}");
        }
    }

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
        let unknown = classify(&json!({"hello": "world"})).unwrap_err().to_string();
        assert!(unknown.starts_with("unrecognised event"), "{unknown}");
    }

    #[test]
    fn only_the_functions_own_config_is_accepted() {
        let own = ConfigLocation::S3 { bucket: "ocync-config".into(), key: "ocync.yaml".into() };
        let named = |bucket: &str, key: &str| ConfigRef { bucket: bucket.into(), key: key.into(), version_id: None };
        assert!(check_origin(&own, &named("ocync-config", "ocync.yaml")).is_ok());
        for (bucket, key) in
            [("elsewhere", "ocync.yaml"), ("ocync-config", "other.yaml"), ("ocync-config/ocync.yaml", "")]
        {
            let error = check_origin(&own, &named(bucket, key)).unwrap_err().to_string();
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
        assert!(check_mapping(&config, &message(0, "y -> y")).unwrap_err().to_string().contains("is now `x -> x`"));
        assert!(check_mapping(&config, &message(1, "x -> x")).unwrap_err().to_string().contains("has no mapping 1"));
    }
}
