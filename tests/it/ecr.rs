//! ECR end to end: moto as the control plane (GetAuthorizationToken, CreateRepository,
//! DescribeRepositories), a docker-registry with htpasswd user `AWS` and moto's token as the
//! data plane.

use crate::copy::{describe, ocync_with_env, seed};
use crate::support::moto::MotoServer;
use crate::support::registry::RegistryAuth;
use crate::support::tools::{TempConfig, skopeo_digest};
use crate::support::{RegistryOptions, TestRegistry};
use ocync::testing::testdata::{self, Built};

/// The password moto's GetAuthorizationToken hands out (its token is `AWS:<this>`).
const MOTO_PASSWORD: &str = "123456789012-auth-token";

fn ecr_data_plane() -> TestRegistry {
    TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Basic { username: "AWS".into(), password: MOTO_PASSWORD.into() },
        ..Default::default()
    })
}

fn env_of(moto: &MotoServer) -> Vec<(&'static str, String)> {
    moto.env()
}

fn run(args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ocync_with_env(args, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_to_ecr_uses_get_authorization_token_and_creates_the_repository() {
    let moto = MotoServer::start();
    let (source, ecr) = (TestRegistry::plain(), ecr_data_plane());
    let built = testdata::index(1, &[(0, 10_000)], &[("linux", "amd64"), ("linux", "arm64")], false);
    seed(&source, "team/app", "v1", &built).await;
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  ecr:\n    url: \"http://{}\"\n    auth_type: ecr\n    create_repositories: true\n    image_tag_mutability: immutable\n    scan_on_push: true\n\
         mappings:\n  - from: team/app\n    to: mirror/app\n    source: up\n    targets: ecr\n",
        source.host, ecr.host
    ));

    let output = run(&["sync", "--config", &config.path], &env_of(&moto));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(ecr.count("HEAD", "/blobs/"), 0, "blob presence comes from BatchCheckLayerAvailability, not HEADs");
    let credentials = format!("AWS:{MOTO_PASSWORD}");
    assert_eq!(
        skopeo_digest(&ecr.skopeo_reference("mirror/app:v1"), &["--creds", &credentials]),
        built.digest().to_string()
    );
    let repositories = moto.ecr_client().await.describe_repositories().send().await.expect("describe repositories");
    let created = &repositories.repositories()[0];
    assert_eq!(created.repository_name(), Some("mirror/app"));
    assert_eq!(created.image_tag_mutability().map(|m| m.as_str()), Some("IMMUTABLE"));
    assert_eq!(created.image_scanning_configuration().map(|c| c.scan_on_push()), Some(true));

    // A second run finds the repository and the tag in place: no create, no upload.
    ecr.reset_log();
    let again = run(&["sync", "--config", &config.path], &env_of(&moto));
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(ecr.requests().iter().all(|(method, _)| method == "HEAD"), "{:?}", ecr.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_profile_supplies_credentials_for_its_registry_only() {
    let moto = MotoServer::start();
    let (source, ecr) = (TestRegistry::plain(), ecr_data_plane());
    let built = Built::Image(testdata::image(&[(5, 1000)], ("linux", "amd64"), false));
    seed(&source, "team/app", "v1", &built).await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "[vendor]\naws_access_key_id = vendor-key\naws_secret_access_key = vendor-secret\n")
        .unwrap();
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  ecr: {{ url: \"http://{}\", auth_type: ecr, aws_profile: vendor }}\n\
         mappings:\n  - from: team/app\n    source: up\n    targets: ecr\n",
        source.host, ecr.host
    ));
    // Only the profile has keys: the ambient chain has none.
    let mut env: Vec<(&'static str, String)> =
        moto.env().into_iter().filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET")).collect();
    env.retain(|(k, _)| *k != "AWS_SHARED_CREDENTIALS_FILE");
    env.push(("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap().to_string()));

    let output = run(&["sync", "--config", &config.path], &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    // The same config without the profile has no credentials at all.
    let ambient = TempConfig::new(&std::fs::read_to_string(&config.path).unwrap().replace(", aws_profile: vendor", ""));
    let output =
        run(&["copy", "--config", &ambient.path, &source.reference("team/app:v1"), &ecr.reference("other:v1")], &env);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("cannot obtain credentials for") && stdout.contains("ECR GetAuthorizationToken"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_plane_is_an_auth_failure_naming_the_step() {
    let (source, ecr) = (TestRegistry::plain(), ecr_data_plane());
    seed(&source, "team/app", "v1", &Built::Image(testdata::image(&[(6, 100)], ("linux", "amd64"), false))).await;
    let config = TempConfig::new(&format!("registries:\n  ecr: {{ url: \"http://{}\", auth_type: ecr }}\n", ecr.host));
    let port = crate::support::tools::free_port();
    let env: Vec<(&'static str, String)> = vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_MAX_ATTEMPTS", "1".into()),
    ];
    let output =
        run(&["copy", "--config", &config.path, &source.reference("team/app:v1"), &ecr.reference("app:v1")], &env);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ECR GetAuthorizationToken in us-east-1"), "{stdout}");
    assert!(!stdout.contains("testing"), "no secrets in errors: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_check_with_create_repositories_creates_nothing_and_reports_ok() {
    let moto = MotoServer::start();
    let (source, ecr) = (TestRegistry::plain(), ecr_data_plane());
    seed(&source, "team/app", "v1", &Built::Image(testdata::image(&[(7, 100)], ("linux", "amd64"), false))).await;
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  ecr: {{ url: \"http://{}\", auth_type: ecr, create_repositories: true }}\n\
         mappings:\n  - from: team/app\n    to: mirror/app\n    source: up\n    targets: ecr\n",
        source.host, ecr.host
    ));

    let output = run(&["auth", "check", "--config", &config.path], &env_of(&moto));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.contains(" ecr (")).unwrap_or_else(|| panic!("ecr missing: {stdout}"));
    assert!(line.starts_with("OK   ecr") && line.contains("push mirror/app"), "{stdout}");
    assert!(line.contains("does not exist and would be created"), "{stdout}");
    let described = moto.ecr_client().await.describe_repositories().repository_names("mirror/app").send().await;
    let error = described.expect_err("the check must not create the repository");
    assert!(
        error.as_service_error().is_some_and(|e| e.is_repository_not_found_exception()),
        "DescribeRepositories: {error:?}"
    );
    assert!(ecr.requests().iter().all(|(method, _)| method == "GET"), "a check writes nothing: {:?}", ecr.requests());

    // Once the repository exists, the check opens (and cancels) an upload session in it.
    moto.ecr_client().await.create_repository().repository_name("mirror/app").send().await.expect("create");
    let output = run(&["auth", "check", "--config", &config.path], &env_of(&moto));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("upload session opened and cancelled"),
        "{}",
        describe(&output)
    );
}
