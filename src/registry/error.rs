//! Errors of registry operations, classified so retry logic and exit codes never match strings.

use std::time::Duration;

use crate::oci::{Digest, ManifestError};

/// A failed registry operation. Every variant names the registry and, where there is one, the
/// repository; none carries credentials or tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest, blob or repository does not exist.
    #[error("{what} not found in {registry}/{repository}")]
    NotFound {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What was looked for (`manifest latest`, `blob sha256:…`).
        what: String,
    },
    /// The registry refused the credentials, or they are missing.
    #[error("{registry} denied access to {repository} ({status}): {detail}")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// HTTP status (401 or 403).
        status: u16,
        /// The registry's error text, if any.
        detail: String,
    },
    /// Not attempted now, to stay within a registry's quota (Docker Hub's pull budget).
    #[error("deferred: {registry} {reason}; {repository} was not pulled")]
    Deferred {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// Why.
        reason: String,
    },
    /// Credentials could not be obtained from the platform (ECR, GCP, Azure).
    #[error("cannot obtain credentials for {registry}: {detail}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// What the provider said (never a secret).
        detail: String,
    },
    /// 429, or 503 with a `Retry-After`.
    #[error("{registry} throttled requests for {repository} ({status})")]
    Throttled {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// HTTP status.
        status: u16,
        /// How long the registry asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Any other unexpected HTTP status.
    #[error("{registry} answered {status} to {action} in {repository}: {detail}")]
    Status {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What was attempted (`PUT manifest v1`).
        action: String,
        /// HTTP status.
        status: u16,
        /// The registry's error text, if any (truncated).
        detail: String,
    },
    /// Connection refused or reset, DNS, TLS, or a body that broke off.
    #[error("network error talking to {registry} ({action} in {repository}): {}", crate::text::error_chain(source))]
    Network {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What was attempted.
        action: String,
        /// The underlying error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// A request or a body transfer made no progress for too long.
    #[error("timed out talking to {registry} ({action} in {repository}) after {after:?}")]
    Timeout {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What was attempted.
        action: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Blob bytes did not hash to their digest.
    #[error("blob {expected} from {registry}/{repository} is corrupt: {reason}")]
    BlobCorrupt {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// The digest the blob should have.
        expected: Digest,
        /// What differed (digest or length).
        reason: String,
    },
    /// A manifest could not be used (digest mismatch, malformed JSON).
    #[error("manifest {reference} in {registry}/{repository}: {source}")]
    Manifest {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// Tag or digest.
        reference: String,
        /// What is wrong with it (boxed: it is large and rare).
        #[source]
        source: Box<ManifestError>,
    },
    /// The registry answered something that breaks the protocol (e.g. no `Location`).
    #[error("{registry} sent an invalid response to {action} in {repository}: {detail}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What was attempted.
        action: String,
        /// What was wrong.
        detail: String,
    },
    /// The source stream feeding this upload failed (the same blob was going to several
    /// targets at once).
    #[error("source stream failed: {detail}")]
    SourceFailed {
        /// The source's error.
        detail: String,
        /// Whether the source's error was worth retrying.
        retryable: bool,
    },
    /// The registry refused a single-request upload; this client now uploads to it in chunks,
    /// so the transfer is worth retrying.
    #[error("{registry} refused a single-request upload to {repository} ({status}); switching to chunked uploads")]
    ChunkedUploadRequired {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// The status that refused it.
        status: u16,
    },
    /// The registry refused a single-request upload and takes no chunked uploads either
    /// (GAR, GCR), so there is nothing to fall back to.
    #[error(
        "{registry} refused a single-request upload to {repository} ({status}); it does not accept chunked uploads (a GAR/GCR quirk), so ocync does not switch to them"
    )]
    MonolithicUploadRefused {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// The status that refused it.
        status: u16,
    },
    /// A cloud control plane refused the caller's identity or permissions (ECR answering
    /// `AccessDeniedException` to `CreateRepository`, say).
    #[error("{registry} control plane denied {call} for {repository}: {detail}")]
    Denied {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// The API call refused (`CreateRepository`).
        call: String,
        /// What the control plane said (never a secret).
        detail: String,
    },
    /// The tag is immutable at the target (an ECR repository with `IMMUTABLE` tags) and already
    /// points to another digest, so the registry refused to move it.
    #[error(
        "{registry}/{repository}: tag {tag} is immutable and already points to another digest; \
         it was not overwritten ({detail})"
    )]
    TagImmutable {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// The tag that could not be moved.
        tag: String,
        /// What the registry said.
        detail: String,
    },
    /// A name (tag, digest, repository) is not safe to put in a request path: it breaks the
    /// OCI grammar, or the URL built from it would leave `/v2/<repository>/`.
    #[error("refused a request to {registry}/{repository}: {reason}")]
    UnsafeName {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// Which name and what is wrong with it.
        reason: String,
    },
    /// The registry pointed a request of an HTTPS registry (an upload `Location`, a `Link`, a
    /// redirect, a token realm) at plain HTTP; refused, so nothing travels in clear.
    #[error("{registry} pointed {action} in {repository} from https to plain http ({to}); refused")]
    Downgrade {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What was attempted.
        action: String,
        /// The origin (`http://host:port`) it pointed at; no path, which may carry upload state.
        to: String,
    },
    /// Setting up the client or credentials failed (bad CA file, credential helper error).
    #[error("registry {registry}: {detail}")]
    Setup {
        /// Registry host.
        registry: String,
        /// What failed.
        detail: String,
    },
}

