//! Why credentials could not be obtained: the error of every credential provider (ECR, Google,
//! Azure) and of the token endpoints they call. Messages name the file, variable or request
//! step, never a secret.

use std::path::Path;

/// Why a credential provider produced no credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A credentials file (a Google ADC file, the Azure federated token file) cannot be used.
    #[error("the {what} {path} {problem}")]
    File {
        /// What the file is (`Google credentials file`, `service account key`).
        what: &'static str,
        /// The file, as named.
        path: String,
        /// What is wrong with it, worded to follow the path.
        problem: String,
    },
    /// An environment variable points at something unusable.
    #[error("{variable} is set: {source}")]
    Variable {
        /// The variable (`GOOGLE_APPLICATION_CREDENTIALS`).
        variable: &'static str,
        /// What is wrong with what it names.
        source: Box<Error>,
    },
    /// A token request could not be sent or its answer not read.
    #[error("{step} failed: {detail}")]
    Request {
        /// The request (`Entra ID token request (POST https://…)`).
        step: String,
        /// The transport error and its causes.
        detail: String,
    },
    /// A token request got no complete answer in time.
    #[error("{step} timed out")]
    Timeout {
        /// The request.
        step: String,
    },
    /// A token endpoint answered with an error status.
    #[error("{step} answered {status}{}", quote(detail))]
    Refused {
        /// The request.
        step: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The server's reason, secrets masked and control characters escaped; may be empty.
        detail: String,
    },
    /// A token endpoint answered 2xx with something that is not the expected token.
    #[error("{step}: {problem}")]
    Answer {
        /// The request.
        step: String,
        /// What is wrong with the answer.
        problem: String,
    },
    /// The platform's own API or library refused or failed (ECR, google-cloud-auth, signing).
    #[error("{detail}")]
    Platform {
        /// What it said, with its causes.
        detail: String,
    },
    /// A provider failed; names the provider (`ECR GetAuthorizationToken in us-east-1`).
    #[error("{provider}: {source}")]
    Provider {
        /// What was asked.
        provider: String,
        /// Why it failed.
        source: Box<Error>,
    },
}

/// `: detail`, or nothing for an empty detail.
fn quote(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

impl Error {
    /// A file error for `path`.
    pub(crate) fn file(what: &'static str, path: &Path, problem: impl Into<String>) -> Error {
        Error::File { what, path: path.display().to_string(), problem: problem.into() }
    }

    /// A platform error from its text.
    pub(crate) fn platform(detail: impl Into<String>) -> Error {
        Error::Platform { detail: detail.into() }
    }
}
