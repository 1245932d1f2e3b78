//! Checks of the test harness itself: the generated TLS certificates satisfy rustls, and the
//! token server's tokens satisfy distribution's token auth. If these fail, the HTTPS and
//! Bearer tests elsewhere cannot be trusted either way.

use ocync::registry::auth::{Credentials, Secret};
use ocync::registry::{Error, HttpRegistry, Registry, RegistrySettings};
use ocync::testing::testdata::{self, Built};

use crate::support::registry::RegistryAuth;
use crate::support::token::TokenServer;
use crate::support::{RegistryOptions, TestRegistry, tls};

fn small_image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 2048)], ("linux", "amd64"), false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_registry_is_trusted_with_the_ca_file_and_only_with_it() {
    let ca = tls::generate();
    let registry = TestRegistry::start(RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() });

    let mut settings = RegistrySettings::new(&registry.host);
    settings.ca_file = Some(ca.ca_cert.clone());
    let trusting = HttpRegistry::new(settings).expect("client trusting the test CA");
    let built = small_image(1);
    testdata::push(&trusting, "harness/tls", "v1", &built).await.expect("push over TLS with the CA trusted");
    assert_eq!(trusting.list_tags("harness/tls").await.expect("list tags over TLS"), ["v1"]);

    // Same registry, system roots only: the handshake must fail, as a network error.
    let untrusting = HttpRegistry::new(RegistrySettings::new(&registry.host)).expect("client with system roots");
    let error = untrusting
        .blob_exists("harness/tls", &built.blobs()[0].descriptor.digest)
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(matches!(error, Error::Network { .. }), "expected a network error, got: {error}");
    assert!(error.to_string().contains("certificate"), "the error should name the certificate: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_grants_users_everything_and_anonymous_callers_pull() {
    let tokens = TokenServer::start(&[("alice", "s3cret")], true);
    let registry = TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), tls: None });
    assert!(matches!(tokens.registry_auth(), RegistryAuth::Token { .. }));

    let alice = registry.client(Credentials::Basic { username: "alice".into(), password: Secret::new("s3cret") });
    let built = small_image(2);
    testdata::push(&alice, "team/app", "v1", &built)
        .await
        .unwrap_or_else(|e| panic!("push with a user's token: {e}\nregistry log:\n{}", registry.log_text()));

    let anonymous = registry.anonymous_client();
    let manifest = anonymous.get_manifest("team/app", "v1").await.expect("anonymous pull");
    assert_eq!(&manifest.digest, built.digest());
    let error = testdata::push(&anonymous, "team/app", "v2", &small_image(3))
        .await
        .expect_err("anonymous tokens do not allow push");
    assert!(error.is_auth(), "expected an auth error, got: {error}");

    let mallory = registry.client(Credentials::Basic { username: "alice".into(), password: Secret::new("wrong") });
    let error = mallory.get_manifest("team/app", "v1").await.expect_err("a wrong password gets no token");
    assert!(error.is_auth(), "expected an auth error, got: {error}");

    assert!(tokens.requests() > 0);
    let history = tokens.history();
    assert!(
        history.iter().any(|r| r.granted
            && r.user.as_deref() == Some("alice")
            && r.scopes.iter().any(|s| s == "repository:team/app:pull,push")),
        "alice asked for and got a push scope: {history:?}"
    );
    assert!(history.iter().any(|r| r.granted && r.user.is_none()), "anonymous callers got tokens: {history:?}");
    assert!(history.iter().any(|r| !r.granted), "the wrong password was refused: {history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_without_anonymous_pull_refuses_anonymous_callers() {
    let tokens = TokenServer::start(&[("alice", "s3cret")], false);
    let registry = TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), tls: None });
    let alice = registry.client(Credentials::Basic { username: "alice".into(), password: Secret::new("s3cret") });
    testdata::push(&alice, "team/private", "v1", &small_image(4)).await.expect("push with a user's token");

    let error = registry.anonymous_client().get_manifest("team/private", "v1").await.expect_err("no anonymous tokens");
    assert!(error.is_auth(), "expected an auth error, got: {error}");
}