impl Error {
    /// Worth trying again: throttling, 5xx, network failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Throttled { .. }
            | Error::Network { .. }
            | Error::Timeout { .. }
            | Error::ChunkedUploadRequired { .. } => true,
            // 501 Not Implemented is an answer, not a passing fault.
            Error::Status { status, .. } => *status >= 500 && *status != 501,
            Error::SourceFailed { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The registry does not serve the route asked for (400, 405, 501): how registries without
    /// an optional API (the OCI 1.1 referrers API) answer besides 404.
    pub fn is_unsupported_route(&self) -> bool {
        matches!(self, Error::Status { status: 400 | 405 | 501, .. })
    }

    /// Credentials were missing or refused.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Unauthorized { .. } | Error::Credentials { .. } | Error::Denied { .. })
    }

    /// Recognises a registry's refusal to move an immutable tag in the answer to a manifest PUT
    /// by tag: ECR answers 400 `TAG_INVALID` ("… already exists … cannot be overwritten because
    /// the repository is immutable"), its API names it `ImageTagAlreadyExistsException`. Other
    /// errors are returned unchanged (a plain `TAG_INVALID` is a malformed tag, not this).
    pub fn for_tag_push(self, tag: &str) -> Error {
        match self {
            Error::Status { registry, repository, status: 400, detail, .. } if is_immutable_tag_refusal(&detail) => {
                Error::TagImmutable { registry, repository, tag: tag.to_string(), detail }
            }
            other => other,
        }
    }

    /// How long the registry asked to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn is_immutable_tag_refusal(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("imagetagalreadyexistsexception")
        || (lower.contains("tag_invalid") && (lower.contains("immutable") || lower.contains("already exists")))
}

/// Shorthand for registry results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, detail: &str) -> Error {
        Error::Status {
            registry: "ecr".into(),
            repository: "app".into(),
            action: "PUT manifest v1".into(),
            status,
            detail: detail.into(),
        }
    }

    #[test]
    fn ecr_immutable_tag_refusals_are_recognised() {
        // What ECR's data plane answers (as `error_detail` renders it), and the API's exception name.
        let ecr = "TAG_INVALID: The image tag 'v1' already exists in the 'app' repository and cannot be \
                   overwritten because the repository is immutable.";
        for detail in [ecr, "ImageTagAlreadyExistsException: The image tag 'v1' already exists"] {
            let error = status(400, detail).for_tag_push("v1");
            assert!(matches!(&error, Error::TagImmutable { tag, .. } if tag == "v1"), "{error:?}");
            let message = error.to_string();
            assert!(message.contains("ecr/app: tag v1 is immutable"), "{message}");
            assert!(!error.is_retryable() && !error.is_auth());
        }
    }

    #[test]
    fn other_manifest_put_failures_are_left_alone() {
        // A malformed tag, a different status, a 5xx: not an immutable-tag conflict.
        let malformed = status(400, "TAG_INVALID: manifest tag did not match URI").for_tag_push("v1");
        assert!(matches!(malformed, Error::Status { status: 400, .. }));
        let server = status(500, "TAG_INVALID: already exists, immutable").for_tag_push("v1");
        assert!(matches!(server, Error::Status { status: 500, .. }) && server.is_retryable());
    }
}
