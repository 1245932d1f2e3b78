//! The SQS message of the fan-out: one mapping per message, no secrets inside.
//!
//! ```json
//! {"version": 1, "run_id": "…", "config": {"bucket": "b", "key": "ocync.yaml", "version_id": "…"},
//!  "mapping": 3, "mapping_key": "chainguard/nginx -> nginx"}
//! ```
//!
//! Compatibility during a rolling deployment, where workers of two builds read one queue:
//! writers only add optional fields or message attributes, readers ignore fields they do not
//! know, and a change an older reader would misread bumps `version` (which readers refuse).
//! A continuation ([`CONTINUATION_ATTRIBUTE`]) is therefore today's body plus an attribute: a
//! worker of the previous build syncs it as a first delivery.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::SqsMessageAttribute;
use serde::{Deserialize, Serialize};

/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// The SQS message attribute (DataType `Number`) counting how many continuations led to this
/// message; absent on the schedule's own messages, which count as 0.
pub const CONTINUATION_ATTRIBUTE: &str = "ocync-continuation";

/// The config the message was planned from. A worker accepts only its own `OCYNC_CONFIG`
/// here and reloads that; a message naming any other object fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRef {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Object version at planning time, when the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// One mapping to sync. Unknown fields are ignored, so a newer writer can add optional ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    /// Always [`MESSAGE_VERSION`].
    pub version: u32,
    /// The scheduled run that sent it.
    pub run_id: String,
    /// The config.
    pub config: ConfigRef,
    /// Position of the mapping in the config.
    pub mapping: usize,
    /// `from -> to` of that mapping when the message was sent; a mismatch means the config
    /// changed in between, and the message is refused rather than syncing the wrong thing.
    pub mapping_key: String,
}

/// Why a message is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, or not this shape.
    #[error("malformed message: {reason}")]
    Malformed {
        /// What the parser said.
        reason: String,
    },
    /// Another format version.
    #[error("unsupported message version {version} (this build reads version {MESSAGE_VERSION})")]
    Version {
        /// The version the message carries.
        version: u32,
    },
    /// The continuation count attribute is not a whole number.
    #[error("message attribute {CONTINUATION_ATTRIBUTE} is `{value}`, not a whole number")]
    Continuation {
        /// What the attribute held.
        value: String,
    },
}

impl SyncMessage {
    /// Parses and checks a message body.
    pub fn parse(body: &str) -> Result<SyncMessage, Error> {
        let message: SyncMessage =
            serde_json::from_str(body).map_err(|e| Error::Malformed { reason: e.to_string() })?;
        if message.version != MESSAGE_VERSION {
            return Err(Error::Version { version: message.version });
        }
        Ok(message)
    }

    /// The body this build writes (also for continuations, so older workers read them).
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("messages serialise")
    }
}

/// How many continuations led to a record, from its message attributes: 0 without the
/// attribute (a message of the schedule, or of a build before continuations).
pub fn continuation_count(attributes: &HashMap<String, SqsMessageAttribute>) -> Result<u32, Error> {
    let Some(attribute) = attributes.get(CONTINUATION_ATTRIBUTE) else {
        return Ok(0);
    };
    let value = attribute.string_value.clone().unwrap_or_default();
    value.trim().parse().map_err(|_| Error::Continuation { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_documented_shape() {
        let body = r#"{"version": 1, "run_id": "r1", "config": {"bucket": "b", "key": "ocync.yaml", "version_id": "v"}, "mapping": 3, "mapping_key": "chainguard/nginx -> nginx"}"#;
        let message = SyncMessage::parse(body).unwrap();
        assert_eq!(message.mapping, 3);
        assert_eq!(SyncMessage::parse(&message.body()).unwrap(), message);
    }

    #[test]
    fn refuses_bad_bodies_with_a_reason() {
        assert!(matches!(SyncMessage::parse("not json"), Err(Error::Malformed { .. })));
        let missing = SyncMessage::parse(r#"{"version": 1}"#).unwrap_err().to_string();
        assert!(missing.contains("missing field"), "{missing}");
        let future = r#"{"version": 2, "run_id": "r", "config": {"bucket": "b", "key": "k"}, "mapping": 0, "mapping_key": "a -> a"}"#;
        assert_eq!(SyncMessage::parse(future), Err(Error::Version { version: 2 }));
    }

    #[test]
    fn fields_a_newer_writer_adds_are_ignored() {
        let body = r#"{"version": 1, "run_id": "r", "config": {"bucket": "b", "key": "k", "region": "x"}, "mapping": 0, "mapping_key": "a -> a", "priority": "high"}"#;
        let message = SyncMessage::parse(body).unwrap();
        assert_eq!((message.mapping, message.config.key.as_str()), (0, "k"));
        assert!(!message.body().contains("priority"), "this build writes only the fields it knows");
    }

    fn attribute(value: &str) -> HashMap<String, SqsMessageAttribute> {
        let mut attribute = SqsMessageAttribute::default();
        attribute.string_value = Some(value.into());
        attribute.data_type = Some("Number".into());
        [(CONTINUATION_ATTRIBUTE.to_string(), attribute)].into()
    }

    #[test]
    fn the_continuation_count_is_read_from_its_attribute() {
        assert_eq!(continuation_count(&HashMap::new()), Ok(0), "no attribute: a first delivery");
        assert_eq!(continuation_count(&attribute("7")), Ok(7));
        let error = continuation_count(&attribute("seven")).unwrap_err().to_string();
        assert_eq!(error, "message attribute ocync-continuation is `seven`, not a whole number");
    }
}
