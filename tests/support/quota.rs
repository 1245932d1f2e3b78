//! A per-account quota, as ECR enforces on `PutImage`: a token bucket shared by every client
//! of a proxy, answering manifest PUTs beyond it with 429 and `Retry-After`, and counting what
//! it accepted and refused.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::proxy::{Action, SeenRequest};

/// A token bucket on manifest PUTs: `per_second` tokens a second, at most `per_second` saved.
pub struct ManifestPutQuota {
    per_second: f64,
    retry_after: Duration,
    bucket: Mutex<(f64, Instant)>,
    accepted: AtomicU64,
    throttled: AtomicU64,
}

impl ManifestPutQuota {
    /// A quota of `per_second` manifest PUTs, answering `Retry-After: <retry_after>` beyond it.
    pub fn new(per_second: f64, retry_after: Duration) -> Self {
        ManifestPutQuota {
            per_second,
            retry_after,
            bucket: Mutex::new((per_second, Instant::now())),
            accepted: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// The proxy rule: forward a manifest PUT if a token is left, else refuse it with 429;
    /// everything else passes.
    pub fn rule(&self, request: &SeenRequest) -> Action {
        if request.method != "PUT" || !request.target.contains("/manifests/") {
            return Action::Forward;
        }
        let mut bucket = self.bucket.lock().expect("quota lock");
        let now = Instant::now();
        let (tokens, since) = *bucket;
        let tokens = (tokens + now.duration_since(since).as_secs_f64() * self.per_second).min(self.per_second);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            self.accepted.fetch_add(1, Ordering::SeqCst);
            Action::Forward
        } else {
            *bucket = (tokens, now);
            self.throttled.fetch_add(1, Ordering::SeqCst);
            let retry_after = self.retry_after.as_secs().to_string();
            Action::Respond { status: 429, headers: vec![("Retry-After".into(), retry_after)], body: String::new() }
        }
    }

    /// Manifest PUTs let through.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Manifest PUTs refused with 429.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::SeqCst)
    }
}
