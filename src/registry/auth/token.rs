//! The per-registry authenticator: learns the challenge, caches Bearer tokens per scope.
//!
//! The token realm is whatever URL the registry's challenge names, often another host (Docker
//! Hub's `auth.docker.io`, GHCR's `ghcr.io/token`): that is normal, and the realm receives the
//! registry's credentials as Basic for the exchange, as Docker's client does. It must be
//! `https://`, though, unless the registry itself is configured as plain `http://`: a realm
//! over plain HTTP for an HTTPS registry would carry the password in clear.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use super::{Challenge, CredentialSource, Credentials, instant_after};
use crate::registry::body::MAX_TOKEN_ANSWER;
use crate::registry::{Error, Result};

/// Tokens without `expires_in` live 60 s (distribution's token spec); refresh a little early.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// How early a token is refreshed: 10 s, but at most a quarter of its lifetime, so a token
/// that lives only a few seconds is still used for its first three quarters instead of being
/// fetched again for every request.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// When a token that lives `lifetime` from now should be fetched again.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - EXPIRY_MARGIN.min(lifetime / 4)
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    /// Any JSON number: a negative or fractional lifetime must not fail the whole answer.
    expires_in: Option<serde_json::Number>,
}

/// A token's stated lifetime: whole seconds; a negative one is already over (zero), a missing
/// one is the spec's default. Clamped later, where it is added to the clock.
fn token_lifetime(expires_in: Option<&serde_json::Number>) -> Duration {
    let Some(number) = expires_in else { return DEFAULT_TOKEN_LIFETIME };
    match number.as_u64() {
        Some(seconds) => Duration::from_secs(seconds),
        // `as` saturates: 1e300 becomes u64::MAX seconds, NaN cannot come from JSON.
        None => Duration::from_secs(number.as_f64().filter(|s| *s > 0.0).map_or(0, |s| s as u64)),
    }
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// Answers one registry's authentication challenges for any number of concurrent requests.
pub struct Authenticator {
    registry: String,
    /// The registry is reached over plain HTTP, so an `http://` realm is no downgrade.
    plain_http: bool,
    credentials: CredentialSource,
    challenge: RwLock<Option<Challenge>>,
    /// Held across a token fetch so concurrent requests for a new scope fetch it once.
    tokens: tokio::sync::Mutex<HashMap<String, CachedToken>>,
    client: reqwest::Client,
    timeout: Duration,
}

impl Authenticator {
    /// An authenticator for `registry` (used in error messages) presenting `credentials`;
    /// `plain_http` says the registry itself is reached over HTTP (it then accepts an `http://`
    /// realm).
    pub fn new(
        registry: String,
        plain_http: bool,
        credentials: CredentialSource,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Self {
        Authenticator {
            registry,
            plain_http,
            credentials,
            challenge: RwLock::new(None),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
            client,
            timeout,
        }
    }

    /// The `Authorization` value for a request on `repository` needing `scopes`
    /// (`repository:team/app:pull,push`), or `None` to go without.
    pub async fn header(&self, repository: &str, scopes: &[String]) -> Result<Option<String>> {
        let credentials = self
            .credentials
            .current()
            .await
            .map_err(|e| Error::Credentials { registry: self.registry.clone(), detail: e.to_string() })?;
        if let Credentials::Bearer(token) = &credentials {
            return Ok(Some(format!("Bearer {}", token.expose())));
        }
        let challenge = self.challenge.read().expect("challenge lock poisoned").clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(credentials.basic_header()),
            Some(Challenge::Bearer { realm, service }) => {
                let realm = self.realm_url(&realm, repository)?;
                let key = scopes.join(" ");
                let mut tokens = self.tokens.lock().await;
                if let Some(token) = tokens.get(&key).filter(|t| t.refresh_at > Instant::now()) {
                    return Ok(Some(format!("Bearer {}", token.value)));
                }
                let token = self.fetch_token(&credentials, repository, realm, service.as_deref(), scopes).await?;
                let header = format!("Bearer {}", token.value);
                tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Records the challenge of a 401 and forgets the token used for `scopes`, so the caller's
    /// one retry fetches a fresh one. `refused` is the `Authorization` value the refused
    /// request carried: when concurrent requests meet the same revoked token, the first to
    /// come back fetches a new one and the others must not throw that new one away.
    pub async fn on_unauthorized(&self, www_authenticate: Option<&str>, scopes: &[String], refused: Option<&str>) {
        let challenge = www_authenticate.and_then(Challenge::parse);
        let already_known = *self.challenge.read().expect("challenge lock poisoned") == challenge;
        if already_known {
            // The same challenge again: the credentials themselves were refused.
            self.credentials.refused();
        } else if let Some(challenge) = challenge {
            *self.challenge.write().expect("challenge lock poisoned") = Some(challenge);
        }
        let mut tokens = self.tokens.lock().await;
        let key = scopes.join(" ");
        let newer = tokens.get(&key).is_some_and(|token| {
            refused.is_some_and(|refused| refused.strip_prefix("Bearer ") != Some(token.value.as_str()))
        });
        if !newer {
            tokens.remove(&key);
        }
    }

    /// The realm of a Bearer challenge, if it may receive the credentials: `https://`, or
    /// `http://` when the registry itself is plain HTTP.
    fn realm_url(&self, realm: &str, repository: &str) -> Result<Url> {
        let action = "token request";
        let url = Url::parse(realm).map_err(|e| Error::Protocol {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            action: action.to_string(),
            detail: format!("the challenge's realm {realm:?} is not a URL: {e}"),
        })?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.plain_http => Ok(url),
            "http" => Err(Error::Downgrade {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                action: action.to_string(),
                to: url.origin().ascii_serialization(),
            }),
            scheme => Err(Error::Protocol {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                action: action.to_string(),
                detail: format!("the challenge's realm uses the unsupported scheme {scheme}:"),
            }),
        }
    }

    async fn fetch_token(
        &self,
        credentials: &Credentials,
        repository: &str,
        realm: Url,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken> {
        let mut query: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.client.get(realm.clone()).query(&query).timeout(self.timeout);
        if let Some(basic) = credentials.basic_header() {
            request = request.header(reqwest::header::AUTHORIZATION, basic);
        }
        let action = "token request".to_string();
        let network = |source: reqwest::Error| Error::Network {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            action: action.clone(),
            source: source.without_url(),
        };
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        if !status.is_success() {
            let detail = format!("token endpoint {} answered {status}", crate::text::sanitize(realm.as_str()));
            if status.as_u16() == 401 || status.as_u16() == 403 {
                // Platform credentials (an ACR refresh token, say) may be revoked before
                // they expire: fetch fresh ones next time.
                self.credentials.refused();
            }
            return Err(if status.as_u16() == 401 || status.as_u16() == 403 {
                Error::Unauthorized {
                    registry: self.registry.clone(),
                    repository: repository.to_string(),
                    status: status.as_u16(),
                    detail,
                }
            } else {
                Error::Status {
                    registry: self.registry.clone(),
                    repository: repository.to_string(),
                    action,
                    status: status.as_u16(),
                    detail,
                }
            });
        }
        // Capped and timed like every body from a registry; the request's own timeout covers
        // it too, the idle limit only makes a stall fail sooner.
        let limits =
            crate::registry::body::Limits { max_bytes: MAX_TOKEN_ANSWER, idle: self.timeout, total: self.timeout };
        let protocol = |detail: String| Error::Protocol {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            action: action.clone(),
            detail,
        };
        let answer = crate::registry::body::read(response, limits).await.map_err(|error| match error {
            crate::registry::body::Error::Network(source) => network(source),
            crate::registry::body::Error::Timeout { after } => Error::Timeout {
                registry: self.registry.clone(),
                repository: repository.to_string(),
                action: action.clone(),
                after,
            },
            too_large => protocol(format!("token response too large: {too_large}")),
        })?;
        let body: TokenResponse = serde_json::from_slice(&answer)
            .map_err(|e| protocol(format!("token response is not JSON: {}", crate::text::sanitize(&e.to_string()))))?;
        let value = body.token.or(body.access_token).ok_or_else(|| Error::Protocol {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            action: action.clone(),
            detail: "token response has neither token nor access_token".into(),
        })?;
        let lifetime = token_lifetime(body.expires_in.as_ref());
        Ok(CachedToken { value, refresh_at: instant_after(refresh_after(lifetime)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_ten_seconds_early_or_at_three_quarters_of_a_short_life() {
        assert_eq!(refresh_after(Duration::from_secs(300)), Duration::from_secs(290));
        assert_eq!(refresh_after(DEFAULT_TOKEN_LIFETIME), Duration::from_secs(50));
        assert_eq!(refresh_after(Duration::from_secs(4)), Duration::from_secs(3));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn token_lifetimes_from_the_wire_never_overflow_and_are_clamped_to_a_day() {
        let number = |json: &str| serde_json::from_str::<serde_json::Number>(json).unwrap();
        assert_eq!(token_lifetime(None), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(Some(&number("300"))), Duration::from_secs(300));
        assert_eq!(token_lifetime(Some(&number("0"))), Duration::ZERO);
        assert_eq!(token_lifetime(Some(&number("-5"))), Duration::ZERO, "negative: already over");
        assert_eq!(token_lifetime(Some(&number("2.9"))), Duration::from_secs(2));
        for huge in ["18446744073709551615", "1e300"] {
            let lifetime = token_lifetime(Some(&number(huge)));
            assert_eq!(lifetime, Duration::from_secs(u64::MAX), "{huge}");
            let at = instant_after(refresh_after(lifetime));
            assert!(at <= Instant::now() + super::super::MAX_LIFETIME, "{huge}: cached for a day at most");
        }
        assert_eq!(refresh_after(Duration::from_secs(u64::MAX)), Duration::from_secs(u64::MAX - 10));
    }

    fn authenticator(plain_http: bool) -> Authenticator {
        Authenticator::new(
            "registry.test".into(),
            plain_http,
            Credentials::Anonymous.into(),
            reqwest::Client::new(),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn an_http_realm_is_refused_for_an_https_registry_and_accepted_for_an_http_one() {
        let refused = authenticator(false).realm_url("http://auth.test:8080/token", "team/app").unwrap_err();
        assert!(matches!(refused, Error::Downgrade { .. }), "{refused:?}");
        let text = refused.to_string();
        assert!(text.contains("registry.test") && text.contains("http://auth.test:8080"), "{text}");
        assert!(!refused.is_retryable());
        assert!(authenticator(true).realm_url("http://auth.test:8080/token", "team/app").is_ok());
        // Another host over HTTPS is how Docker Hub and GHCR work.
        assert!(authenticator(false).realm_url("https://auth.docker.io/token", "team/app").is_ok());
        for odd in ["file:///etc/passwd", "not a url"] {
            let error = authenticator(true).realm_url(odd, "team/app").unwrap_err();
            assert!(matches!(error, Error::Protocol { .. }), "{odd}: {error:?}");
        }
    }

    #[tokio::test]
    async fn a_401_forgets_the_token_it_refused_but_not_a_newer_one() {
        let auth = Authenticator::new(
            "registry.test".into(),
            false,
            Credentials::Anonymous.into(),
            reqwest::Client::new(),
            Duration::from_secs(1),
        );
        let scopes = vec!["repository:team/app:pull,push".to_string()];
        let cached =
            |value: &str| CachedToken { value: value.into(), refresh_at: Instant::now() + DEFAULT_TOKEN_LIFETIME };
        auth.tokens.lock().await.insert(scopes.join(" "), cached("fresh"));
        // A concurrent request that carried the revoked token comes back after the refetch.
        auth.on_unauthorized(None, &scopes, Some("Bearer revoked")).await;
        assert!(auth.tokens.lock().await.contains_key(&scopes.join(" ")), "the fresh token survives");
        auth.on_unauthorized(None, &scopes, Some("Bearer fresh")).await;
        assert!(!auth.tokens.lock().await.contains_key(&scopes.join(" ")), "the refused token is forgotten");
    }
}
