//! The engine's side of `verify`: before anything of an image is written to the targets that
//! lack it, its source digest must carry a signature the policy trusts. Targets that already
//! have the digest cost no verification (it was checked when it was copied), and a digest
//! under several tags is verified once per run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::supply_chain::Extras;
use super::{Engine, Error, ImageJob, Live, label};
use crate::oci::Digest;
use crate::registry::Registry;
use crate::verify::{self, Mode, Policy, Verdict};

/// Verdicts of one run by registry, repository, digest and whom the policy trusts: concurrent
/// checks of the same digest wait for one.
#[derive(Default)]
pub(super) struct Verdicts {
    cells: Mutex<HashMap<VerdictKey, Arc<OnceCell<Verdict>>>>,
}

/// Registry name, repository, digest, and [`Policy::trusted`].
type VerdictKey = (String, String, Digest, String);

impl Verdicts {
    async fn check<R: Registry>(&self, registry: &R, repository: &str, digest: &Digest, policy: &Policy) -> Verdict {
        let key = (registry.name().to_string(), repository.to_string(), digest.clone(), policy.trusted());
        let cell = self.cells.lock().expect("verdict memo lock poisoned").entry(key).or_default().clone();
        cell.get_or_init(|| verify::check(registry, repository, digest, policy)).await.clone()
    }
}

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
        match self.verdicts.check(source.registry, source.repository, digest, policy).await {
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
