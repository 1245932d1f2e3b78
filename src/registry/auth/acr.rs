//! Azure Container Registry credentials from AKS Workload Identity, without the Azure SDK.
//!
//! Three hops, each a plain form POST:
//!
//! 1. The kubelet projects a service-account token into the pod and the workload identity
//!    webhook points `AZURE_FEDERATED_TOKEN_FILE` at it (with `AZURE_CLIENT_ID`,
//!    `AZURE_TENANT_ID` and `AZURE_AUTHORITY_HOST`). The file is re-read on every fetch: the
//!    kubelet rotates it, so a copy taken at start-up goes stale.
//! 2. Microsoft Entra ID exchanges it for an access token: `POST
//!    {authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials` and the
//!    file's token as a `jwt-bearer` client assertion.
//! 3. The registry exchanges that for an ACR refresh token: `POST
//!    https://{registry}/oauth2/exchange` with `grant_type=access_token`.
//!
//! The refresh token is presented as Basic credentials with the null-GUID user name, which is
//! what `az acr login` writes into docker's config: the [`Authenticator`](super::Authenticator)
//! then answers the registry's `Bearer` challenge at its `/oauth2/token` realm with them, like
//! for any token-auth registry, so that last hop needs no code here.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;
use url::Url;

use super::oauth::TokenRequest;
use super::{CredentialProvider, Credentials, Error, Expiring, ProviderFuture, Secret};

/// The user name ACR expects with a refresh token as password (docker's `az acr login` entry).
pub const ACR_REFRESH_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// Entra ID's public-cloud authority, used when `AZURE_AUTHORITY_HOST` is not set.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// The scope asked of Entra ID: an ACR-audience token.
///
/// ACR also accepts ARM-audience tokens (`https://management.azure.com/.default`), but only
/// while the registry's `authentication-as-arm` policy is enabled; registries hardened with
/// "Container registries should have ARM audience token authentication disabled" accept only
/// ACR-audience tokens. The ACR audience works either way and grants nothing beyond registry
/// access, so it is the one to ask for.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// The federated token file, as messages name it (with the variable that points at it).
const FEDERATED_TOKEN_FILE: &str = "federated token file (AZURE_FEDERATED_TOKEN_FILE)";

/// The OAuth client assertion type for a JWT (RFC 7523), as Entra ID expects it.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a refresh token is assumed to live when its `exp` cannot be read. ACR refresh
/// tokens are JWTs living about 3 hours; if one ever is not, a shorter life than assumed is
/// still caught by the registry's 401, which makes the cache fetch again.
const ASSUMED_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// Total time allowed for each of the two requests.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the provider gets its identity and whom it asks.
#[derive(Debug, Clone)]
pub struct AcrSettings {
    /// The registry host (`myregistry.azurecr.io`, or `host:port`): where `/oauth2/exchange`
    /// is, and the `service` asked for.
    pub registry: String,
    /// Talk to the registry over plain HTTP (tests only; ACR is HTTPS).
    pub plain_http: bool,
    /// The Entra ID tenant (`AZURE_TENANT_ID`): a GUID or a domain.
    pub tenant_id: String,
    /// The application (client) ID of the federated identity (`AZURE_CLIENT_ID`).
    pub client_id: String,
    /// The projected service-account token (`AZURE_FEDERATED_TOKEN_FILE`).
    pub federated_token_file: PathBuf,
    /// The Entra ID authority (`AZURE_AUTHORITY_HOST`), e.g. `https://login.microsoftonline.com/`.
    pub authority_host: String,
    /// The scope asked of Entra ID; [`ACR_SCOPE`] unless a sovereign cloud needs another.
    pub scope: String,
    /// Total timeout of each request.
    pub timeout: Duration,
}

