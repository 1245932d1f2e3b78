//! What the engine reports: per image, and per target the outcome and the counts.

use serde::Serialize;

use super::{Live, StatsSnapshot};
use crate::oci::Digest;
use crate::registry::Registry;

/// The log target of the per-image outcome lines ([`ImageReport::log`]), so a subscriber can
/// set their level apart (a live view holds back the success lines until `-v`). It is the
/// module's own path, the target these lines have always had.
pub const IMAGE_OUTCOMES: &str = "ocync::engine::report";

/// What happened at one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Copied (some parts may already have been there).
    Synced,
    /// Nothing to do.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Failed; nothing was tagged.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether it was an authentication failure.
        #[serde(skip)]
        auth: bool,
    },
}

/// The result for one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// `registry/repository:tag`.
    pub target: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Blobs and bytes for this target.
    pub stats: StatsSnapshot,
    /// Time from the start of the image to this target's end.
    pub duration_ms: u64,
}

/// The result for one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// `registry/repository:tag`.
    pub source: String,
    /// The source digest, once known.
    pub digest: Option<Digest>,
    /// The digest pushed to the targets, when it is not the source's (a platform subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<Digest>,
    /// Who signed the source digest (`key sha256:…`, `keyless <issuer> <subject>`), when a
    /// `verify` policy checked it before copying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// What the user should know about this image (a rebuilt index is not what was signed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// One entry per target.
    pub targets: Vec<TargetReport>,
}

impl ImageReport {
    /// Logs the image's outcome at each target, once and with one wording whichever command
    /// copied it (`copy`, `sync`, watch mode, the Lambda): `image copied`, `image up to date`
    /// (debug), `image failed`; and each warning as `copied with a change`.
    pub fn log(&self) {
        let source = &self.source;
        for warning in &self.warnings {
            tracing::warn!(target: IMAGE_OUTCOMES, %source, %warning, "copied with a change");
        }
        let digest = self.digest.as_ref().map(ToString::to_string).unwrap_or_default();
        for target in &self.targets {
            let (target_label, stats) = (&target.target, &target.stats);
            match &target.outcome {
                Outcome::Synced => {
                    tracing::info!(target: IMAGE_OUTCOMES, %source, target = %target_label, %digest, blobs = stats.blobs_copied, bytes = stats.bytes, "image copied")
                }
                Outcome::Skipped { reason } => {
                    tracing::debug!(target: IMAGE_OUTCOMES, %source, target = %target_label, %digest, %reason, "image up to date")
                }
                Outcome::Failed { error, .. } => {
                    tracing::error!(target: IMAGE_OUTCOMES, %source, target = %target_label, %error, "image failed")
                }
            }
        }
    }
}

/// The report of one target, once its image is done.
pub(super) fn report_target<R: Registry>(live: &Live<'_, R>, duration_ms: u64) -> TargetReport {
    let failure = live.failure.lock().expect("failure lock poisoned").clone();
    let skipped = live.skipped.lock().expect("skip lock poisoned").clone();
    let stats = live.stats.snapshot();
    let outcome = match (failure, skipped) {
        (Some(error), _) => Outcome::Failed { error: error.to_string(), auth: error.is_auth() },
        // The image was in place, but referrers new upstream were brought along.
        (None, Some(_)) if stats.referrers_copied > 0 => Outcome::Synced,
        (None, Some(reason)) => Outcome::Skipped { reason },
        (None, None) => Outcome::Synced,
    };
    let target = live.target;
    TargetReport { target: label(target.registry, target.repository, &target.reference), outcome, stats, duration_ms }
}

/// `registry/repository:tag` or `registry/repository@digest`.
pub fn label<R: Registry>(registry: &R, repository: &str, reference: &str) -> String {
    format!("{}/{}", registry.name(), in_repository(repository, reference))
}

/// `repository:tag` or `repository@digest`.
pub(super) fn in_repository(repository: &str, reference: &str) -> String {
    let separator = if reference.contains(':') { '@' } else { ':' };
    format!("{repository}{separator}{reference}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_outcome_target_is_this_modules_path_so_log_output_is_unchanged() {
        assert_eq!(Some(super::IMAGE_OUTCOMES), module_path!().strip_suffix("::tests"));
    }
}
