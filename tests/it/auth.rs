//! Authentication against real registries: htpasswd Basic from the config, docker's
//! `config.json` (`auths`, `credHelpers`, `credsStore`), Bearer tokens (per scope, refreshed
//! when they expire or are revoked), and refusals mapped to exit code 4.

use std::path::Path;

use crate::copy::{describe, ocync, ocync_with_env};
use crate::support::registry::RegistryAuth;
use crate::support::tools::{TempConfig, skopeo_digest};
use crate::support::{RegistryOptions, TestRegistry};
use ocync::registry::auth::{Credentials, Secret};
use ocync::testing::testdata::{self, Built};

const USER: &str = "robot";
const PASSWORD: &str = "s3cret-passw0rd";

fn basic_registry() -> TestRegistry {
    TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Basic { username: USER.into(), password: PASSWORD.into() },
        ..Default::default()
    })
}

fn image() -> Built {
    Built::Image(testdata::image(&[(40, 5000)], ("linux", "amd64"), false))
}

async fn seed_with_credentials(registry: &TestRegistry, built: &Built) {
    let client = registry.client(Credentials::Basic { username: USER.into(), password: Secret::new(PASSWORD) });
    testdata::push(&client, "private/app", "v1", built).await.expect("seed private image");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

#[tokio::test]
async fn basic_credentials_from_the_config_are_used_and_never_printed() {
    let (source, target) = (basic_registry(), TestRegistry::plain());
    let built = image();
    seed_with_credentials(&source, &built).await;
    let config = TempConfig::new(&format!(
        "registries:\n  private:\n    url: http://{}\n    auth_type: basic\n    credentials: {{ username: {USER}, password: \"${{PRIVATE_PASSWORD}}\" }}\n",
        source.host
    ));

    let output = ocync_with_env(
        &["copy", "-vv", "--config", &config.path, &source.reference("private/app:v1"), &target.reference("app:v1")],
        &[("PRIVATE_PASSWORD", PASSWORD), ("RUST_LOG", "trace")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
    let everything = describe(&output);
    assert!(everything.contains("DEBUG"), "verbose logging was on (secret-printing targets are capped below trace)");
    assert!(!everything.contains(PASSWORD), "the password leaked into output");
    use base64::Engine as _;
    let header_value = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(!everything.contains(&header_value), "the Authorization header leaked into output");
}

#[tokio::test]
async fn missing_credentials_exit_with_the_auth_code() {
    let (source, target) = (basic_registry(), TestRegistry::plain());
    seed_with_credentials(&source, &image()).await;
    let output = ocync(&["copy", &source.reference("private/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains(&format!("{} denied access to private/app (401)", source.host))
    );
}

#[tokio::test]
async fn wrong_credentials_exit_with_the_auth_code_without_echoing_them() {
    let (source, target) = (basic_registry(), TestRegistry::plain());
    seed_with_credentials(&source, &image()).await;
    let config = TempConfig::new(&format!(
        "registries:\n  p: {{ url: \"http://{}\", credentials: {{ username: x, password: wrong-password-123 }} }}\n",
        source.host
    ));
    let output =
        ocync(&["copy", "--config", &config.path, &source.reference("private/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(!describe(&output).contains("wrong-password-123"));
}

#[tokio::test]
async fn docker_config_auths_entries_are_used() {
    use base64::Engine as _;
    let (source, target) = (basic_registry(), TestRegistry::plain());
    let built = image();
    seed_with_credentials(&source, &built).await;
    let docker = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    write(
        &docker.path().join("config.json"),
        &format!(r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#, source.host),
    );

    let output = ocync_with_env(
        &["copy", &source.reference("private/app:v1"), &target.reference("app:v1")],
        &[("DOCKER_CONFIG", docker.path().to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
}

/// Writes `docker-credential-<name>` into `dir`: it records each server it is asked about
/// (one a line, in the returned file) and answers with the test credentials for `known`,
/// else as docker's own helpers do for an unknown server.
fn fake_credential_helper(dir: &Path, name: &str, known: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let helper = dir.join(format!("docker-credential-{name}"));
    let asked = dir.join(format!("{name}-asked"));
    write(
        &helper,
        &format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nserver=$(cat)\nprintf '%s\\n' \"$server\" >> {}\n\
             if [ \"$server\" = '{known}' ]; then\n  echo '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n\
             else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
            asked.display()
        ),
    );
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    asked
}

/// The servers a fake helper was asked about, and the two registries of the copy.
struct HelperRun {
    asked: Vec<String>,
    source: String,
    target: String,
}

/// Copies `private/app:v1` from a Basic-auth source with `DOCKER_CONFIG` holding `config_json`
/// (`{source}` replaced by the source host) and the helper `name` on `PATH`.
async fn copy_with_docker_config(config_json: &str, name: &str) -> HelperRun {
    let (source, target) = (basic_registry(), TestRegistry::plain());
    let built = image();
    seed_with_credentials(&source, &built).await;
    let docker = tempfile::tempdir().unwrap();
    let asked = fake_credential_helper(docker.path(), name, &source.host);
    write(&docker.path().join("config.json"), &config_json.replace("{source}", &source.host));
    let path = format!("{}:{}", docker.path().display(), std::env::var("PATH").unwrap_or_default());

    let output = ocync_with_env(
        &["copy", &source.reference("private/app:v1"), &target.reference("app:v1")],
        &[("DOCKER_CONFIG", docker.path().to_str().unwrap()), ("PATH", &path)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!describe(&output).contains(PASSWORD), "the helper's secret leaked into output");
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
    let mut asked: Vec<String> =
        std::fs::read_to_string(&asked).unwrap_or_default().lines().map(str::to_string).collect();
    asked.sort();
    asked.dedup();
    HelperRun { asked, source: source.host.clone(), target: target.host.clone() }
}

#[tokio::test]
async fn docker_credential_helpers_are_run_for_their_registry() {
    let run = copy_with_docker_config(r#"{"credHelpers":{"{source}":"ocynctest"}}"#, "ocynctest").await;
    assert_eq!(run.asked, vec![run.source], "only the source has a helper");
}

#[tokio::test]
async fn a_docker_creds_store_is_asked_for_every_registry_and_not_found_means_anonymous() {
    // As Docker Desktop writes it: the store holds the secret, `auths` only an empty entry.
    let run = copy_with_docker_config(r#"{"credsStore":"ocyncstore","auths":{"{source}":{}}}"#, "ocyncstore").await;
    let mut expected = vec![run.source, run.target];
    expected.sort();
    assert_eq!(run.asked, expected, "the store answers for the source and has nothing for the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_per_scope_and_reused() {
    use crate::support::token::TokenServer;
    let tokens = TokenServer::start(&[("alice", "token-user-pw")], true);
    let (source, target) = (
        TestRegistry::plain(),
        TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), ..Default::default() }),
    );
    let built = testdata::index(41, &[(0, 4096)], &[("linux", "amd64"), ("linux", "arm64")], false);
    crate::copy::seed(&source, "team/app", "v1", &built).await;
    let config = TempConfig::new(&format!(
        "registries:\n  t: {{ url: \"http://{}\", credentials: {{ username: alice, password: token-user-pw }} }}\n",
        target.host
    ));

    let output = ocync(&[
        "copy",
        "--config",
        &config.path,
        &source.reference("team/app:v1"),
        &target.reference("mirror/app:v1"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // One token for the pull-scoped HEAD and one for pull,push: a dozen requests, two tokens.
    let history = tokens.history();
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history.iter().all(|request| request.granted && request.user.as_deref() == Some("alice")), "{history:?}");
    assert_eq!(
        skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &["--creds", "alice:token-user-pw"]),
        built.digest().to_string()
    );
}

/// A registry that trusts the tokens `tokens` issues.
fn token_target(tokens: &crate::support::token::TokenServer) -> TestRegistry {
    TestRegistry::start(RegistryOptions { auth: tokens.registry_auth(), ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_bearer_token_is_fetched_again_exactly_once_and_the_copy_succeeds() {
    use crate::support::proxy::{Action, FaultProxy};
    use crate::support::token::TokenServer;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let tokens = TokenServer::start(&[("alice", "token-user-pw")], true);
    let (source, target) = (TestRegistry::plain(), token_target(&tokens));
    let built = testdata::index(42, &[(0, 4096)], &[("linux", "amd64"), ("linux", "arm64")], false);
    crate::copy::seed(&source, "team/app", "v1", &built).await;
    // The proxy enforces revocation for the registry: the first manifest PUT revokes the push
    // token it carries, and every request with a revoked token gets the registry's 401.
    let (revocations, challenge) = (tokens.revocations(), tokens.challenge("repository:mirror/app:pull,push"));
    let revoked_once = AtomicBool::new(false);
    let refused = Arc::new(AtomicUsize::new(0));
    let refused_in = Arc::clone(&refused);
    let proxy = FaultProxy::start(&target.host, move |request| {
        let token = request.authorization.as_deref().and_then(|h| h.strip_prefix("Bearer "));
        if let Some(token) = token
            && request.method == "PUT"
            && request.target.contains("/manifests/")
            && !revoked_once.swap(true, Ordering::SeqCst)
        {
            revocations.revoke(token);
        }
        if token.is_some_and(|token| revocations.is_revoked(token)) {
            refused_in.fetch_add(1, Ordering::SeqCst);
            Action::Respond {
                status: 401,
                headers: vec![("WWW-Authenticate".into(), challenge.clone())],
                body: r#"{"errors":[{"code":"UNAUTHORIZED","message":"token revoked"}]}"#.into(),
            }
        } else {
            Action::Forward
        }
    });
    let config = TempConfig::new(&format!(
        "registries:\n  t: {{ url: \"http://{}\", credentials: {{ username: alice, password: token-user-pw }} }}\n",
        proxy.host
    ));

    let output =
        ocync(&["copy", "--config", &config.path, &source.reference("team/app:v1"), &proxy.reference("mirror/app:v1")]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // Two tokens as in a plain copy (pull, then pull,push), plus one more pull,push after
    // the revocation: not a fetch per request, and not a give-up.
    let history = tokens.history();
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(history.iter().all(|request| request.granted), "{history:?}");
    assert_eq!(history[1].scopes, history[2].scopes, "the refused scope is the one fetched again: {history:?}");
    // Concurrent pushes of the two child manifests may both meet the revoked token; each is
    // refused once, and only one of them fetches a new token.
    assert!((1..=2).contains(&refused.load(Ordering::SeqCst)), "refused {} requests", refused.load(Ordering::SeqCst));
    assert_eq!(
        skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &["--creds", "alice:token-user-pw"]),
        built.digest().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_bearer_token_is_reused_while_valid_and_fetched_again_once_after() {
    use crate::support::token::TokenServer;
    use ocync::registry::Registry as _;
    let tokens = TokenServer::start(&[("alice", "token-user-pw")], true);
    tokens.set_token_lifetime(2);
    let target = token_target(&tokens);
    let alice = || Credentials::Basic { username: "alice".into(), password: Secret::new("token-user-pw") };
    testdata::push(&target.client(alice()), "team/app", "v1", &image()).await.expect("seed through the token registry");
    // A client of its own, so no token from the seeding is cached.
    let client = target.client(alice());
    let fetched = tokens.requests();

    for _ in 0..3 {
        assert!(client.head_manifest("team/app", "v1").await.unwrap().is_some());
    }
    assert_eq!(tokens.requests() - fetched, 1, "a 2 s token serves back-to-back requests: {:?}", tokens.history());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for _ in 0..3 {
        assert!(client.head_manifest("team/app", "v1").await.unwrap().is_some());
    }
    assert_eq!(tokens.requests() - fetched, 2, "the expired token is fetched again once: {:?}", tokens.history());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registry_is_reached_with_the_ca_file_from_the_config() {
    let ca = crate::support::tls::generate();
    let (source, target) = (
        TestRegistry::plain(),
        TestRegistry::start(RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() }),
    );
    let built = image();
    crate::copy::seed(&source, "team/app", "v1", &built).await;
    let config = TempConfig::new(&format!(
        "registries:\n  secure: {{ url: {}, ca_file: {} }}\n",
        target.host,
        ca.ca_cert.display()
    ));

    let output =
        ocync(&["copy", "--config", &config.path, &source.reference("team/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());

    let untrusted = ocync(&["copy", &source.reference("team/app:v1"), &target.reference("app:v2")]);
    assert_eq!(untrusted.status.code(), Some(2), "{}", describe(&untrusted));
    assert!(String::from_utf8_lossy(&untrusted.stdout).contains("certificate"), "{}", describe(&untrusted));
}

#[tokio::test]
async fn auth_check_reports_each_registry_and_exits_4_on_any_failure() {
    let (good, bad, open) = (basic_registry(), basic_registry(), TestRegistry::plain());
    seed_with_credentials(&good, &image()).await;
    let config = TempConfig::new(&format!(
        "registries:\n  good: {{ url: \"http://{}\", credentials: {{ username: {USER}, password: {PASSWORD} }} }}\n  \
         bad: {{ url: \"http://{}\", credentials: {{ username: {USER}, password: not-the-password }} }}\n  \
         open: {{ url: \"http://{}\" }}\n\
         mappings:\n  - from: private/app\n    to: mirror/app\n    source: good\n    targets: bad\n",
        good.host, bad.host, open.host
    ));

    let output = ocync(&["auth", "check", "--config", &config.path]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!(" {name} (")))
            .unwrap_or_else(|| panic!("{name} missing: {stdout}"))
            .to_string()
    };
    assert!(
        line("good").starts_with("OK   good") && line("good").contains("pull private/app: 1 tags visible"),
        "{stdout}"
    );
    assert!(
        line("bad").starts_with("FAIL bad")
            && line("bad").contains("push mirror/app")
            && line("bad").contains("denied access"),
        "{stdout}"
    );
    assert!(line("open").starts_with("OK   open") && line("open").contains("ping"), "{stdout}");
    assert!(!describe(&output).contains(PASSWORD) && !describe(&output).contains("not-the-password"));
    assert_eq!(bad.count("PUT", "/"), 0, "a check writes nothing");
}

#[tokio::test]
async fn sync_and_plan_with_wrong_source_credentials_exit_4_naming_the_registry_without_the_password() {
    let (source, target) = (basic_registry(), TestRegistry::plain());
    seed_with_credentials(&source, &image()).await;
    let config = TempConfig::new(&format!(
        "registries:\n  private: {{ url: \"http://{}\", credentials: {{ username: {USER}, password: wrong-password-456 }} }}\n  \
         mirror: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: private\n  targets: mirror\n\
         mappings:\n  - from: private/app\n  - from: private/other\n",
        source.host, target.host
    ));
    let denied = format!("{} denied access to private/app (401)", source.host);

    let text = ocync(&["sync", "--config", &config.path]);
    assert_eq!(text.status.code(), Some(4), "{}", describe(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains(&format!("private/app -> private/app: FAILED: cannot list tags: {denied}")), "{stdout}");

    let json = ocync(&["sync", "--config", &config.path, "--json"]);
    assert_eq!(json.status.code(), Some(4), "{}", describe(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON report");
    assert_eq!(report["status"], "auth_failed");
    assert_eq!(report["totals"]["mappings_failed"], 2);

    let plan = ocync(&["plan", "--config", &config.path]);
    assert_eq!(plan.status.code(), Some(4), "{}", describe(&plan));
    assert!(String::from_utf8_lossy(&plan.stdout).contains(&denied), "{}", describe(&plan));

    for output in [&text, &json, &plan] {
        assert!(!describe(output).contains("wrong-password-456"), "the password leaked: {}", describe(output));
    }
    assert_eq!(target.count("PUT", "/"), 0, "nothing was written");
}

/// A Google credentials file in `dir` that is not JSON; its path.
fn broken_google_credentials(dir: &Path) -> String {
    let key_file = dir.join("key.json");
    write(&key_file, "{ this is not json");
    key_file.to_str().expect("a UTF-8 temp path").to_string()
}

#[tokio::test]
async fn copy_exits_4_when_the_destination_credentials_cannot_be_obtained() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = broken_google_credentials(dir.path());
    // Nothing listens on these ports: the client set-up fails before any request.
    let config = TempConfig::new("registries:\n  gar: { url: \"http://127.0.0.1:9\", auth_type: gar }\n");
    let output = ocync_with_env(
        &["copy", "--config", &config.path, "http://127.0.0.1:7/team/app:v1", "http://127.0.0.1:9/app:v1"],
        &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)],
    );
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot obtain credentials for 127.0.0.1:9") && stderr.contains(&key_file), "{stderr}");
}

#[tokio::test]
async fn sync_exits_4_when_the_only_target_credentials_cannot_be_obtained() {
    let (source, dir) = (TestRegistry::plain(), tempfile::tempdir().unwrap());
    crate::copy::seed(&source, "team/app", "v1", &image()).await;
    let key_file = broken_google_credentials(dir.path());
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  gar: {{ url: \"http://127.0.0.1:9\", auth_type: gar }}\n\
         mappings:\n  - from: team/app\n    source: up\n    targets: gar\n",
        source.host
    ));
    let output =
        ocync_with_env(&["sync", "--config", &config.path, "--json"], &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["status"], "auth_failed");
    let image = &report["mappings"][0]["images"][0];
    assert_eq!(image["status"], "failed", "{report}");
    assert!(image["error"].as_str().unwrap().contains("cannot obtain credentials for 127.0.0.1:9"), "{report}");
}
