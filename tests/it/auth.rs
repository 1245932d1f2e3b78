//! Authentication against real registries: htpasswd Basic from the config, docker's
//! `config.json` (`auths`, `credHelpers`), and refusals mapped to exit code 4.

use std::path::Path;

use crate::copy::{describe, ocync, ocync_with_env};
use crate::support::registry::RegistryAuth;
use crate::support::tools::{TempConfig, skopeo_digest};
use crate::support::{RegistryOptions, TestRegistry};
use ocync::registry::auth::{Credentials, Secret};
use ocync::testdata::{self, Built};

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
    assert!(everything.contains("TRACE"), "trace logging was on");
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

#[tokio::test]
async fn docker_credential_helpers_are_run_for_their_registry() {
    use std::os::unix::fs::PermissionsExt as _;
    let (source, target) = (basic_registry(), TestRegistry::plain());
    let built = image();
    seed_with_credentials(&source, &built).await;
    let docker = tempfile::tempdir().unwrap();
    let helper = docker.path().join("docker-credential-ocynctest");
    let asked = docker.path().join("asked");
    // The helper records which server it was asked about and answers for it.
    write(
        &helper,
        &format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat > {}\necho '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n",
            asked.display()
        ),
    );
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&docker.path().join("config.json"), &format!(r#"{{"credHelpers":{{"{}":"ocynctest"}}}}"#, source.host));
    let path = format!("{}:{}", docker.path().display(), std::env::var("PATH").unwrap_or_default());

    let output = ocync_with_env(
        &["copy", &source.reference("private/app:v1"), &target.reference("app:v1")],
        &[("DOCKER_CONFIG", docker.path().to_str().unwrap()), ("PATH", &path)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), source.host);
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:v1"), &[]), built.digest().to_string());
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
