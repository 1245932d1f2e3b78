//! Azure Container Registry through AKS Workload Identity, against a real token-auth registry.
//!
//! The pieces: a fake Entra ID (`support::aad`) that trusts whatever the "projected" token file
//! holds; a fault proxy in front of a token-auth `docker-registry` that plays ACR's
//! `POST /oauth2/exchange` (checking the Entra ID access token and answering a refresh token)
//! and forwards everything else; and the token server, which knows the refresh token as the
//! password of ACR's null-GUID user, as ACR's `/oauth2/token` does.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ocync::registry::auth::{AcrProvider, AcrSettings, CredentialProvider, CredentialSource, Credentials};
use ocync::registry::{HttpRegistry, Registry, RegistrySettings};
use ocync::testing::testdata::{self, Built};
use serde_json::json;

use crate::support::aad::FakeAad;
use crate::support::proxy::{Action, FaultProxy, SeenRequest};
use crate::support::token::TokenServer;
use crate::support::{RegistryOptions, TestRegistry};

/// The user name ACR pairs with refresh tokens.
const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
const TENANT: &str = "0c5a8d64-1b0e-4a2f-9a3d-7e0f00ac1d00";
const CLIENT_ID: &str = "5f2b7c1e-93a4-4d8e-b0c6-ocync-test";
/// How long the fake refresh token lives (ACR's are about 3 hours).
const REFRESH_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// An unsigned JWT with `claims`: only its shape and `exp` matter to the client.
fn fake_jwt(claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "RS256", "typ": "JWT" }).to_string());
    format!("{header}.{}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()), URL_SAFE_NO_PAD.encode("signature"))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A registry behind ACR-like token auth, plus the fake Entra ID it trusts.
struct FakeAcr {
    aad: FakeAad,
    proxy: FaultProxy,
    tokens: TokenServer,
    /// The refresh token `/oauth2/exchange` hands out; its `exp` is `refresh_exp`.
    refresh_token: String,
    refresh_exp: u64,
    _registry: TestRegistry,
}

impl FakeAcr {
    /// Starts everything; Entra ID trusts what `trusted_token_file` holds when asked.
    fn start(trusted_token_file: &Path) -> FakeAcr {
        let refresh_exp = unix_now() + REFRESH_LIFETIME.as_secs();
        let refresh_token = fake_jwt(json!({ "aud": "ocync-test", "grant_type": "refresh_token", "exp": refresh_exp }));
        let tokens = TokenServer::start(&[(ACR_USER, &refresh_token)], false);
        let registry = TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), ..Default::default() });
        let aad = FakeAad::start(TENANT, CLIENT_ID, trusted_token_file);

        // The proxy's own address is the `service` to expect, known only once it runs.
        let service = Arc::new(OnceLock::<String>::new());
        let rule = {
            let (service, access_token, refresh_token) =
                (Arc::clone(&service), aad.access_token.clone(), refresh_token.clone());
            move |request: &SeenRequest| {
                if request.target.split('?').next() != Some("/oauth2/exchange") {
                    return Action::Forward;
                }
                exchange(request, service.get().map(String::as_str), &access_token, &refresh_token)
            }
        };
        let proxy = FaultProxy::start(&registry.host, rule);
        service.set(proxy.host.clone()).expect("set once");
        FakeAcr { aad, proxy, tokens, refresh_token, refresh_exp, _registry: registry }
    }

    /// Settings for a provider reading `token_file`, pointed at the fakes.
    fn settings(&self, token_file: &Path) -> AcrSettings {
        let mut settings = AcrSettings::new(&self.proxy.host, TENANT, CLIENT_ID, token_file);
        settings.plain_http = true;
        settings.authority_host = self.aad.authority.clone();
        settings.timeout = Duration::from_secs(10);
        settings
    }

    /// A registry client whose credentials come from an [`AcrProvider`] reading `token_file`.
    fn client(&self, token_file: &Path) -> HttpRegistry {
        let mut settings = RegistrySettings::new(&self.proxy.host);
        settings.plain_http = true;
        settings.credentials = CredentialSource::provided(AcrProvider::new(self.settings(token_file)));
        HttpRegistry::new(settings).expect("client for the fake ACR")
    }

    /// The `/oauth2/exchange` requests the proxy saw.
    fn exchanges(&self) -> Vec<SeenRequest> {
        self.proxy.seen().into_iter().filter(|r| r.target.starts_with("/oauth2/exchange")).collect()
    }
}

/// ACR's exchange: a form POST with the Entra ID access token for this registry and tenant.
fn exchange(request: &SeenRequest, service: Option<&str>, access_token: &str, refresh_token: &str) -> Action {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let refused = |why: &str| Action::Respond {
        status: 401,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: json!({ "errors": [{ "code": "UNAUTHORIZED", "message": why }] }).to_string(),
    };
    if request.method != "POST" {
        return refused("the exchange is a POST");
    }
    if field("grant_type") != Some("access_token") {
        return refused("grant_type must be access_token");
    }
    if field("service") != service {
        return refused("service is not this registry");
    }
    if field("tenant") != Some(TENANT) {
        return refused("wrong tenant");
    }
    if field("access_token") != Some(access_token) {
        return refused("the access token was not issued by the tenant");
    }
    Action::Respond {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: json!({ "refresh_token": refresh_token }).to_string(),
    }
}

