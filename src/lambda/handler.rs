//! The handler: routing an invocation to the schedule's fan-out ([`super::fanout`]), the SQS
//! worker ([`super::worker`]) or an inline sync, with the clients and config cache of a warm
//! container reused across invocations, and one engine and deadline per invocation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use super::Error;
use super::deadline::Scope;
use super::message::{ConfigRef, SyncMessage};
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
    pub(super) sqs: aws_sdk_sqs::Client,
    /// `OCYNC_CONFIG`, read through its cache.
    pub(super) config: Source,
    pub(super) queue_url: Option<String>,
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

    pub(super) async fn sync_record(&self, message: &SyncMessage, scope: &Scope) -> Result<SyncReport, Error> {
        check_origin(&self.config.location(), &message.config)?;
        let config = self.load().await?;
        check_mapping(&config, message)?;
        self.run(&config, &[message.mapping], scope).await
    }

    /// Syncs the mappings at `indices` (all when empty) inline, under this invocation's deadline.
    pub(super) async fn sync_mappings(
        &self,
        config: &Config,
        indices: &[usize],
        deadline: Instant,
    ) -> Result<SyncReport, Error> {
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
    pub(super) fn summarise(&self, done: &metrics::Invocation, started: Instant) {
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

/// With the default [`super::MAX_CONTINUATIONS`] a run's chain lasts at most 25 hours of
/// 15-minute invocations. An id older than this is taken for a hand-made or replayed message,
/// whose time is not trusted: its lag counts from the invocation's start instead.
const OLDEST_RUN: Duration = Duration::from_secs(48 * 3600);

/// When the run `run_id` (from [`run_id`]) started: the schedule's time, from which a mapping's
/// mirror lag counts. `None` for another id (a hand-written message) or an implausible time.
pub(super) fn run_started(run_id: &str) -> Option<SystemTime> {
    let millis = u64::from_str_radix(run_id.split_once('-')?.0, 16).ok()?;
    let started = UNIX_EPOCH.checked_add(Duration::from_millis(millis))?;
    let age = SystemTime::now().duration_since(started).ok()?;
    (age <= OLDEST_RUN).then_some(started)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lambda::fanout::run_id;

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
