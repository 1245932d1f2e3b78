//! The engine's side of `verify`: before anything of an image is written to the targets that
//! lack it, its source digest must carry a signature the policy trusts. Targets that already
//! have the digest cost no verification (it was checked when it was copied).

use std::sync::Arc;

use super::supply_chain::Extras;
use super::{Engine, Error, ImageJob, Live, label};
use crate::oci::Digest;
use crate::registry::Registry;
use crate::verify::{self, Mode, Verdict};

impl Engine {
    /// Whether the image may go to `pending` (the targets lacking it): yes without a policy,
    /// when a signature over `digest` verifies (its signer goes to the report), or under
    /// `mode: warn` (with a warning). Otherwise every pending target fails `unverified`.
    pub(super) async fn admitted<R: Registry>(
        &self,
        job: &ImageJob<'_, R>,
        digest: &Digest,
        pending: &[&Live<'_, R>],
        extras: &mut Extras,
    ) -> bool {
        let Some(policy) = job.verify.filter(|policy| policy.mode != Mode::Off) else {
            return true;
        };
        if pending.is_empty() {
            return true;
        }
        let source = &job.source;
        match verify::check(source.registry, source.repository, digest, policy).await {
            Verdict::Verified { signer } => {
                extras.signer = Some(signer);
                true
            }
            Verdict::Unverified { reason } if policy.mode == Mode::Warn => {
                extras.warnings.push(format!("unverified: {reason}; copied because verify.mode is warn"));
                true
            }
            Verdict::Unverified { reason } => {
                let reference = label(source.registry, source.repository, &source.reference);
                let error = Arc::new(Error::Unverified { reference, reason });
                pending.iter().for_each(|live| live.fail(error.clone()));
                false
            }
        }
    }
}