impl AcrSettings {
    /// Settings for `registry` over HTTPS with the public-cloud authority and [`ACR_SCOPE`].
    pub fn new(
        registry: &str,
        tenant_id: &str,
        client_id: &str,
        federated_token_file: impl Into<PathBuf>,
    ) -> AcrSettings {
        AcrSettings {
            registry: registry.to_string(),
            plain_http: false,
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            federated_token_file: federated_token_file.into(),
            authority_host: DEFAULT_AUTHORITY_HOST.to_string(),
            scope: ACR_SCOPE.to_string(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Settings from the variables the workload identity webhook injects, or `None` unless
    /// `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE` are all set.
    pub fn from_environment(registry: &str, plain_http: bool) -> Option<AcrSettings> {
        Self::from_lookup(registry, plain_http, |name| std::env::var(name).ok())
    }

    /// [`from_environment`](Self::from_environment) over any variable lookup, so it can be
    /// tested without touching the process environment.
    fn from_lookup(registry: &str, plain_http: bool, lookup: impl Fn(&str) -> Option<String>) -> Option<AcrSettings> {
        // An empty variable counts as unset: a half-configured pod should fall back to the
        // other credential sources, not fail with an empty client ID.
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut settings = AcrSettings::new(
            registry,
            get("AZURE_TENANT_ID")?.trim(),
            get("AZURE_CLIENT_ID")?.trim(),
            get("AZURE_FEDERATED_TOKEN_FILE")?,
        );
        settings.plain_http = plain_http;
        if let Some(authority) = get("AZURE_AUTHORITY_HOST") {
            settings.authority_host = authority.trim().to_string();
        }
        Some(settings)
    }
}

/// ACR credentials obtained through AKS Workload Identity (see the module docs).
pub struct AcrProvider {
    settings: AcrSettings,
    /// Kept as the error text if the client could not be built, so construction cannot fail
    /// and the problem is reported where credentials are needed.
    client: Result<reqwest::Client, String>,
}

impl AcrProvider {
    /// A provider with explicit settings (tests, or a caller that read them elsewhere).
    pub fn new(settings: AcrSettings) -> AcrProvider {
        let client = reqwest::Client::builder()
            .user_agent(concat!("ocync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(settings.timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", crate::text::error_chain(&e)));
        AcrProvider { settings, client }
    }

    /// A provider for `registry_host` from the workload identity variables, or `None` unless
    /// `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE` are all set.
    /// `AZURE_AUTHORITY_HOST` defaults to [`DEFAULT_AUTHORITY_HOST`].
    pub fn from_environment(registry_host: &str, plain_http: bool) -> Option<AcrProvider> {
        AcrSettings::from_environment(registry_host, plain_http).map(AcrProvider::new)
    }

    /// The settings in use.
    pub fn settings(&self) -> &AcrSettings {
        &self.settings
    }

    async fn fetch_credentials(&self) -> Result<Expiring, Error> {
        let client = self.client.as_ref().map_err(Error::platform)?;
        let assertion = self.read_federated_token().await?;
        let access_token = self.entra_token(client, &assertion).await?;
        let refresh_token = self.exchange(client, &access_token, &assertion).await?;
        let expires_at =
            jwt_expiry(&refresh_token).unwrap_or_else(|| SystemTime::now() + ASSUMED_REFRESH_TOKEN_LIFETIME);
        Ok(Expiring {
            credentials: Credentials::Basic {
                username: ACR_REFRESH_TOKEN_USERNAME.to_string(),
                password: Secret::new(refresh_token),
            },
            expires_at: Some(expires_at),
        })
    }

    /// The current projected token. Surrounding whitespace is dropped: a JWT has none, and a
    /// hand-written file often ends with a newline.
    async fn read_federated_token(&self) -> Result<String, Error> {
        let path = &self.settings.federated_token_file;
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| Error::file(FEDERATED_TOKEN_FILE, path, format!("cannot be read: {e}")))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Error::file(FEDERATED_TOKEN_FILE, path, "is empty"));
        }
        Ok(token.to_string())
    }

    /// Hop 2: the federated token for an Entra ID access token.
    async fn entra_token(&self, client: &reqwest::Client, assertion: &str) -> Result<String, Error> {
        let url = entra_token_url(&self.settings.authority_host, &self.settings.tenant_id)?;
        let step = format!("Entra ID token request (POST {url})");
        let request =
            TokenRequest { url: url.as_str(), step: &step, secrets: &[assertion], timeout: self.settings.timeout };
        let answer =
            request.post(client, &entra_form(&self.settings.client_id, assertion, &self.settings.scope)).await?;
        let token: EntraTokenAnswer = serde_json::from_slice(&answer)
            .map_err(|_| request.answer_error("the answer is not JSON with an access_token"))?;
        Ok(token.access_token)
    }