fn image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 4096), (seed + 1, 300)], ("linux", "amd64"), false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_pushes_and_pulls_with_one_entra_token_and_one_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, fake_jwt(json!({ "sub": "system:serviceaccount:ci:ocync", "exp": unix_now() + 3600 })))
        .unwrap();
    let acr = FakeAcr::start(&token_file);
    let client = acr.client(&token_file);

    let built = image(90);
    testdata::push(&client, "team/app", "v1", &built).await.expect("push with workload identity");
    let manifest = client.get_manifest("team/app", "v1").await.expect("pull back the manifest");
    assert_eq!(&manifest.digest, built.digest());
    assert_eq!(client.list_tags("team/app").await.expect("list tags"), ["v1"]);
    for blob in built.blobs() {
        assert!(client.blob_exists("team/app", &blob.descriptor.digest).await.expect("HEAD blob"));
    }

    let aad = acr.aad.history();
    assert_eq!(aad.len(), 1, "one Entra ID token for the whole session: {aad:?}");
    assert!(aad[0].granted());
    assert_eq!(aad[0].field("client_assertion"), Some(std::fs::read_to_string(&token_file).unwrap().as_str()));
    assert_eq!(acr.exchanges().len(), 1, "one refresh token, cached across requests");
    let history = acr.tokens.history();
    assert!(!history.is_empty());
    assert!(
        history.iter().all(|r| r.granted && r.user.as_deref() == Some(ACR_USER)),
        "every registry token was asked for as ACR's refresh-token user: {history:?}"
    );
    assert!(
        history.iter().any(|r| r.scopes.iter().any(|s| s == "repository:team/app:pull,push")),
        "a push scope was granted: {history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_token_entra_id_refuses_is_an_auth_error_naming_the_step_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted-token");
    let presented = dir.path().join("stale-token");
    let trusted_token = fake_jwt(json!({ "sub": "system:serviceaccount:ci:ocync", "exp": unix_now() + 3600 }));
    let wrong_token = fake_jwt(json!({ "sub": "system:serviceaccount:ci:someone-else", "exp": unix_now() + 3600 }));
    std::fs::write(&trusted, &trusted_token).unwrap();
    std::fs::write(&presented, &wrong_token).unwrap();
    let acr = FakeAcr::start(&trusted);

    let error = testdata::push(&acr.client(&presented), "team/app", "v1", &image(92))
        .await
        .expect_err("Entra ID refuses the assertion");
    let text = error.to_string();
    assert!(error.is_auth(), "expected an auth error, got: {text}");
    assert!(text.contains("Entra ID token request") && text.contains("401"), "names the step and status: {text}");
    assert!(text.contains("AADSTS700211"), "quotes Entra ID's error code: {text}");
    for secret in [&wrong_token, &trusted_token, &acr.aad.access_token, &acr.refresh_token] {
        assert!(!text.contains(secret.as_str()), "a token leaked into the error: {text}");
    }
    // The payload alone would betray the token too.
    assert!(!text.contains(wrong_token.split('.').nth(1).unwrap()), "{text}");

    let aad = acr.aad.history();
    assert_eq!(aad.len(), 1, "{aad:?}");
    assert_eq!(aad[0].status, 401);
    assert!(acr.exchanges().is_empty(), "no exchange without an Entra ID token");
    assert_eq!(acr.tokens.requests(), 0, "no registry token without credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_read_again_on_each_fetch_and_the_refresh_token_expiry_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    let first = fake_jwt(json!({ "sub": "system:serviceaccount:ci:ocync", "n": 1 }));
    let rotated = fake_jwt(json!({ "sub": "system:serviceaccount:ci:ocync", "n": 2 }));
    std::fs::write(&token_file, &first).unwrap();
    let acr = FakeAcr::start(&token_file);
    let provider = AcrProvider::new(acr.settings(&token_file));

    let fetched = provider.fetch().await.expect("first fetch");
    match &fetched.credentials {
        Credentials::Basic { username, password } => {
            assert_eq!(username, ACR_USER);
            assert_eq!(password.expose(), acr.refresh_token);
        }
        other => panic!("expected Basic credentials, got {other:?}"),
    }
    assert_eq!(fetched.expires_at, Some(UNIX_EPOCH + Duration::from_secs(acr.refresh_exp)));

    // The kubelet rotates the projected token; the next fetch presents the new one.
    std::fs::write(&token_file, &rotated).unwrap();
    provider.fetch().await.expect("fetch after rotation");
    let assertions: Vec<String> =
        acr.aad.history().iter().map(|r| r.field("client_assertion").unwrap_or_default().to_string()).collect();
    assert_eq!(assertions, [first, rotated]);
    assert_eq!(acr.exchanges().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_the_registry_refuses_names_the_exchange_step_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    let federated = fake_jwt(json!({ "sub": "system:serviceaccount:ci:ocync" }));
    std::fs::write(&token_file, &federated).unwrap();
    let acr = FakeAcr::start(&token_file);
    // The same proxy under another name: the `service` no longer matches, so ACR refuses.
    let mut settings = acr.settings(&token_file);
    settings.registry = acr.proxy.host.replace("127.0.0.1", "localhost");

    let error = AcrProvider::new(settings).fetch().await.expect_err("the exchange is refused").to_string();
    assert!(error.contains("ACR token exchange") && error.contains("/oauth2/exchange"), "names the step: {error}");
    assert!(error.contains("401") && error.contains("service is not this registry"), "{error}");
    for secret in [&federated, &acr.aad.access_token, &acr.refresh_token] {
        assert!(!error.contains(secret.as_str()), "a token leaked into the error: {error}");
    }
    assert_eq!(acr.aad.history().len(), 1);
    assert_eq!(acr.exchanges().len(), 1);
}
