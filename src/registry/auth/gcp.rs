//! Google Artifact Registry (`*-docker.pkg.dev`) and Container Registry (`gcr.io`,
//! `*.gcr.io`): a Google OAuth2 access token from Application Default Credentials, presented
//! as Basic `oauth2accesstoken:<token>`. The registry's own `/v2/token` exchange then happens
//! in the [`Authenticator`](super::Authenticator) like for any other Bearer registry.
//!
//! Where the identity comes from follows ADC (AIP-4110), the order gcloud and every Google
//! client library use:
//!
//! 1. the JSON file named by `GOOGLE_APPLICATION_CREDENTIALS`;
//! 2. gcloud's ADC file (`gcloud auth application-default login`):
//!    `$HOME/.config/gcloud/application_default_credentials.json`
//!    (`%APPDATA%\gcloud\…` on Windows);
//! 3. the metadata server (GCE, Cloud Run, GKE with Workload Identity).
//!
//! A file may hold a service account key, an `authorized_user` (gcloud login), an
//! `impersonated_service_account` or an `external_account` (Workload Identity Federation).
//!
//! Service account keys are exchanged for an access token at the key's `token_uri` with a
//! signed JWT assertion (RFC 7523, Google's "OAuth 2.0 for server to server applications").
//! `google-cloud-auth` would instead hand out a *self-signed JWT*, which Google's gRPC APIs
//! accept in place of an access token but which is no OAuth access token: the Docker
//! registry front ends are not documented to accept one, while every Docker credential
//! helper (gcloud, docker-credential-gcr, go-containerregistry) presents a real access token.
//! The crate still signs the assertion, so the key is handled only by it. Every other source
//! goes through `google-cloud-auth` as is.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use google_cloud_auth::credentials::{
    AccessTokenCredentials, external_account, impersonated, mds, service_account, user_account,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::oauth::TokenRequest;
use super::{CredentialProvider, Credentials, Error, Expiring, ProviderFuture, Secret};

/// The OAuth scope requested: Artifact Registry and Container Registry accept it for pull and
/// push (the narrower `devstorage` scopes only work for the old GCR storage buckets).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The user name Google's registries expect with an access token as password.
pub const ACCESS_TOKEN_USERNAME: &str = "oauth2accesstoken";

/// A credentials file, as messages name it.
const CREDENTIALS_FILE: &str = "Google credentials file";
/// A service account key file, as messages name it.
const SERVICE_ACCOUNT_KEY: &str = "service account key";

/// The environment variable naming a credentials file (ADC step 1).
const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// Where a service account key without `token_uri` is exchanged.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The grant type of a JWT assertion (RFC 7523 section 2.1).
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long an assertion is valid: Google's maximum, one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// Backdate an assertion's `iat` by this much: Google refuses assertions "issued" in its
/// future, and our clock may run slightly ahead of Google's.
const CLOCK_SKEW: Duration = Duration::from_secs(10);

/// The whole token request to a `token_uri`.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The expiry claimed for a token from `google-cloud-auth`. The crate does not tell when its
/// tokens expire, but it caches them and renews them 4 minutes before they do, so asking it
/// again is free and always gets a token with minutes to spare. ocync's provider cache
/// refreshes 5 minutes before a stated expiry, so claiming 6 minutes makes it ask the crate
/// again after about a minute. Claiming no expiry instead would keep the token past its hour
/// until a registry token exchange is refused with it, failing that request.
const LIBRARY_TOKEN_CLAIMED_LIFETIME: Duration = Duration::from_secs(6 * 60);

/// Google access tokens from Application Default Credentials, for GAR and GCR.
pub struct GcpProvider {
    /// For `describe`: what the credentials are and where they came from.
    origin: String,
    source: Source,
}

/// How tokens are obtained.
enum Source {
    /// A service account key: signed assertion exchanged at `token_uri` by us.
    ServiceAccount(Box<ServiceAccount>),
    /// Anything else, through `google-cloud-auth`: `json` is the credentials file, or `None`
    /// for the metadata server.
    Library {
        json: Option<Value>,
        /// Built on first use: building starts the crate's background refresh task, which
        /// needs a tokio runtime, and asks for a token at once (a metadata server probe on a
        /// laptop, for a registry a `validate` never contacts).
        credentials: tokio::sync::OnceCell<AccessTokenCredentials>,
    },
}

/// What the assertion for a service account needs.
struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: String,
    /// Signs with the key's private key (RS256), inside `google-cloud-auth`.
    signer: google_cloud_auth::signer::Signer,
    http: reqwest::Client,
}

