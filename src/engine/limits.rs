//! Concurrency bounds: transfers in flight overall and per registry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Semaphores for the whole run and for registries that set `max_concurrent`.
#[derive(Debug)]
pub struct Limits {
    global: Arc<Semaphore>,
    per_registry: HashMap<String, Arc<Semaphore>>,
}

impl Limits {
    /// `global` transfers at once; `per_registry` maps registry names to their own bound.
    pub fn new(global: usize, per_registry: impl IntoIterator<Item = (String, usize)>) -> Self {
        Limits {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_registry: per_registry
                .into_iter()
                .map(|(name, n)| (name, Arc::new(Semaphore::new(n.max(1)))))
                .collect(),
        }
    }

    /// Waits for a global slot and a slot at each named registry. Registries are taken in
    /// name order, so two transfers can never each hold what the other waits for.
    pub async fn acquire<'a>(&self, registries: impl Iterator<Item = &'a str>) -> Vec<OwnedSemaphorePermit> {
        let names: BTreeSet<&str> = registries.collect();
        let mut permits = vec![self.global.clone().acquire_owned().await.expect("semaphores are never closed")];
        for name in names {
            if let Some(semaphore) = self.per_registry.get(name) {
                permits.push(semaphore.clone().acquire_owned().await.expect("semaphores are never closed"));
            }
        }
        permits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registry_bound_limits_transfers_to_it_only() {
        let limits = Limits::new(10, [("slow".to_string(), 1)]);
        let held = limits.acquire(["slow"].into_iter()).await;
        let other =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(["fast"].into_iter())).await;
        assert!(other.is_ok(), "another registry is not blocked");
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(["slow", "fast"].into_iter()))
                .await;
        assert!(blocked.is_err(), "the bounded registry is full");
        drop(held);
    }
}
