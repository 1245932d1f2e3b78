//! Credentials that come from a platform identity and expire (ECR authorization tokens, GCP
//! access tokens, ACR refresh tokens): fetched when first needed, cached, refreshed shortly
//! before they expire and once after a registry answers 401.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{Credentials, Error, instant_after};

/// Refresh this long before a credential's stated expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Fresh credentials and when they stop working.
#[derive(Debug, Clone)]
pub struct Expiring {
    /// What to present (usually Basic).
    pub credentials: Credentials,
    /// When they expire, if known.
    pub expires_at: Option<SystemTime>,
}

/// A boxed future, so providers can be trait objects.
pub type ProviderFuture<'a> = Pin<Box<dyn Future<Output = Result<Expiring, Error>> + Send + 'a>>;

/// Obtains credentials from a platform (AWS, Google, Azure).
pub trait CredentialProvider: Send + Sync + 'static {
    /// What it asks, for messages (`ECR GetAuthorizationToken in us-east-1`).
    fn describe(&self) -> String;

    /// Fetches fresh credentials; the error says why, without secrets.
    fn fetch(&self) -> ProviderFuture<'_>;
}

/// Where an authenticator's credentials come from.
#[derive(Clone)]
pub enum CredentialSource {
    /// Fixed credentials (config, docker config.json, anonymous).
    Static(Credentials),
    /// A platform identity, refreshed as needed.
    Provided(Arc<ProvidedCredentials>),
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Static(credentials) => f.debug_tuple("Static").field(credentials).finish(),
            CredentialSource::Provided(provided) => {
                f.debug_tuple("Provided").field(&provided.provider.describe()).finish()
            }
        }
    }
}

impl From<Credentials> for CredentialSource {
    fn from(credentials: Credentials) -> Self {
        CredentialSource::Static(credentials)
    }
}

impl CredentialSource {
    /// Credentials from `provider`, cached between calls.
    pub fn provided(provider: impl CredentialProvider) -> Self {
        CredentialSource::Provided(Arc::new(ProvidedCredentials {
            provider: Box::new(provider),
            cached: tokio::sync::Mutex::new(None),
            stale: AtomicBool::new(false),
        }))
    }

    /// The credentials to present now.
    pub async fn current(&self) -> Result<Credentials, Error> {
        match self {
            CredentialSource::Static(credentials) => Ok(credentials.clone()),
            CredentialSource::Provided(provided) => provided.current().await,
        }
    }

    /// A registry refused the current credentials: fetch new ones next time.
    pub fn refused(&self) {
        if let CredentialSource::Provided(provided) = self {
            provided.stale.store(true, Ordering::Relaxed);
        }
    }
}

/// A provider with its cache.
pub struct ProvidedCredentials {
    provider: Box<dyn CredentialProvider>,
    cached: tokio::sync::Mutex<Option<(Credentials, Option<Instant>)>>,
    stale: AtomicBool,
}

impl ProvidedCredentials {
    async fn current(&self) -> Result<Credentials, Error> {
        let mut cached = self.cached.lock().await;
        let stale = self.stale.swap(false, Ordering::Relaxed);
        if let Some((credentials, refresh_at)) = cached.as_ref()
            && !stale
            && refresh_at.is_none_or(|at| at > Instant::now())
        {
            return Ok(credentials.clone());
        }
        let fresh = self
            .provider
            .fetch()
            .await
            .map_err(|e| Error::Provider { provider: self.provider.describe(), source: Box::new(e) })?;
        *cached = Some((fresh.credentials.clone(), refresh_at(fresh.expires_at, SystemTime::now())));
        Ok(fresh.credentials)
    }
}

/// When to fetch again: shortly before expiry, and at the latest after
/// [`MAX_LIFETIME`](super::MAX_LIFETIME) (an
/// expiry in the year 9999 must not overflow the clock). An expiry already past (moto's tokens
/// expire in 2015) or too close to leave a margin means "use it until a 401", not a refresh loop.
fn refresh_at(expires_at: Option<SystemTime>, now: SystemTime) -> Option<Instant> {
    let left = expires_at?.duration_since(now).ok()?;
    let usable = left.checked_sub(REFRESH_MARGIN)?;
    Some(instant_after(usable))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::registry::auth::{MAX_LIFETIME, Secret};

    struct Counting {
        calls: Arc<AtomicU32>,
        expires_in: Option<i64>,
    }

    impl CredentialProvider for Counting {
        fn describe(&self) -> String {
            "test provider".into()
        }

        fn fetch(&self) -> ProviderFuture<'_> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let expires_at = self.expires_in.map(|secs| {
                let now = SystemTime::now();
                if secs >= 0 {
                    now + Duration::from_secs(secs as u64)
                } else {
                    now - Duration::from_secs((-secs) as u64)
                }
            });
            Box::pin(async move {
                Ok(Expiring {
                    credentials: Credentials::Basic {
                        username: "AWS".into(),
                        password: Secret::new(format!("token-{n}")),
                    },
                    expires_at,
                })
            })
        }
    }

    fn source(expires_in: Option<i64>) -> (CredentialSource, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        (CredentialSource::provided(Counting { calls: calls.clone(), expires_in }), calls)
    }

    #[tokio::test]
    async fn credentials_are_cached_until_refused() {
        let (source, calls) = source(Some(12 * 3600));
        let first = source.current().await.unwrap();
        assert_eq!(source.current().await.unwrap(), first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        source.refused();
        assert_ne!(source.current().await.unwrap(), first);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_expiry_in_the_past_is_used_until_a_401_not_refetched_in_a_loop() {
        let (source, calls) = source(Some(-10 * 365 * 24 * 3600));
        for _ in 0..5 {
            source.current().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed() {
        let (source, calls) = source(Some(60));
        source.current().await.unwrap();
        source.current().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "too close to expiry for a margin: used until refused");
        assert!(refresh_at(Some(SystemTime::now() + Duration::from_secs(3600)), SystemTime::now()).is_some());
    }

    #[test]
    fn an_expiry_at_the_end_of_time_is_refreshed_within_a_day_without_overflow() {
        let now = SystemTime::now();
        // As far as the platform's clock goes (i64 seconds on Linux), and just past "now".
        let end_of_time = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 / 2)).unwrap();
        let at = refresh_at(Some(end_of_time), now).expect("a far expiry still refreshes");
        assert!(at <= Instant::now() + MAX_LIFETIME, "clamped to a day");
        assert_eq!(refresh_at(Some(now), now), None, "expiring now: used until a 401");
        assert_eq!(refresh_at(Some(SystemTime::UNIX_EPOCH), now), None, "expired in 1970: used until a 401");
        assert_eq!(refresh_at(None, now), None, "no expiry: used until a 401");
    }
}