/// The fields of a service account key we read ourselves; the crate reads the rest.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A token endpoint's answer (RFC 6749 section 5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl GcpProvider {
    /// Application Default Credentials, found the way gcloud and Google's client libraries
    /// find them: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's ADC file, then the metadata
    /// server. A file that is named but unreadable, not JSON or of an unknown type is an
    /// error naming the file; whether the metadata server answers is only known when a token
    /// is first needed.
    pub fn from_environment() -> Result<GcpProvider, Error> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Credentials from the JSON file at `path` (any type ADC accepts), regardless of the
    /// environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<GcpProvider, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(CREDENTIALS_FILE, path, format!("cannot be read: {e}")))?;
        // serde_json's syntax errors give a line and column, never the text around them.
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(CREDENTIALS_FILE, path, format!("is not valid JSON: {e}")))?;
        Self::from_json(json, path)
    }

    /// The metadata server's default identity (GCE, Cloud Run, GKE Workload Identity): ADC's
    /// last resort, when no credentials file was found (its errors say so).
    fn metadata_server() -> GcpProvider {
        GcpProvider {
            origin: "metadata server".to_string(),
            source: Source::Library { json: None, credentials: tokio::sync::OnceCell::new() },
        }
    }

    /// ADC with `env` standing in for the process environment.
    fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<GcpProvider, Error> {
        if let Some(named) = env(CREDENTIALS_VAR).filter(|value| !value.is_empty()) {
            return Self::from_file(&named)
                .map_err(|e| Error::Variable { variable: CREDENTIALS_VAR, source: Box::new(e) });
        }
        match gcloud_adc_file(env) {
            Some(path) if path.exists() => Self::from_file(&path),
            _ => Ok(Self::metadata_server()),
        }
    }

    /// Credentials from a parsed credentials file; `path` only names it in messages.
    fn from_json(json: Value, path: &Path) -> Result<GcpProvider, Error> {
        let file = path.display();
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::file(CREDENTIALS_FILE, path, "has no \"type\""))?
            .to_string();
        let source = match kind.as_str() {
            "service_account" => Source::ServiceAccount(Box::new(ServiceAccount::new(json, path)?)),
            "authorized_user" | "impersonated_service_account" | "external_account" => {
                Source::Library { json: Some(json), credentials: tokio::sync::OnceCell::new() }
            }
            other => {
                return Err(Error::file(
                    CREDENTIALS_FILE,
                    path,
                    format!(
                        "has type \"{other}\"; expected service_account, authorized_user, \
                         impersonated_service_account or external_account"
                    ),
                ));
            }
        };
        let origin = match &source {
            Source::ServiceAccount(account) => format!("service account {} from {file}", account.client_email),
            Source::Library { .. } => format!("{kind} from {file}"),
        };
        Ok(GcpProvider { origin, source })
    }
}

impl std::fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GcpProvider").field(&self.origin).finish()
    }
}

impl CredentialProvider for GcpProvider {
    fn describe(&self) -> String {
        format!("Google Application Default Credentials ({})", self.origin)
    }

    fn fetch(&self) -> ProviderFuture<'_> {
        Box::pin(async move {
            let (token, expires_at) = match &self.source {
                Source::ServiceAccount(account) => account.access_token().await?,
                Source::Library { json, credentials } => {
                    let credentials = credentials.get_or_try_init(|| async { build_library(json.clone()) }).await?;
                    let token = credentials.access_token().await.map_err(|e| {
                        let hint = if json.is_none() { metadata_server_hint() } else { String::new() };
                        Error::platform(format!("{}{hint}", error_chain(&e)))
                    })?;
                    (token.token, Some(SystemTime::now() + LIBRARY_TOKEN_CLAIMED_LIFETIME))
                }
            };
            Ok(Expiring {
                credentials: Credentials::Basic {
                    username: ACCESS_TOKEN_USERNAME.to_string(),
                    password: Secret::new(token),
                },
                expires_at,
            })
        })
    }
}

