//! The blob transfers in flight, for a live view: which image, which blob, how many bytes of
//! how many. Registering costs one short lock at the start and end of a transfer; the bytes
//! are one relaxed atomic add per chunk, beside the counter the run already keeps.
//!
//! The registry is bounded: the engine's transfer limits already keep the number in flight
//! small, and [`MAX_TRACKED`] caps it anyway, so a view never holds more than that.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};

use crate::oci::Digest;
use crate::registry::BlobStream;

/// Transfers tracked at once; more run untracked (a view shows only a few lines anyway, and
/// `global.max_concurrent_transfers` rarely goes above this).
pub const MAX_TRACKED: usize = 64;

/// One blob transfer in flight, as a view reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// `repository:tag` (or `@digest`) of the source image the blob belongs to.
    pub image: String,
    /// The blob.
    pub digest: Digest,
    /// Bytes read from the source in the current attempt.
    pub bytes: u64,
    /// The blob's size from its descriptor.
    pub size: u64,
}

struct Entry {
    image: String,
    digest: Digest,
    size: u64,
    bytes: Arc<AtomicU64>,
}

/// The registry of transfers in flight, oldest first.
#[derive(Default)]
pub struct InFlight {
    entries: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
    /// Transfers running beyond [`MAX_TRACKED`].
    untracked: AtomicU64,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("count", &self.count()).finish()
    }
}

impl InFlight {
    /// Registers a transfer; it is in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>, image: String, digest: Digest, size: u64) -> Tracked {
        let bytes = Arc::new(AtomicU64::new(0));
        let mut entries = self.entries.lock().expect("transfer registry lock poisoned");
        let id = if entries.len() < MAX_TRACKED {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            entries.insert(id, Entry { image, digest, size, bytes: bytes.clone() });
            Some(id)
        } else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            None
        };
        Tracked { registry: self.clone(), id, bytes }
    }

    /// The oldest `limit` transfers in flight.
    pub fn oldest(&self, limit: usize) -> Vec<Transfer> {
        let entries = self.entries.lock().expect("transfer registry lock poisoned");
        entries
            .values()
            .take(limit)
            .map(|e| Transfer {
                image: e.image.clone(),
                digest: e.digest.clone(),
                bytes: e.bytes.load(Ordering::Relaxed),
                size: e.size,
            })
            .collect()
    }

    /// How many transfers are in flight, tracked or not.
    pub fn count(&self) -> usize {
        let tracked = self.entries.lock().expect("transfer registry lock poisoned").len();
        tracked + self.untracked.load(Ordering::Relaxed) as usize
    }
}

/// A transfer in the registry; leaves it when dropped.
pub struct Tracked {
    registry: Arc<InFlight>,
    id: Option<u64>,
    bytes: Arc<AtomicU64>,
}

impl Tracked {
    /// `body`, counting its bytes into this transfer; the count starts again at zero, since a
    /// retry reads the blob from the start.
    pub fn count(&self, body: BlobStream) -> BlobStream {
        self.bytes.store(0, Ordering::Relaxed);
        let bytes = self.bytes.clone();
        body.inspect_ok(move |chunk| {
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        })
        .boxed()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        match self.id {
            Some(id) => {
                // A poisoned lock means a panic elsewhere; the entry is left rather than panicking
                // again in a destructor.
                if let Ok(mut entries) = self.registry.entries.lock() {
                    entries.remove(&id);
                }
            }
            None => {
                self.registry.untracked.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::TryStreamExt;

    use super::*;

    fn digest(n: u8) -> Digest {
        format!("sha256:{}", hex::encode([n; 32])).parse().unwrap()
    }

    #[tokio::test]
    async fn a_transfer_shows_its_bytes_while_running_and_leaves_when_done() {
        let registry = Arc::new(InFlight::default());
        let tracked = registry.start("team/api:1.0".into(), digest(1), 10);
        let chunks: Vec<crate::registry::Result<Bytes>> = vec![Ok(Bytes::from_static(b"abcd"))];
        let counted = tracked.count(futures_util::stream::iter(chunks).boxed());
        let _: Vec<Bytes> = counted.try_collect().await.unwrap();
        assert_eq!(
            registry.oldest(4),
            [Transfer { image: "team/api:1.0".into(), digest: digest(1), bytes: 4, size: 10 }]
        );
        drop(tracked);
        assert!(registry.oldest(4).is_empty());
        assert_eq!(registry.count(), 0);
    }

    #[test]
    fn the_registry_holds_at_most_max_tracked_and_counts_the_rest() {
        let registry = Arc::new(InFlight::default());
        let guards: Vec<Tracked> =
            (0..MAX_TRACKED + 5).map(|n| registry.start(format!("r:{n}"), digest(n as u8), 1)).collect();
        assert_eq!(registry.entries.lock().unwrap().len(), MAX_TRACKED);
        assert_eq!(registry.count(), MAX_TRACKED + 5);
        assert_eq!(registry.oldest(2).iter().map(|t| t.image.as_str()).collect::<Vec<_>>(), ["r:0", "r:1"]);
        drop(guards);
        assert_eq!(registry.count(), 0);
    }
}
