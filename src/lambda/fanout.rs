//! The schedule's fan-out: one SQS message per mapping, sent with `SendMessageBatch` calls of
//! ten entries, several calls in flight at once.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::Error;
use super::handler::Handler;
use super::message::{ConfigRef, MESSAGE_VERSION, SyncMessage};
use super::metrics;
use crate::config::ConfigLocation;

/// SQS accepts at most this many entries per `SendMessageBatch`.
const SQS_BATCH: usize = 10;
/// Attempts for entries a `SendMessageBatch` answered as failed.
const SEND_ATTEMPTS: usize = 3;
/// `SendMessageBatch` calls in flight at once. One call takes a round trip of tens of
/// milliseconds, so one at a time holds 10,000 mappings to a thousand round trips in a row;
/// eight bring that to seconds while staying far below SQS's throughput per queue and the
/// SDK's connection pool.
pub(super) const SENDS_AT_ONCE: usize = 8;

/// What one `SendMessageBatch` answered: how many entries were accepted, and the ids of those
/// it refused.
pub(super) struct BatchAnswer {
    pub(super) successful: usize,
    pub(super) failed: Vec<String>,
}

/// Sends `messages` to `queue_url` in batches of [`SQS_BATCH`] through `send` (entries are
/// `(id, body)`), [`SENDS_AT_ONCE`] batches at a time, sending the entries a batch refused
/// again, up to [`SEND_ATTEMPTS`] times. Returns how many were accepted; the first batch that
/// fails ends the fan-out (the batches still in flight are dropped).
pub(super) async fn send_in_batches<F, Fut>(queue_url: &str, messages: &[SyncMessage], send: F) -> Result<usize, Error>
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: Future<Output = Result<BatchAnswer, Error>>,
{
    let send = &send;
    let mut batches =
        futures_util::stream::iter(messages.chunks(SQS_BATCH).map(|chunk| send_batch(queue_url, chunk, send)))
            .buffer_unordered(SENDS_AT_ONCE);
    let mut sent = 0;
    while let Some(accepted) = batches.next().await {
        sent += accepted?;
    }
    Ok(sent)
}

/// One batch, with its refused entries sent again.
async fn send_batch<F, Fut>(queue_url: &str, chunk: &[SyncMessage], send: &F) -> Result<usize, Error>
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: Future<Output = Result<BatchAnswer, Error>>,
{
    let mut pending: Vec<(String, String)> = chunk.iter().enumerate().map(|(i, m)| (i.to_string(), m.body())).collect();
    let mut sent = 0;
    for attempt in 1..=SEND_ATTEMPTS {
        let answer = send(pending.clone()).await?;
        sent += answer.successful;
        pending.retain(|(id, _)| answer.failed.contains(id));
        if pending.is_empty() {
            return Ok(sent);
        }
        tracing::warn!(attempt, failed = pending.len(), "some messages were not accepted; sending them again");
    }
    Err(Error::Refused { count: pending.len(), queue: queue_url.to_string(), attempts: SEND_ATTEMPTS })
}

impl Handler {
    /// The schedule: validate the config, then one message per mapping (or sync inline).
    pub(super) async fn schedule(&self, deadline: Instant) -> Result<Value, Error> {
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
}

/// A run id: time and randomness, enough to tell runs apart in logs.
pub(super) fn run_id() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("{millis:x}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::lambda::ConfigRef;

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
        let calls = Mutex::new(Vec::<Vec<String>>::new());
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
        assert_eq!(sent.unwrap(), 12);
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 3, "ten, the two refused again, then the last two: {calls:?}");
        assert_eq!(calls[0].len(), 10);
        assert_eq!(calls[1], ["3", "7"]);
        assert_eq!(calls[2], ["0", "1"]);
    }

    #[tokio::test]
    async fn entries_refused_every_time_fail_the_fan_out() {
        let attempts = AtomicUsize::new(0);
        let result = send_in_batches("q", &messages(2), |pending| {
            attempts.fetch_add(1, Ordering::SeqCst);
            let answer = BatchAnswer { successful: pending.len() - 1, failed: vec!["1".into()] };
            async move { Ok(answer) }
        })
        .await;
        assert_eq!(attempts.into_inner(), SEND_ATTEMPTS);
        let error = result.unwrap_err().to_string();
        assert_eq!(error, format!("1 messages were refused by q after {SEND_ATTEMPTS} attempts"));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_go_out_several_at_a_time_and_never_more_than_the_bound() {
        let (in_flight, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        let sent = send_in_batches("q", &messages(1000), |pending| {
            let (in_flight, most) = (&in_flight, &most);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // One round trip to SQS.
                tokio::time::sleep(Duration::from_millis(20)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(BatchAnswer { successful: pending.len(), failed: Vec::new() })
            }
        })
        .await;
        assert_eq!(sent.unwrap(), 1000);
        assert_eq!(most.into_inner(), SENDS_AT_ONCE, "a hundred batches, {SENDS_AT_ONCE} at a time");
        // 100 round trips of 20 ms in waves of 8: 13 waves, not 100 in a row.
        assert_eq!(started.elapsed(), Duration::from_millis(20 * 13));
    }
}