impl ServiceAccount {
    /// Reads what the assertion needs from a key file's JSON; `path` names it in messages.
    fn new(json: Value, path: &Path) -> Result<ServiceAccount, Error> {
        let key: ServiceAccountKey = serde_json::from_value(json.clone())
            .map_err(|e| Error::file(SERVICE_ACCOUNT_KEY, path, format!("is malformed: {e}")))?;
        let client_email =
            key.client_email.ok_or_else(|| Error::file(SERVICE_ACCOUNT_KEY, path, "has no client_email"))?;
        if key.private_key.is_none_or(|k| k.trim().is_empty()) {
            return Err(Error::file(SERVICE_ACCOUNT_KEY, path, "has no private_key"));
        }
        let signer = service_account::Builder::new(json)
            .build_signer()
            .map_err(|e| Error::file(SERVICE_ACCOUNT_KEY, path, format!("is not usable: {}", error_chain(&e))))?;
        let http = reqwest::Client::builder()
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::platform(format!("cannot set up an HTTP client: {}", error_chain(&e))))?;
        Ok(ServiceAccount {
            client_email,
            private_key_id: key.private_key_id,
            token_uri: key.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string()),
            signer,
            http,
        })
    }

    /// A fresh access token and its expiry, from the token endpoint.
    async fn access_token(&self) -> Result<(String, Option<SystemTime>), Error> {
        let assertion = self.assertion().await?;
        // Expiry is counted from before the request, so it errs early rather than late.
        let asked_at = SystemTime::now();
        let step = format!("token request to {}", self.token_uri);
        let request =
            TokenRequest { url: &self.token_uri, step: &step, secrets: &[&assertion], timeout: TOKEN_REQUEST_TIMEOUT };
        let answer = request.post(&self.http, &[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&answer).map_err(|_| request.answer_error("the answer holds no access token"))?;
        Ok((
            answer.access_token,
            answer.expires_in.map(|secs| super::expiry_after(asked_at, Duration::from_secs(secs))),
        ))
    }

    /// The signed JWT (RS256) asking for a token with the cloud-platform scope.
    async fn assertion(&self) -> Result<String, Error> {
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::platform("the system clock is before 1970"))?
            .saturating_sub(CLOCK_SKEW)
            .as_secs();
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.private_key_id {
            // Lets Google pick the right public key of the account at once.
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.signer.sign(signing_input.as_bytes()).await.map_err(|e| {
            Error::platform(format!("cannot sign the token request with the service account key: {}", error_chain(&e)))
        })?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// `google-cloud-auth` credentials for a credentials file's JSON, or the metadata server.
fn build_library(json: Option<Value>) -> Result<AccessTokenCredentials, Error> {
    let scope = [CLOUD_PLATFORM_SCOPE];
    let built = match json {
        // No scopes for the metadata server: the VM's or pod's token carries the scopes its
        // administrator granted, which is what every Docker credential helper presents.
        None => mds::Builder::default().build_access_token_credentials(),
        Some(json) => match json.get("type").and_then(Value::as_str) {
            Some("authorized_user") => {
                user_account::Builder::new(json).with_scopes(scope).build_access_token_credentials()
            }
            Some("impersonated_service_account") => {
                impersonated::Builder::new(json).with_scopes(scope).build_access_token_credentials()
            }
            Some("external_account") => {
                external_account::Builder::new(json).with_scopes(scope).build_access_token_credentials()
            }
            other => return Err(Error::platform(format!("unsupported credentials type {other:?}"))),
        },
    };
    built.map_err(|e| Error::platform(format!("the credentials are not usable: {}", error_chain(&e))))
}

/// gcloud's ADC file (ADC step 2), per AIP-4113.
fn gcloud_adc_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if cfg!(windows) {
        env("APPDATA").map(|root| Path::new(&root).join("gcloud").join("application_default_credentials.json"))
    } else {
        env("HOME").map(|home| Path::new(&home).join(".config/gcloud/application_default_credentials.json"))
    }
}

/// Why the metadata server was asked at all, for its error.
fn metadata_server_hint() -> String {
    format!(
        " (no credentials file was found: {CREDENTIALS_VAR} is not set and gcloud's ADC file does not exist; \
         outside Google Cloud run `gcloud auth application-default login` or set {CREDENTIALS_VAR})"
    )
}

/// An error and its causes, `a: b: c` (the crates' top-level messages alone say too little),
/// without google-cloud-auth's boilerplate (see [`tidy`]).
fn error_chain(error: &dyn std::error::Error) -> String {
    crate::text::error_chain_tidied(error, tidy)
}

/// One error message without google-cloud-auth's generic wrappers: every level of its chain
/// ends in "and future attempts will not succeed" (or "may"), a gax error starts with "cannot
/// create the authentication headers", and the outermost says only that fetching failed.
fn tidy(message: &str) -> String {
    const SUFFIXES: [&str; 2] = [" and future attempts will not succeed", " but future attempts may succeed"];
    const PREFIX: &str = "cannot create the authentication headers ";
    const GENERIC: [&str; 2] =
        ["Request to fetch the token failed.", "Fetching the token resulted in transient errors."];
    let mut text = message.trim();
    for suffix in SUFFIXES {
        text = text.strip_suffix(suffix).unwrap_or(text);
    }
    text = text.strip_prefix(PREFIX).unwrap_or(text);
    if GENERIC.iter().any(|generic| text.starts_with(generic)) {
        return String::new();
    }
    text.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A key that parses; its PEM body is junk, which only matters once something is signed.
    fn service_account_json(token_uri: Option<&str>) -> Value {
        let mut key = json!({
            "type": "service_account",
            "project_id": "ocync-test",
            "private_key_id": "0123abcd",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
            "client_email": "mirror@ocync-test.iam.gserviceaccount.com",
            "client_id": "1234567890",
        });
        if let Some(uri) = token_uri {
            key["token_uri"] = json!(uri);
        }
        key
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn a_missing_credentials_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let error = GcpProvider::from_file(&missing).unwrap_err().to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        assert!(error.contains("cannot be read"), "{error}");
    }

    #[test]
    fn a_credentials_file_that_is_not_json_is_an_error_naming_it_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "key.json", "private_key = super-secret-material");
        let error = GcpProvider::from_file(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()) && error.contains("not valid JSON"), "{error}");
        assert!(!error.contains("super-secret-material"), "{error}");
    }

    #[test]
    fn unknown_or_missing_types_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "odd.json", r#"{"type": "gdch_service_account"}"#);
        let error = GcpProvider::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("gdch_service_account") && error.contains(&path.display().to_string()), "{error}");
        let path = write(dir.path(), "untyped.json", r#"{"client_email": "x"}"#);
        assert!(GcpProvider::from_file(&path).unwrap_err().to_string().contains("no \"type\""));
    }

    #[test]
    fn a_service_account_key_without_its_fields_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut key = service_account_json(None);
        key.as_object_mut().unwrap().remove("client_email");
        let path = write(dir.path(), "key.json", &key.to_string());
        let error = GcpProvider::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("client_email") && error.contains(&path.display().to_string()), "{error}");

        let mut key = service_account_json(None);
        key["private_key"] = json!("");
        let path = write(dir.path(), "key2.json", &key.to_string());
        assert!(GcpProvider::from_file(&path).unwrap_err().to_string().contains("no private_key"));
    }

    #[test]
    fn a_service_account_key_uses_its_token_uri_or_google_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "key.json", &service_account_json(Some("http://127.0.0.1:1/token")).to_string());
        let provider = GcpProvider::from_file(&path).unwrap();
        let Source::ServiceAccount(account) = &provider.source else { panic!("service account expected") };
        assert_eq!(account.token_uri, "http://127.0.0.1:1/token");
        assert_eq!(
            provider.describe(),
            format!(
                "Google Application Default Credentials (service account mirror@ocync-test.iam.gserviceaccount.com from {})",
                path.display()
            )
        );
        let path = write(dir.path(), "key2.json", &service_account_json(None).to_string());
        let provider = GcpProvider::from_file(&path).unwrap();
        let Source::ServiceAccount(account) = &provider.source else { panic!("service account expected") };
        assert_eq!(account.token_uri, DEFAULT_TOKEN_URI);
        assert!(!format!("{provider:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn adc_prefers_the_environment_variable_then_gcloud_s_file_then_the_metadata_server() {
        let dir = tempfile::tempdir().unwrap();
        let named = write(dir.path(), "named.json", &service_account_json(None).to_string());
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".config/gcloud")).unwrap();
        let user = json!({
            "type": "authorized_user",
            "client_id": "id.apps.googleusercontent.com",
            "client_secret": "secret",
            "refresh_token": "1//refresh",
        });
        let adc = write(&home.join(".config/gcloud"), "application_default_credentials.json", &user.to_string());
        let home = home.to_str().unwrap();

        let provider = GcpProvider::from_lookup(&env(&[(CREDENTIALS_VAR, named.to_str().unwrap()), ("HOME", home)]));
        assert!(provider.unwrap().describe().contains(&named.display().to_string()));

        let provider = GcpProvider::from_lookup(&env(&[(CREDENTIALS_VAR, ""), ("HOME", home)])).unwrap();
        if !cfg!(windows) {
            assert!(provider.describe().contains(&format!("authorized_user from {}", adc.display())), "{provider:?}");
        }

        let elsewhere = dir.path().join("empty-home");
        let provider = GcpProvider::from_lookup(&env(&[("HOME", elsewhere.to_str().unwrap())])).unwrap();
        assert_eq!(provider.describe(), "Google Application Default Credentials (metadata server)");
        assert!(matches!(provider.source, Source::Library { json: None, .. }));
    }

    #[test]
    fn a_credentials_variable_naming_a_missing_file_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.json");
        let error =
            GcpProvider::from_lookup(&env(&[(CREDENTIALS_VAR, missing.to_str().unwrap())])).unwrap_err().to_string();
        assert!(error.contains(CREDENTIALS_VAR) && error.contains(&missing.display().to_string()), "{error}");
    }

    #[test]
    fn google_cloud_auth_errors_lose_their_boilerplate_not_their_cause() {
        use google_cloud_auth::errors::CredentialsError;
        let cause = std::io::Error::other("connection refused");
        let inner = CredentialsError::new(false, "failed to fetch token", cause);
        let outer = CredentialsError::new(
            false,
            "Request to fetch the token failed. Subsequent calls with this credential will also fail.",
            inner,
        );
        assert_eq!(error_chain(&outer), "failed to fetch token: connection refused");
    }
}
