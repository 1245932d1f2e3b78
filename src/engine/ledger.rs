//! What this run knows about blobs at its targets, so each blob is handled once per target
//! repository however many images need it, and can be mounted from where it already landed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::oci::Digest;

type Key = (String, String, Digest);
/// How a claim ended: `None` while it runs, then whether the blob was confirmed.
type Settled = watch::Receiver<Option<bool>>;

enum Slot {
    /// Some task is checking or transferring it; the receiver says how that ended.
    InFlight(watch::Receiver<Option<bool>>),
    /// Confirmed present at the target.
    Present,
}

/// Blob states by target registry, repository and digest.
#[derive(Default)]
pub struct BlobLedger {
    slots: Mutex<HashMap<Key, Slot>>,
    /// A repository per (registry, digest) where the blob is confirmed, for mounts.
    present: Mutex<HashMap<(String, Digest), String>>,
    /// A transfer of the blob under way to some repository of the registry: others wait for
    /// it and then mount, so the source is read once per registry.
    underway: Mutex<HashMap<(String, Digest), Settled>>,
    /// Registries that declined a mount in this run (warned about once each).
    declined_mounts: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for BlobLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobLedger").finish_non_exhaustive()
    }
}

/// The answer to [`BlobLedger::claim`].
pub enum Claim<'l> {
    /// Already confirmed at the target in this run.
    Present,
    /// Another task is on it: wait, then claim again.
    Wait(watch::Receiver<Option<bool>>),
    /// This task handles it and must report how that went.
    Owner(Owner<'l>),
}

/// The duty to handle one blob for one target repository. Dropping it unfinished (a failure
/// or a cancelled task) releases the blob so another task may try.
pub struct Owner<'l> {
    ledger: &'l BlobLedger,
    key: Key,
    sender: watch::Sender<Option<bool>>,
    finished: bool,
    /// Whether this claim is the registry-wide transfer others wait for.
    underway: bool,
}

impl BlobLedger {
    /// Records that `registry` declined a mount; `true` the first time in this run.
    pub fn first_declined_mount(&self, registry: &str) -> bool {
        self.declined_mounts.lock().expect("declined mounts lock poisoned").insert(registry.to_string())
    }

    /// Whether `registry` declined a mount in this run.
    pub fn declined_mounts_at(&self, registry: &str) -> bool {
        self.declined_mounts.lock().expect("declined mounts lock poisoned").contains(registry)
    }

    /// Claims `digest` for `registry`/`repository`. While another repository of the same
    /// registry is receiving the blob, the answer is to wait (and then mount from there).
    pub fn claim(&self, registry: &str, repository: &str, digest: &Digest) -> Claim<'_> {
        let key = (registry.to_string(), repository.to_string(), digest.clone());
        let mut slots = self.slots.lock().expect("ledger lock poisoned");
        match slots.get(&key) {
            Some(Slot::Present) => return Claim::Present,
            Some(Slot::InFlight(receiver)) => return Claim::Wait(receiver.clone()),
            None => {}
        }
        let mut underway = self.underway.lock().expect("ledger lock poisoned");
        let registry_key = (registry.to_string(), digest.clone());
        let present_elsewhere = self.present.lock().expect("ledger lock poisoned").contains_key(&registry_key);
        if !present_elsewhere && let Some(receiver) = underway.get(&registry_key) {
            return Claim::Wait(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        slots.insert(key.clone(), Slot::InFlight(receiver.clone()));
        let leads = !present_elsewhere;
        if leads {
            underway.insert(registry_key, receiver);
        }
        Claim::Owner(Owner { ledger: self, key, sender, finished: false, underway: leads })
    }

    /// `digest` is in `registry`/`repository`, seen there without a claim (a mount source
    /// found by asking): later claims elsewhere mount from it.
    pub fn found(&self, registry: &str, repository: &str, digest: &Digest) {
        let mut present = self.present.lock().expect("ledger lock poisoned");
        present.insert((registry.to_string(), digest.clone()), repository.to_string());
    }

    /// A repository of `registry` where `digest` is confirmed in this run, other than `except`.
    pub fn present_elsewhere(&self, registry: &str, digest: &Digest, except: &str) -> Option<String> {
        let present = self.present.lock().expect("ledger lock poisoned");
        present.get(&(registry.to_string(), digest.clone())).filter(|repository| *repository != except).cloned()
    }
}

impl Owner<'_> {
    /// The blob is at the target now.
    pub fn confirm(mut self) {
        let (registry, repository, digest) = self.key.clone();
        self.ledger.slots.lock().expect("ledger lock poisoned").insert(self.key.clone(), Slot::Present);
        self.ledger.present.lock().expect("ledger lock poisoned").insert((registry, digest), repository);
        self.settle(true);
    }

    fn settle(&mut self, confirmed: bool) {
        if self.underway {
            let (registry, _, digest) = self.key.clone();
            self.ledger.underway.lock().expect("ledger lock poisoned").remove(&(registry, digest));
        }
        self.sender.send_replace(Some(confirmed));
        self.finished = true;
    }
}

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.ledger.slots.lock().expect("ledger lock poisoned").remove(&self.key);
            self.settle(false);
        }
    }
}

/// Waits for another task's claim to end.
pub async fn settled(mut receiver: watch::Receiver<Option<bool>>) {
    let _ = receiver.wait_for(Option::is_some).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::sha256_of(b"layer")
    }

    #[test]
    fn the_first_claim_owns_and_later_ones_wait_or_see_it_present() {
        let ledger = BlobLedger::default();
        let Claim::Owner(owner) = ledger.claim("r", "a", &digest()) else { panic!("first claim owns") };
        assert!(matches!(ledger.claim("r", "a", &digest()), Claim::Wait(_)));
        assert!(matches!(ledger.claim("r", "b", &digest()), Claim::Wait(_)), "another repository waits to mount");
        assert!(matches!(ledger.claim("other", "a", &digest()), Claim::Owner(_)), "other registries are separate");
        owner.confirm();
        assert!(matches!(ledger.claim("r", "a", &digest()), Claim::Present));
        assert!(matches!(ledger.claim("r", "b", &digest()), Claim::Owner(_)), "now it can be mounted");
        assert_eq!(ledger.present_elsewhere("r", &digest(), "c").as_deref(), Some("a"));
        assert_eq!(ledger.present_elsewhere("r", &digest(), "a"), None);
    }

    #[test]
    fn a_dropped_claim_releases_the_blob() {
        let ledger = BlobLedger::default();
        let Claim::Owner(owner) = ledger.claim("r", "a", &digest()) else { panic!("first claim owns") };
        let Claim::Wait(receiver) = ledger.claim("r", "a", &digest()) else { panic!("second waits") };
        drop(owner);
        assert_eq!(*receiver.borrow(), Some(false));
        assert!(matches!(ledger.claim("r", "a", &digest()), Claim::Owner(_)));
    }
}
