//! The SQS message of the fan-out (design.md §4): one mapping per message, no secrets inside.
//!
//! ```json
//! {"version": 1, "run_id": "…", "config": {"bucket": "b", "key": "ocync.yaml", "version_id": "…"},
//!  "mapping": 3, "mapping_key": "chainguard/nginx -> nginx"}
//! ```

use serde::{Deserialize, Serialize};

/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// The config the message was planned from. A worker accepts only its own `OCYNC_CONFIG`
/// here and reloads that; a message naming any other object fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRef {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Object version at planning time, when the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// One mapping to sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Why a message body is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// Not JSON, or not this shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Another format version.
    #[error("unsupported message version {0} (this build reads version {MESSAGE_VERSION})")]
    Version(u32),
}

impl SyncMessage {
    /// Parses and checks a message body.
    pub fn parse(body: &str) -> Result<SyncMessage, MessageError> {
        let message: SyncMessage = serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if message.version != MESSAGE_VERSION {
            return Err(MessageError::Version(message.version));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_documented_shape() {
        let body = r#"{"version": 1, "run_id": "r1", "config": {"bucket": "b", "key": "ocync.yaml", "version_id": "v"}, "mapping": 3, "mapping_key": "chainguard/nginx -> nginx"}"#;
        let message = SyncMessage::parse(body).unwrap();
        assert_eq!(message.mapping, 3);
        assert_eq!(SyncMessage::parse(&serde_json::to_string(&message).unwrap()).unwrap(), message);
    }

    #[test]
    fn refuses_bad_bodies_with_a_reason() {
        assert!(matches!(SyncMessage::parse("not json"), Err(MessageError::Malformed(_))));
        let missing = SyncMessage::parse(r#"{"version": 1}"#).unwrap_err().to_string();
        assert!(missing.contains("missing field"), "{missing}");
        let future = r#"{"version": 2, "run_id": "r", "config": {"bucket": "b", "key": "k"}, "mapping": 0, "mapping_key": "a -> a"}"#;
        assert_eq!(SyncMessage::parse(future), Err(MessageError::Version(2)));
    }
}
