//! Google Artifact Registry / Container Registry authentication, end to end on loopback: a
//! Google credentials file whose `token_uri` is a local OAuth endpoint, the access token it
//! issues presented as `oauth2accesstoken` to a token-auth registry, exactly as GAR expects.

use std::path::{Path, PathBuf};

use ocync::registry::auth::{CredentialSource, GcpProvider};
use ocync::registry::{HttpRegistry, Registry, RegistrySettings};
use ocync::testing::testdata::{self, Built};
use serde_json::Value;

use crate::support::oauth::{JWT_BEARER, OAuthServer};
use crate::support::token::TokenServer;
use crate::support::{RegistryOptions, TestRegistry};

const ACCESS_TOKEN: &str = "ya29.ocync-test-access-token";
const CLIENT_EMAIL: &str = "mirror@ocync-test.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

fn image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 3000)], ("linux", "amd64"), false))
}

/// Writes a credentials file, as `gcloud` or the IAM console would.
fn credentials_file(dir: &Path, json: &Value) -> PathBuf {
    let path = dir.join("credentials.json");
    std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).expect("write the credentials file");
    path
}

/// A token-auth registry that knows only `oauth2accesstoken` with the OAuth server's token.
fn gar_like_registry() -> (TokenServer, TestRegistry) {
    let tokens = TokenServer::start(&[("oauth2accesstoken", ACCESS_TOKEN)], false);
    let registry = TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), ..Default::default() });
    (tokens, registry)
}

