//! Credentials are scoped by origin: a registry that points an upload `Location`, a tag-list
//! `Link`, a redirect or a token realm at another origin (a [`Recorder`] on another loopback
//! port, answering with a 401 that phishes for credentials) never has `Authorization` sent
//! there; a pointer from HTTPS to plain HTTP is refused; credentials are chosen per config
//! entry and scheme; and an endless token lifetime neither panics nor fails the run.

use ocync::registry::auth::{Credentials, Secret};
use ocync::registry::{HttpRegistry, RegistrySettings};
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync};
use crate::support::proxy::{Action, FaultProxy, SeenRequest};
use crate::support::recorder::Recorder;
use crate::support::registry::RegistryAuth;
use crate::support::tls::{self, TestCa};
use crate::support::token::TokenServer;
use crate::support::tools::{TempConfig, skopeo_digest};
use crate::support::{RegistryOptions, TestRegistry};

const USER: &str = "robot";
const PASSWORD: &str = "origin-s3cret";

fn image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 4096)], ("linux", "amd64"), false))
}

fn basic() -> RegistryAuth {
    RegistryAuth::Basic { username: USER.into(), password: PASSWORD.into() }
}

/// `{ username: …, password: … }` for a config entry.
fn credentials() -> String {
    format!("credentials: {{ username: {USER}, password: {PASSWORD} }}")
}

fn basic_credentials() -> Credentials {
    Credentials::Basic { username: USER.into(), password: Secret::new(PASSWORD) }
}

/// An open plain-HTTP registry holding `app:v1`.
async fn seeded_source(built: &Built) -> TestRegistry {
    let source = TestRegistry::plain();
    testdata::push(&source.anonymous_client(), "app", "v1", built).await.expect("seed the source");
    source
}

/// A client for a TLS test registry trusting `ca`.
fn tls_client(registry: &TestRegistry, ca: &TestCa, credentials: Credentials) -> HttpRegistry {
    let mut settings = RegistrySettings::new(&registry.host);
    settings.ca_file = Some(ca.ca_cert.clone());
    settings.credentials = credentials.into();
    HttpRegistry::new(settings).expect("client trusting the test CA")
}

/// Requests the proxy saw that carried credentials.
fn authorized(seen: &[SeenRequest]) -> Vec<String> {
    seen.iter().filter(|r| r.authorization.is_some()).map(|r| format!("{} {}", r.method, r.target)).collect()
}

/// A config whose one entry, `upstream`, is `source` over plain HTTP with the Basic credentials.
fn upstream_config(source: &TestRegistry) -> TempConfig {
    TempConfig::new(&format!("registries:\n  upstream: {{ url: \"http://{}\", {} }}\n", source.host, credentials()))
}

