//! Registry authentication: where credentials come from and how `/v2/` challenges are answered.
//!
//! A registry announces its scheme in a `WWW-Authenticate` challenge on the first 401:
//! `Basic` gets the credentials directly; `Bearer realm=…,service=…` is answered by fetching a
//! token for the repository scope from the realm (with the credentials as Basic, or
//! anonymously), caching it until it expires and refreshing it once on a later 401.
//!
//! Lifetimes come from registries and cloud APIs, so they are data, not trusted arithmetic:
//! every one is clamped to [`MAX_LIFETIME`] before it is added to a clock.

mod acr;
mod challenge;
pub mod docker_config;
mod error;
mod gcp;
mod oauth;
mod provider;
mod token;

pub use acr::{AcrProvider, AcrSettings};
pub use challenge::Challenge;
pub use docker_config::lookup as docker_config_lookup;
pub use error::Error;
pub use gcp::GcpProvider;
pub use provider::{CredentialProvider, CredentialSource, Expiring, ProviderFuture};
pub use token::Authenticator;

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// The longest a token or a platform credential is kept, whatever its issuer says. Real
/// issuers say 5 minutes (Docker Hub) to 12 hours (ECR); a day leaves room for any of them,
/// while an absurd `expires_in` (`u64::MAX` seconds) can neither overflow the clock nor keep a
/// token cached for the life of a long-running process.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// When something that lives `lifetime` from now is over, with the lifetime clamped to
/// [`MAX_LIFETIME`] (so the sum cannot overflow).
pub(crate) fn instant_after(lifetime: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(lifetime.min(MAX_LIFETIME)).unwrap_or(now)
}

/// `start + lifetime` on the wall clock, with the lifetime clamped to [`MAX_LIFETIME`].
pub(crate) fn expiry_after(start: SystemTime, lifetime: Duration) -> SystemTime {
    start.checked_add(lifetime.min(MAX_LIFETIME)).unwrap_or(start)
}

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for building a header. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The credentials ocync presents to one registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials: anonymous access, or an anonymous token exchange.
    #[default]
    Anonymous,
    /// Username and password: sent as Basic, or used to obtain a Bearer token.
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: Secret,
    },
    /// A ready-made Bearer token sent as is (`auth_type: static_token`).
    Bearer(Secret),
}

impl Credentials {
    /// The `Authorization: Basic …` value, if these are Basic credentials.
    pub fn basic_header(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()))
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_clamped_to_a_day_and_never_overflow() {
        let now = Instant::now();
        let far = instant_after(Duration::MAX);
        assert!(far >= now + MAX_LIFETIME && far <= Instant::now() + MAX_LIFETIME, "clamped to a day");
        assert!(instant_after(Duration::ZERO) <= Instant::now());
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(expiry_after(start, Duration::from_secs(u64::MAX)), start + MAX_LIFETIME);
        assert_eq!(expiry_after(start, Duration::from_secs(3600)), start + Duration::from_secs(3600));
        assert_eq!(expiry_after(start, Duration::ZERO), start);
    }
}