fn client(registry: &TestRegistry, provider: GcpProvider) -> HttpRegistry {
    let mut settings = RegistrySettings::new(&registry.host);
    settings.plain_http = true;
    settings.credentials = CredentialSource::provided(provider);
    HttpRegistry::new(settings).expect("client for the test registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_is_exchanged_at_its_token_uri_once_and_opens_the_registry() {
    let oauth = OAuthServer::start(ACCESS_TOKEN);
    let key = oauth.service_account_key(CLIENT_EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let provider = GcpProvider::from_file(credentials_file(dir.path(), &key)).expect("a valid service account key");
    let (tokens, registry) = gar_like_registry();
    let client = client(&registry, provider);

    // Two repositories and a read: several registry token exchanges, one Google token.
    let (first, second) = (image(71), image(72));
    testdata::push(&client, "ocync-test/mirror/app", "v1", &first)
        .await
        .unwrap_or_else(|e| panic!("push with a service account: {e}\nregistry log:\n{}", registry.log_text()));
    testdata::push(&client, "ocync-test/mirror/other", "v1", &second).await.expect("push to a second repository");
    let manifest = client.get_manifest("ocync-test/mirror/app", "v1").await.expect("read the image back");
    assert_eq!(&manifest.digest, first.digest());
    assert_eq!(client.list_tags("ocync-test/mirror/other").await.expect("list tags"), ["v1"]);

    let history = tokens.history();
    assert!(history.len() >= 2, "one token exchange per repository at least: {history:?}");
    assert!(
        history.iter().all(|r| r.granted && r.user.as_deref() == Some("oauth2accesstoken")),
        "every exchange presented oauth2accesstoken with the Google token: {history:?}"
    );

    let requests = oauth.requests();
    assert_eq!(requests.len(), 1, "the access token is fetched once and cached: {requests:?}");
    let request = &requests[0];
    assert!(request.granted, "{request:?}");
    assert_eq!(request.grant_type(), Some(JWT_BEARER));
    let (header, claims) = request.assertion().expect("a JWT assertion");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], key["private_key_id"]);
    assert_eq!(claims["iss"], CLIENT_EMAIL);
    assert_eq!(claims["scope"], CLOUD_PLATFORM);
    assert_eq!(claims["aud"], oauth.token_uri.as_str());
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 3600, "Google refuses assertions living over an hour: {claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_user_file_is_refreshed_through_google_cloud_auth() {
    let oauth = OAuthServer::start(ACCESS_TOKEN);
    let user = oauth.authorized_user("1//ocync-test-refresh-token");
    let dir = tempfile::tempdir().unwrap();
    let provider = GcpProvider::from_file(credentials_file(dir.path(), &user)).expect("a valid authorized_user file");
    let (tokens, registry) = gar_like_registry();
    let client = client(&registry, provider);

    let built = image(73);
    testdata::push(&client, "ocync-test/mirror/user", "v1", &built)
        .await
        .unwrap_or_else(|e| panic!("push with user credentials: {e}\nregistry log:\n{}", registry.log_text()));
    let manifest = client.get_manifest("ocync-test/mirror/user", "v1").await.expect("read the image back");
    assert_eq!(&manifest.digest, built.digest());
    testdata::push(&client, "ocync-test/mirror/user2", "v1", &image(74)).await.expect("push to a second repository");

    let history = tokens.history();
    assert!(history.len() >= 2 && history.iter().all(|r| r.granted && r.user.as_deref() == Some("oauth2accesstoken")));
    let requests = oauth.requests();
    assert_eq!(requests.len(), 1, "google-cloud-auth caches the token: {requests:?}");
    assert_eq!(requests[0].grant_type(), Some("refresh_token"));
    assert_eq!(requests[0].params.get("refresh_token").map(String::as_str), Some("1//ocync-test-refresh-token"));
    let scope = requests[0].params.get("scope").or(requests[0].params.get("scopes"));
    assert_eq!(scope.map(String::as_str), Some(CLOUD_PLATFORM), "{:?}", requests[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_service_account_is_an_auth_error_that_says_why_without_secrets() {
    let oauth = OAuthServer::start(ACCESS_TOKEN);
    let key = oauth.unknown_service_account_key(CLIENT_EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let provider = GcpProvider::from_file(credentials_file(dir.path(), &key)).expect("the file itself is valid");
    let (tokens, registry) = gar_like_registry();
    let client = client(&registry, provider);

    let error = client.get_manifest("ocync-test/mirror/app", "v1").await.expect_err("the key is refused");
    assert!(error.is_auth(), "a refused identity is an auth failure (exit code 4): {error}");
    let text = error.to_string();
    assert!(text.contains("invalid_grant") && text.contains("Invalid JWT Signature"), "{text}");
    assert!(text.contains(CLIENT_EMAIL), "the error names the identity: {text}");
    let private_key = key["private_key"].as_str().unwrap();
    let key_body = private_key.lines().nth(1).unwrap();
    assert!(!text.contains(key_body), "the private key leaked: {text}");
    let assertion = oauth.requests()[0].params["assertion"].clone();
    assert!(!text.contains(&assertion[..40]), "the assertion leaked: {text}");
    assert_eq!(tokens.requests(), 0, "no registry token exchange without a Google token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_user_refresh_token_is_an_auth_error_without_the_token() {
    let oauth = OAuthServer::start(ACCESS_TOKEN);
    let mut user = oauth.authorized_user("1//ocync-test-refresh-token");
    user["refresh_token"] = "1//ocync-revoked-refresh-token".into();
    let dir = tempfile::tempdir().unwrap();
    let provider = GcpProvider::from_file(credentials_file(dir.path(), &user)).expect("the file itself is valid");
    let (_tokens, registry) = gar_like_registry();
    let client = client(&registry, provider);

    let error = client.get_manifest("ocync-test/mirror/app", "v1").await.expect_err("the token is revoked");
    assert!(error.is_auth(), "{error}");
    let text = error.to_string();
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(!text.contains("ocync-revoked-refresh-token") && !text.contains("ocync-test-client-secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocync_sync_with_auth_type_gar_uses_application_default_credentials() {
    let oauth = OAuthServer::start(ACCESS_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let key_file = credentials_file(dir.path(), &oauth.service_account_key(CLIENT_EMAIL));
    let (tokens, gar) = gar_like_registry();
    let source = TestRegistry::plain();
    let built = image(80);
    crate::copy::seed(&source, "team/app", "v1", &built).await;
    let config = crate::support::tools::TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  gar: {{ url: \"http://{}\", auth_type: gar }}\n\
         mappings:\n  - from: team/app\n    to: my-project/my-repo/app\n    source: up\n    targets: gar\n",
        source.host, gar.host
    ));

    let output = crate::copy::ocync_with_env(
        &["sync", "--config", &config.path],
        &[("GOOGLE_APPLICATION_CREDENTIALS", key_file.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", crate::copy::describe(&output));
    assert_eq!(oauth.requests().len(), 1);
    assert!(tokens.history().iter().all(|r| r.user.as_deref() == Some("oauth2accesstoken")));
    let client = gar.client(ocync::registry::auth::Credentials::Basic {
        username: "oauth2accesstoken".into(),
        password: ocync::registry::auth::Secret::new(ACCESS_TOKEN),
    });
    assert_eq!(&client.get_manifest("my-project/my-repo/app", "v1").await.unwrap().digest, built.digest());
}
