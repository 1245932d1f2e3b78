//! The per-blob pipeline of the engine: for one blob of an image and the targets that need
//! it, settle the run's [`BlobLedger`](super::BlobLedger) claim, ask the target (or its bulk
//! answer) whether the blob is there, mount it from another repository of the same registry
//! (one the run knows holds it, or one [`peers`](super::peers) finds by asking), and otherwise
//! stream it from the source to every target at once ([`tee`](super::tee)), retrying
//! retryable failures from the source. Once the run is cancelled no transfer starts:
//! not one waiting for a slot under the concurrency limits, nor a retry; transfers already
//! reading the source finish (or are abandoned when the grace period runs out).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};

use super::ledger::{self, Claim, Owner};
use super::stats::Event;
use super::{Engine, Error, Live, Source, tee};
use crate::oci::BlobDescriptor;
use crate::registry::{BlobStream, MountOutcome, Presence, Registry, UploadSession};

/// Attempts per blob transfer (a failed attempt restarts from the source).
const BLOB_ATTEMPTS: u32 = 3;

/// What [`Engine::prepare_blob`] decided for one target.
enum Preparation<'l, 'j, R> {
    /// Nothing to send (present, mounted, or failed).
    Done,
    /// Upload it, in `session` if the registry opened one.
    Upload(Owner<'l>, &'j Live<'j, R>, Option<UploadSession>),
    /// Another image is handling this blob for this repository: ask again when it is done.
    Busy(&'j Live<'j, R>, tokio::sync::watch::Receiver<Option<bool>>),
}

impl Engine {
    /// Gets one blob to every target that lacks it, reading the source at most once per
    /// attempt. Claims held by this task are settled before it waits on anyone else's, so two
    /// images sharing blobs and targets cannot wait on each other.
    pub(super) async fn copy_blob<R: Registry>(
        &self,
        source: &Source<'_, R>,
        blob: &BlobDescriptor,
        lives: &[&Live<'_, R>],
    ) {
        let mut todo: Vec<&Live<R>> = lives.iter().copied().filter(|live| !live.failed()).collect();
        while !todo.is_empty() {
            let preparations =
                futures_util::future::join_all(todo.iter().map(|live| self.prepare_blob(source, blob, live))).await;
            let mut uploads = Vec::new();
            let mut busy = Vec::new();
            for preparation in preparations {
                match preparation {
                    Preparation::Done => {}
                    Preparation::Upload(owner, live, session) => uploads.push((owner, live, session)),
                    Preparation::Busy(live, receiver) => busy.push((live, receiver)),
                }
            }
            if !uploads.is_empty() {
                if self.cancel.is_cancelled() {
                    uploads.iter().for_each(|(_, live, _)| live.fail(Arc::new(Error::Cancelled)));
                } else {
                    self.transfer(source, blob, uploads).await;
                }
            }
            todo = Vec::new();
            for (live, receiver) in busy {
                ledger::settled(receiver).await;
                todo.push(live);
            }
        }
    }

    /// Decides for one target: present (the ledger or the target says so), mounted from
    /// another repository of the target registry, busy with another image, or to upload.
    async fn prepare_blob<'l, 'j, R: Registry>(
        &'l self,
        source: &Source<'_, R>,
        blob: &BlobDescriptor,
        live: &'j Live<'j, R>,
    ) -> Preparation<'l, 'j, R> {
        let target = live.target;
        let registry_name = target.registry.name();
        let owner = match self.ledger.claim(registry_name, target.repository, &blob.digest) {
            Claim::Present => {
                self.stats.unexpect_bytes(blob.size);
                self.record(live, Event::Skipped);
                return Preparation::Done;
            }
            Claim::Wait(receiver) => return Preparation::Busy(live, receiver),
            Claim::Owner(owner) => owner,
        };
        let known = live.known.lock().expect("known lock poisoned").get(&blob.digest).copied();
        let known_source =
            self.ledger.present_elsewhere(registry_name, &blob.digest, target.repository).or_else(|| {
                (target.registry.same_registry(source.registry) && target.repository != source.repository)
                    .then(|| source.repository.to_string())
            });
        // With a repository known to hold it, the mount request is the existence check too
        // (201 whether or not the target already had it), unless the registry declines mounts.
        let mount_first = known.is_none() && known_source.is_some() && !self.ledger.declined_mounts_at(registry_name);
        let mut session = None;
        if !mount_first {
            let presence = match known {
                Some(true) => Ok(Presence::Present),
                Some(false) => Ok(Presence::Absent(None)),
                None => target.registry.check_before_upload(target.repository, &blob.digest).await,
            };
            match presence {
                Ok(Presence::Present) => return self.settled(owner, live, blob, Event::Skipped),
                Ok(Presence::Absent(opened)) => {
                    self.peers.lacks(registry_name, target.repository, &blob.digest);
                    session = opened;
                }
                Err(error) => {
                    live.fail(Arc::new(error.into()));
                    return Preparation::Done;
                }
            }
        }
        let mount_from = match known_source {
            Some(from) => Some(from),
            None => self.probe_mount_source(target.registry, target.repository, &blob.digest).await,
        };
        if let Some(from) = mount_from {
            match target.registry.mount_blob(target.repository, &blob.digest, &from).await {
                Ok(MountOutcome::Mounted) => return self.settled(owner, live, blob, Event::Mounted),
                Ok(MountOutcome::NotMounted(opened)) => {
                    self.mount_declined(live, &blob.digest, &from);
                    // Asked instead of checked, and the registry does not mount: check now,
                    // as a blob already at the target is never uploaded again.
                    if mount_first
                        && matches!(target.registry.blob_exists(target.repository, &blob.digest).await, Ok(true))
                    {
                        return self.settled(owner, live, blob, Event::Skipped);
                    }
                    session = Some(opened);
                }
                Err(error) => {
                    tracing::warn!(digest = %blob.digest, %from, %error, "mount failed; uploading instead")
                }
            }
        }
        Preparation::Upload(owner, live, session)
    }

    /// The blob is at the target without an upload (`how`: skipped or mounted).
    fn settled<'l, 'j, R>(
        &self,
        owner: Owner<'l>,
        live: &'j Live<'j, R>,
        blob: &BlobDescriptor,
        how: Event,
    ) -> Preparation<'l, 'j, R> {
        owner.confirm();
        self.stats.unexpect_bytes(blob.size);
        self.record(live, how);
        Preparation::Done
    }

    /// Streams the blob from the source to every upload at once; retryable failures go again.
    async fn transfer<R: Registry>(
        &self,
        source: &Source<'_, R>,
        blob: &BlobDescriptor,
        mut pending: Vec<(Owner<'_>, &Live<'_, R>, Option<UploadSession>)>,
    ) {
        let registries = pending.iter().map(|(_, live, _)| live.target.registry.name());
        let acquire = self.limits.acquire(std::iter::once(source.registry.name()).chain(registries));
        // A transfer queued behind the limits when the run is cancelled never starts: it stops
        // waiting at once, and one whose turn comes together with the signal gives way too.
        let permits = tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            permits = acquire => (!self.cancel.is_cancelled()).then_some(permits),
        };
        let Some(_permits) = permits else {
            pending.iter().for_each(|(_, live, _)| live.fail(Arc::new(Error::Cancelled)));
            return;
        };
        // In flight for a live view from here (its permits held) until this returns.
        let image = super::report::in_repository(source.repository, &source.reference);
        let tracked = self.stats.transfers.start(image, blob.digest.clone(), blob.size);
        let mut attempt = 1;
        loop {
            // Nor does a retry begin after the signal (the first attempt was checked above).
            if attempt > 1 && self.cancel.is_cancelled() {
                pending.iter().for_each(|(_, live, _)| live.fail(Arc::new(Error::Cancelled)));
                return;
            }
            let body = match source.registry.get_blob(source.repository, blob).await {
                Ok(body) => tracked.count(body),
                Err(error) if error.is_retryable() && attempt < BLOB_ATTEMPTS => {
                    tracing::warn!(digest = %blob.digest, attempt, %error, "blob download failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(retry_delay(attempt)).await;
                    continue;
                }
                Err(error) => {
                    let error = Arc::new(error.into());
                    pending.iter().for_each(|(_, live, _)| live.fail(Arc::clone(&error)));
                    return;
                }
            };
            let results = if let [(_, live, session)] = pending.as_mut_slice() {
                let body = self.counted(body, live);
                vec![live.target.registry.push_blob(live.target.repository, blob, body, session.take()).await]
            } else {
                let (branches, driver) = tee::tee(body, pending.len());
                let uploads = pending.iter_mut().zip(branches).map(|((_, live, session), branch)| {
                    let body = self.counted(branch, live);
                    live.target.registry.push_blob(live.target.repository, blob, body, session.take())
                });
                let (results, ()) = futures_util::future::join(futures_util::future::join_all(uploads), driver).await;
                results
            };
            let mut again = Vec::new();
            for ((owner, live, _), result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        owner.confirm();
                        self.record(live, Event::Copied);
                        live.stats.landed(blob.size);
                        self.stats.landed(blob.size);
                    }
                    Err(error) if error.is_retryable() && attempt < BLOB_ATTEMPTS && !self.cancel.is_cancelled() => {
                        tracing::warn!(digest = %blob.digest, target = live.target.registry.name(), attempt, %error, "blob upload failed; retrying");
                        again.push((owner, live, None));
                    }
                    Err(error) => live.fail(Arc::new(error.into())),
                }
            }
            if again.is_empty() {
                return;
            }
            pending = again;
            attempt += 1;
            tokio::time::sleep(retry_delay(attempt)).await;
        }
    }

    /// Counts bytes as they go to a target, for the target's report and the run's progress.
    fn counted<R>(&self, body: BlobStream, live: &Live<'_, R>) -> BlobStream {
        let (target_stats, run_stats) = (live.stats.clone(), self.stats.clone());
        body.inspect_ok(move |chunk| {
            let n = chunk.len() as u64;
            target_stats.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            run_stats.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .boxed()
    }
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(250 * u64::from(attempt))
}
