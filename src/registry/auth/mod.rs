//! Registry authentication: where credentials come from and how `/v2/` challenges are answered.
//!
//! A registry announces its scheme in a `WWW-Authenticate` challenge on the first 401:
//! `Basic` gets the credentials directly; `Bearer realm=…,service=…` is answered by fetching a
//! token for the repository scope from the realm (with the credentials as Basic, or
//! anonymously), caching it until it expires and refreshing it once on a later 401.

mod acr;
mod challenge;
mod docker_config;
mod gcp;
mod provider;
mod token;

pub use acr::{AcrProvider, AcrSettings};
pub use challenge::Challenge;
pub use docker_config::{DockerConfigError, lookup as docker_config_lookup};
pub use gcp::GcpProvider;
pub use provider::{CredentialProvider, CredentialSource, Expiring, ProviderFuture};
pub use token::Authenticator;

use std::fmt;

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
