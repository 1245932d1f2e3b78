//! The Lambda function: one handler for three kinds of invocation (design.md §4).
//!
//! - An EventBridge schedule (a `Scheduled Event`, or the Scheduler input `{"ocync": "schedule"}`)
//!   loads and validates the config from `OCYNC_CONFIG` and sends one SQS message per mapping to
//!   `OCYNC_QUEUE_URL`; without a queue it syncs every mapping inline.
//! - An SQS event syncs the mapping of each record and answers `batchItemFailures` with the
//!   records that failed or did not finish, so SQS redelivers exactly those.
//! - A direct invocation, `{"sync": "all"}` or one mapping message, syncs inline
//!   (handy for `cargo lambda invoke`).
//!
//! `bin/lambda.rs` only builds a [`Handler`] once per container and calls [`Handler::handle`].

mod handler;
mod message;

pub use handler::{Handler, Invocation, classify};
pub use message::{ConfigRef, MESSAGE_VERSION, MessageError, SyncMessage};