fn assert_no_panic(output: &std::process::Output) {
    assert_ne!(output.status.code(), Some(101), "ocync panicked:\n{}", describe(output));
    assert!(output.status.code().is_some(), "ocync was killed:\n{}", describe(output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_origin_gets_no_credentials() {
    let built = image(1);
    let source = seeded_source(&built).await;
    for upload in ["monolithic", "chunked"] {
        let (target, recorder) =
            (TestRegistry::start(RegistryOptions { auth: basic(), ..Default::default() }), Recorder::start());
        let location = recorder.url("v2/app/blobs/uploads/stolen-session");
        // The target opens upload sessions on another port, once it has seen the credentials.
        let proxy = FaultProxy::start(&target.host, move |request| {
            if request.method == "POST" && request.target.contains("/blobs/uploads/") && request.authorization.is_some()
            {
                return Action::Respond {
                    status: 202,
                    headers: vec![("Location".into(), location.clone())],
                    body: String::new(),
                };
            }
            Action::Forward
        });
        let config = TempConfig::new(&format!(
            "registries:\n  mirror: {{ url: \"http://{}\", upload: {upload}, {} }}\n",
            proxy.host,
            credentials()
        ));

        let output =
            ocync(&["copy", "--config", &config.path, &source.reference("app:v1"), &proxy.reference("app:v1")]);

        assert_no_panic(&output);
        assert!(!authorized(&proxy.seen()).is_empty(), "{upload}: the registry itself got the credentials");
        assert!(!recorder.requests().is_empty(), "{upload}: the upload went to the Location");
        assert_eq!(recorder.authorized(), Vec::<String>::new(), "{upload}: credentials reached another origin");
        // The other origin refused the unauthenticated upload: an authentication failure of
        // this image, named after the registry it belongs to.
        assert_eq!(output.status.code(), Some(4), "{upload}: {}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains(&proxy.host), "{upload}: {}", describe(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_link_to_another_origin_gets_no_credentials() {
    let built = image(2);
    let source = TestRegistry::start(RegistryOptions { auth: basic(), ..Default::default() });
    testdata::push(&source.client(basic_credentials()), "app", "v1", &built).await.expect("seed the source");
    let (target, recorder) = (TestRegistry::plain(), Recorder::start());
    let next = recorder.url("v2/app/tags/list?n=1&last=v1");
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.target.starts_with("/v2/app/tags/list") && request.authorization.is_some() {
            return Action::Respond {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Link".into(), format!("<{next}>; rel=\"next\"")),
                ],
                body: r#"{"name":"app","tags":["v1"]}"#.into(),
            };
        }
        Action::Forward
    });
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: \"http://{}\", {} }}\n  mirror: {{ url: \"http://{}\" }}\n\
         mappings:\n  - {{ from: app, source: upstream, targets: mirror }}\n",
        proxy.host,
        credentials(),
        target.host
    ));

    let output = ocync(&["sync", "--config", &config.path]);

    assert_no_panic(&output);
    assert!(authorized(&proxy.seen()).iter().any(|r| r.contains("/tags/list")), "the first page was authenticated");
    assert!(!recorder.requests().is_empty(), "the Link was followed");
    assert_eq!(recorder.authorized(), Vec::<String>::new(), "credentials reached another origin");
    // The listing failed at the other origin, so the mapping failed and nothing was copied.
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(describe(&output).contains(&proxy.host), "{}", describe(&output));
    assert_eq!(target.count("PUT", "/manifests/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_gets_no_credentials_and_teaches_no_realm() {
    let built = image(3);
    let recorder = Recorder::start();
    // distribution's redirect middleware sends every blob GET to "storage" on another port.
    let middleware = format!(
        "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {}\n",
        recorder.url("")
    );
    let source = TestRegistry::start_with(RegistryOptions { auth: basic(), ..Default::default() }, "", &middleware);
    testdata::push(&source.client(basic_credentials()), "app", "v1", &built).await.expect("seed the source");
    let target = TestRegistry::plain();
    let config = upstream_config(&source);

    let output = ocync(&["copy", "--config", &config.path, &source.reference("app:v1"), &target.reference("app:v1")]);

    assert_no_panic(&output);
    let requests = recorder.requests();
    assert!(requests.iter().any(|r| r.path.contains("/blobs/")), "the blob GET was redirected: {requests:?}");
    assert_eq!(recorder.authorized(), Vec::<String>::new(), "credentials reached another origin");
    assert!(!requests.iter().any(|r| r.path == "/token"), "the redirect target's realm was never asked for a token");
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_token_realm_of_an_https_registry_is_refused() {
    let (ca, tokens, recorder) = (tls::generate(), TokenServer::start(&[(USER, PASSWORD)], false), Recorder::start());
    let registry = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Token {
            realm: recorder.url("token"),
            service: tokens.service.clone(),
            issuer: tokens.issuer.clone(),
            root_cert_bundle: tokens.root_cert_bundle.clone(),
        },
        tls: Some(ca.server_pair()),
    });
    let target = TestRegistry::plain();
    let config = TempConfig::new(&format!(
        "registries:\n  secure: {{ url: \"{}\", ca_file: \"{}\", {} }}\n",
        registry.host,
        ca.ca_cert.display(),
        credentials()
    ));

    let output = ocync(&["copy", "--config", &config.path, &registry.reference("app:v1"), &target.reference("app:v1")]);

    assert_no_panic(&output);
    assert_eq!(recorder.requests().len(), 0, "the plain-HTTP realm was contacted");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&registry.host) && stdout.contains(&format!("plain http (http://{})", recorder.host)),
        "the error names the registry and the refused realm: {}",
        describe(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_from_https_to_http_is_refused() {
    let (ca, recorder) = (tls::generate(), Recorder::start());
    // distribution builds absolute Locations from `http.host`: here, plain HTTP elsewhere.
    let target = TestRegistry::start_with(
        RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() },
        &format!("  host: http://{}\n", recorder.host),
        "",
    );
    let built = image(4);
    let source = seeded_source(&built).await;
    let config = TempConfig::new(&format!(
        "registries:\n  secure: {{ url: \"{}\", ca_file: \"{}\" }}\n",
        target.host,
        ca.ca_cert.display()
    ));

    let output = ocync(&["copy", "--config", &config.path, &source.reference("app:v1"), &target.reference("app:v1")]);
    assert_downgrade_refused(&output, &recorder, &target.host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_http_is_refused() {
    let (ca, recorder) = (tls::generate(), Recorder::start());
    let middleware = format!(
        "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {}\n",
        recorder.url("")
    );
    let source = TestRegistry::start_with(
        RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() },
        "",
        &middleware,
    );
    let built = image(5);
    testdata::push(&tls_client(&source, &ca, Credentials::Anonymous), "app", "v1", &built)
        .await
        .expect("seed over TLS");
    let target = TestRegistry::plain();
    let config = TempConfig::new(&format!(
        "registries:\n  secure: {{ url: \"{}\", ca_file: \"{}\" }}\n",
        source.host,
        ca.ca_cert.display()
    ));

    let output = ocync(&["copy", "--config", &config.path, &source.reference("app:v1"), &target.reference("app:v1")]);
    assert_downgrade_refused(&output, &recorder, &source.host);
}

/// The copy failed as a whole (exit 2) naming the https registry that pointed at plain HTTP,
/// and nothing reached the plain-HTTP listener.
fn assert_downgrade_refused(output: &std::process::Output, recorder: &Recorder, registry: &str) {
    assert_no_panic(output);
    assert_eq!(recorder.requests().len(), 0, "a request went to plain HTTP");
    assert_eq!(output.status.code(), Some(2), "{}", describe(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(registry) && stdout.contains("from https to plain http"), "{}", describe(output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_token_lifetime_neither_panics_nor_fails_the_run() {
    let tokens = TokenServer::start(&[(USER, PASSWORD)], false);
    tokens.set_token_lifetime(u64::MAX);
    let source = TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), ..Default::default() });
    let built = image(6);
    testdata::push(&source.client(basic_credentials()), "app", "v1", &built).await.expect("seed the source");
    let target = TestRegistry::plain();
    let config = upstream_config(&source);

    let output = ocync(&["copy", "--config", &config.path, &source.reference("app:v1"), &target.reference("app:v1")]);

    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("copied "), "{}", describe(&output));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_reference_never_carries_credentials_configured_for_https() {
    let built = image(7);
    let source = seeded_source(&built).await;
    let target = TestRegistry::plain();
    // The proxy plays a registry that wants Basic credentials before it answers anything.
    let proxy = FaultProxy::start(&target.host, |request| match request.authorization {
        Some(_) => Action::Forward,
        None => Action::Respond {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), "Basic realm=\"mirror\"".into())],
            body: String::new(),
        },
    });
    let https_entry = format!("  a-secure: {{ url: \"{}\", {} }}\n", proxy.host, credentials());
    let http_entry = format!("  z-plain: {{ url: \"http://{}\" }}\n", proxy.host);
    // The https entry sorts first, so a lookup by host alone would pick its credentials.
    for registries in [format!("{https_entry}{http_entry}"), https_entry.clone()] {
        let config = TempConfig::new(&format!("registries:\n{registries}"));

        let output =
            ocync(&["copy", "--config", &config.path, &source.reference("app:v1"), &proxy.reference("app:v1")]);

        assert_no_panic(&output);
        assert!(!proxy.seen().is_empty(), "the copy reached the target");
        assert_eq!(authorized(&proxy.seen()), Vec::<String>::new(), "https credentials went over http:\n{registries}");
        assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    }
}
