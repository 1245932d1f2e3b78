//! The SQS worker: each record of a batch synced under the invocation's deadline, then answered
//! as done, continued (see [`super::continuation`]) or a batch item failure for SQS to
//! redeliver.

use std::time::{Instant, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;

use super::Error;
use super::continuation::{Decision, Progress, Redelivery, decide};
use super::deadline::Scope;
use super::handler::{Handler, run_started};
use super::message::{CONTINUATION_ATTRIBUTE, SyncMessage, continuation_count};
use super::metrics;
use crate::sync::SyncReport;

impl Handler {
    /// Syncs the mapping of each record, then answers each: done, continued (see
    /// [`super::continuation`]), or a batch item failure for SQS to redeliver.
    pub(super) async fn sqs_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
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