    /// Hop 3: the Entra ID access token for an ACR refresh token.
    async fn exchange(&self, client: &reqwest::Client, access_token: &str, assertion: &str) -> Result<String, Error> {
        let url = exchange_url(&self.settings.registry, self.settings.plain_http)?;
        let step = format!("ACR token exchange (POST {url})");
        let secrets = [assertion, access_token];
        let request =
            TokenRequest { url: url.as_str(), step: &step, secrets: &secrets, timeout: self.settings.timeout };
        let answer = request
            .post(client, &exchange_form(&self.settings.registry, &self.settings.tenant_id, access_token))
            .await?;
        let exchanged: ExchangeAnswer = serde_json::from_slice(&answer)
            .map_err(|_| request.answer_error("the answer is not JSON with a refresh_token"))?;
        if exchanged.refresh_token.is_empty() {
            return Err(request.answer_error("the answer holds an empty refresh_token"));
        }
        Ok(exchanged.refresh_token)
    }
}

impl CredentialProvider for AcrProvider {
    fn describe(&self) -> String {
        format!(
            "Azure workload identity for {} (tenant {}, client {})",
            self.settings.registry, self.settings.tenant_id, self.settings.client_id
        )
    }

    fn fetch(&self) -> ProviderFuture<'_> {
        Box::pin(self.fetch_credentials())
    }
}

#[derive(Deserialize)]
struct EntraTokenAnswer {
    access_token: String,
}

#[derive(Deserialize)]
struct ExchangeAnswer {
    refresh_token: String,
}

/// `{authority}/{tenant}/oauth2/v2.0/token`. The tenant is added as an encoded path segment,
/// so an odd value cannot turn into a query or another path.
fn entra_token_url(authority_host: &str, tenant_id: &str) -> Result<Url, Error> {
    let invalid = |why: &str| Error::platform(format!("invalid AZURE_AUTHORITY_HOST {authority_host:?}: {why}"));
    let mut url = Url::parse(authority_host).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid("not an http(s) URL"));
    }
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| invalid("not a base URL"))?
        .pop_if_empty()
        .extend([tenant_id, "oauth2", "v2.0", "token"]);
    Ok(url)
}

/// `{scheme}://{registry}/oauth2/exchange`.
fn exchange_url(registry: &str, plain_http: bool) -> Result<Url, Error> {
    let scheme = if plain_http { "http" } else { "https" };
    Url::parse(&format!("{scheme}://{registry}/oauth2/exchange"))
        .map_err(|e| Error::platform(format!("invalid registry address {registry:?}: {e}")))
}

/// The client-credentials request with the federated token as client assertion.
fn entra_form<'a>(client_id: &'a str, assertion: &'a str, scope: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_assertion_type", JWT_BEARER_ASSERTION),
        ("client_assertion", assertion),
        ("scope", scope),
    ]
}

/// ACR's exchange of an Entra ID access token for a refresh token.
fn exchange_form<'a>(registry: &'a str, tenant_id: &'a str, access_token: &'a str) -> [(&'static str, &'a str); 4] {
    [("grant_type", "access_token"), ("service", registry), ("tenant", tenant_id), ("access_token", access_token)]
}

