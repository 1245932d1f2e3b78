//! Why an invocation, or one of its records, was refused or failed. Each error says what and
//! where (config location, mapping, queue) and never carries a credential; it converts into the
//! runtime's [`lambda_runtime::Diagnostic`], whose `errorType` names the kind.

use crate::config::ConfigLocation;

/// An invocation's or a record's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event has none of the documented shapes.
    #[error("unrecognised event: expected a schedule, an SQS event, {{\"sync\": \"all\"}} or a mapping message")]
    UnrecognisedEvent,
    /// An event with `Records` that is not an SQS event.
    #[error("malformed SQS event: {0}")]
    MalformedEvent(String),
    /// A message body or attribute that cannot be read.
    #[error(transparent)]
    Message(#[from] super::message::Error),
    /// `OCYNC_CONFIG` is missing.
    #[error("OCYNC_CONFIG is not set (expected s3://bucket/key)")]
    NoConfig,
    /// A setting from the environment that cannot be read.
    #[error(transparent)]
    Settings(#[from] super::settings::Error),
    /// `OCYNC_METRICS_NAMESPACE` names no valid CloudWatch namespace.
    #[error(transparent)]
    Metrics(#[from] super::metrics::Error),
    /// The config cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// A message naming another config than the function's own.
    #[error(
        "the message names the config {named}, but this function reads only {own} (OCYNC_CONFIG); \
         refused, nothing synced for it"
    )]
    ForeignConfig {
        /// What the message names.
        named: ConfigLocation,
        /// `OCYNC_CONFIG`.
        own: ConfigLocation,
    },
    /// The message's mapping is not in the config any more.
    #[error("the config has no mapping {index} (it has {count}); it changed after the run was planned")]
    NoMapping {
        /// The message's mapping index.
        index: usize,
        /// Mappings in the config now.
        count: usize,
    },
    /// The mapping at the message's index is another one now.
    #[error("mapping {index} is now `{now}`, not `{named}`: the config changed after the run was planned")]
    MappingChanged {
        /// The message's mapping index.
        index: usize,
        /// The key the config has there now.
        now: String,
        /// The key the message names.
        named: String,
    },
    /// A fan-out from a config that is not in S3 (messages name an S3 object).
    #[error("fan-out needs the config in S3 (OCYNC_CONFIG=s3://bucket/key)")]
    FanOutNeedsS3,
    /// A continuation without a queue to send it to.
    #[error("no queue to continue on (OCYNC_QUEUE_URL is not set)")]
    NoQueue,
    /// An SQS call failed.
    #[error("{call} to {queue}: {reason}")]
    Sqs {
        /// `SendMessage` or `SendMessageBatch`.
        call: &'static str,
        /// The queue URL.
        queue: String,
        /// What SQS or the SDK said.
        reason: String,
    },
    /// Entries SQS refused every time.
    #[error("{count} messages were refused by {queue} after {attempts} attempts")]
    Refused {
        /// Entries still refused.
        count: usize,
        /// The queue URL.
        queue: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The deadline came before the record's run had a report.
    #[error("unfinished at the invocation deadline")]
    Unfinished,
    /// The run could not go ahead.
    #[error(transparent)]
    Run(#[from] crate::sync::Error),
}

impl Error {
    /// A short, stable name of the kind, the `errorType` the Lambda runtime reports.
    fn kind(&self) -> &'static str {
        match self {
            Error::UnrecognisedEvent | Error::MalformedEvent(_) => "ocync.EventRefused",
            Error::Message(_)
            | Error::ForeignConfig { .. }
            | Error::NoMapping { .. }
            | Error::MappingChanged { .. } => "ocync.MessageRefused",
            Error::NoConfig | Error::Settings(_) | Error::Metrics(_) | Error::FanOutNeedsS3 | Error::NoQueue => {
                "ocync.Setup"
            }
            Error::Config(_) => "ocync.ConfigRefused",
            Error::Sqs { .. } | Error::Refused { .. } => "ocync.Queue",
            Error::Unfinished | Error::Run(_) => "ocync.Run",
        }
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(error: Error) -> Self {
        lambda_runtime::Diagnostic { error_type: error.kind().to_string(), error_message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagnostic_names_the_kind_and_says_what_failed() {
        let diagnostic = lambda_runtime::Diagnostic::from(Error::NoMapping { index: 4, count: 2 });
        assert_eq!(diagnostic.error_type, "ocync.MessageRefused");
        assert_eq!(
            diagnostic.error_message,
            "the config has no mapping 4 (it has 2); it changed after the run was planned"
        );
    }
}
