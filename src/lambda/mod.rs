//! The Lambda function: one handler for three kinds of invocation.
//!
//! - An EventBridge schedule (a `Scheduled Event`, or the Scheduler input `{"ocync": "schedule"}`)
//!   loads and validates the config from `OCYNC_CONFIG` and sends one SQS message per mapping to
//!   `OCYNC_QUEUE_URL`, several `SendMessageBatch` calls at once; without a queue it syncs every mapping inline.
//! - An SQS event syncs the mapping of each record. A record whose mapping is done is deleted;
//!   one still unfinished at the deadline after progress is continued through a new message
//!   on the same queue (its body today's message, its count a message attribute); the others are answered as `batchItemFailures`, so
//!   SQS redelivers exactly those.
//! - A direct invocation, `{"sync": "all"}` or one mapping message, syncs inline
//!   (handy for `cargo lambda invoke`).
//!
//! - Every invocation prints its metrics (images, bytes, continuations, fan-out size, mirror lag
//!   per mapping) as CloudWatch Embedded Metric Format lines on stdout ([`metrics`]).
//!
//! `bin/lambda.rs` only builds a [`Handler`] once per container and calls [`Handler::handle`].

mod continuation;
mod deadline;
mod error;
mod fanout;
mod handler;
pub mod message;
pub mod metrics;
pub mod settings;
mod worker;

pub use error::Error;
pub use handler::{Handler, Invocation, classify};
pub use message::{CONTINUATION_ATTRIBUTE, ConfigRef, MESSAGE_VERSION, SyncMessage, continuation_count};
pub use settings::{CONTINUATION_MIN_BYTES, MAX_CONTINUATIONS, Settings};