/// The `exp` claim of a JWT, without checking its signature (it is only used to decide when to
/// fetch again; the registry is what verifies it).
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    let seconds = exp.as_u64().or_else(|| exp.as_f64().filter(|s| s.is_finite() && *s >= 0.0).map(|s| s as u64))?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::oauth::encode_form;
    use super::*;

    fn decode(form: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(form.as_bytes()).into_owned().collect()
    }

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"RS256","typ":"JWT"}"#), b64(claims))
    }

    #[test]
    fn entra_form_carries_the_federated_token_as_a_jwt_bearer_assertion() {
        // `+`, `/`, `=` and `&` must survive: a raw `+` would decode as a space.
        let assertion = "eyJh.b+c/d=e&f";
        let form = encode_form(&entra_form("client-1", assertion, ACR_SCOPE));
        assert!(!form.contains('/') && !form.contains("+c"), "reserved characters are encoded: {form}");
        assert_eq!(
            decode(&form),
            [
                ("grant_type", "client_credentials"),
                ("client_id", "client-1"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion),
                ("scope", "https://containerregistry.azure.net/.default"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn exchange_form_names_the_registry_as_service() {
        let form = encode_form(&exchange_form("myreg.azurecr.io", "tenant-1", "access token+/="));
        assert_eq!(
            decode(&form),
            [
                ("grant_type", "access_token"),
                ("service", "myreg.azurecr.io"),
                ("tenant", "tenant-1"),
                ("access_token", "access token+/="),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn token_url_joins_authority_and_tenant_with_or_without_a_trailing_slash() {
        for authority in ["https://login.microsoftonline.com/", "https://login.microsoftonline.com"] {
            assert_eq!(
                entra_token_url(authority, "72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap().as_str(),
                "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
            );
        }
        assert_eq!(
            entra_token_url("http://127.0.0.1:9/prefix/", "contoso.onmicrosoft.com").unwrap().as_str(),
            "http://127.0.0.1:9/prefix/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        // A tenant cannot smuggle in a query or extra path segments.
        let odd = entra_token_url("https://login.example/", "a/b?c").unwrap();
        assert_eq!(odd.path(), "/a%2Fb%3Fc/oauth2/v2.0/token");
        assert_eq!(odd.query(), None);
        let error = entra_token_url("login.microsoftonline.com", "t").unwrap_err().to_string();
        assert!(error.contains("AZURE_AUTHORITY_HOST"), "{error}");
        assert!(entra_token_url("ftp://login.example/", "t").is_err());
    }

    #[test]
    fn exchange_url_follows_the_registry_scheme() {
        assert_eq!(
            exchange_url("myreg.azurecr.io", false).unwrap().as_str(),
            "https://myreg.azurecr.io/oauth2/exchange"
        );
        assert_eq!(exchange_url("127.0.0.1:5000", true).unwrap().as_str(), "http://127.0.0.1:5000/oauth2/exchange");
    }

    #[test]
    fn jwt_expiry_reads_exp_from_the_payload() {
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1700000000}"#)), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1700000000.5}"#)), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        // Padded base64url is tolerated.
        let padded = format!("e30.{}.c2ln", base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":12}"#));
        assert_eq!(jwt_expiry(&padded), Some(UNIX_EPOCH + Duration::from_secs(12)));
        assert_eq!(jwt_expiry(&jwt(r#"{"iat":1}"#)), None, "no exp");
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":"soon"}"#)), None, "exp not a number");
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":-5}"#)), None, "exp before 1970");
        // Past the clock's range: no expiry known (used until a 401), not a panic.
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":18446744073709551615}"#)), None, "u64::MAX");
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1e300}"#)), None, "beyond u64");
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.b.c.d"), None);
        assert_eq!(jwt_expiry("e30.!!!.c2ln"), None);
    }

    #[test]
    fn settings_need_all_three_variables() {
        let full: HashMap<&str, &str> = [
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"),
        ]
        .into();
        let from = |vars: &HashMap<&str, &str>| {
            AcrSettings::from_lookup("myreg.azurecr.io", false, |name| vars.get(name).map(|v| v.to_string()))
        };
        let settings = from(&full).expect("all three set");
        assert_eq!(settings.tenant_id, "tenant-1");
        assert_eq!(settings.client_id, "client-1");
        assert_eq!(settings.federated_token_file, PathBuf::from("/var/run/secrets/azure/tokens/azure-identity-token"));
        assert_eq!(settings.authority_host, DEFAULT_AUTHORITY_HOST);
        assert_eq!(settings.scope, ACR_SCOPE);
        assert_eq!(settings.registry, "myreg.azurecr.io");

        for missing in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"] {
            let mut vars = full.clone();
            vars.remove(missing);
            assert!(from(&vars).is_none(), "{missing} unset");
            vars.insert(missing, " ");
            assert!(from(&vars).is_none(), "{missing} blank");
        }

        let mut sovereign = full.clone();
        sovereign.insert("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/");
        assert_eq!(from(&sovereign).unwrap().authority_host, "https://login.microsoftonline.us/");
    }

    #[tokio::test]
    async fn a_missing_token_file_is_reported_with_its_variable_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let mut settings = AcrSettings::new("127.0.0.1:9", "tenant-1", "client-1", &path);
        // Port 9 (discard) is never asked: the file is read first.
        settings.authority_host = "http://127.0.0.1:9/".into();
        let error = AcrProvider::new(settings).fetch().await.unwrap_err().to_string();
        assert!(error.contains("AZURE_FEDERATED_TOKEN_FILE") && error.contains("absent"), "{error}");

        std::fs::write(&path, "\n").unwrap();
        let mut settings = AcrSettings::new("127.0.0.1:9", "tenant-1", "client-1", &path);
        settings.authority_host = "http://127.0.0.1:9/".into();
        let error = AcrProvider::new(settings).fetch().await.unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
    }

    #[test]
    fn describe_names_the_identity_but_no_secret() {
        let provider = AcrProvider::new(AcrSettings::new("myreg.azurecr.io", "tenant-1", "client-1", "/token"));
        assert_eq!(
            provider.describe(),
            "Azure workload identity for myreg.azurecr.io (tenant tenant-1, client client-1)"
        );
    }
}
