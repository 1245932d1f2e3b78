//! `ocync pull-secret`: ECR tokens from moto_server, written through a real Kubernetes client
//! (kube, via a temporary KUBECONFIG) into the Secret API stand-in of tests/support.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::copy::{describe, ocync_with_env};
use crate::support::moto::MotoServer;
use crate::support::secret_api::{ApiRequest, SecretApi, kubeconfig};
use crate::support::tools::{TempConfig, free_port};
use crate::support::{RegistryOptions, TestRegistry};

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const KUBE_TOKEN: &str = "kube-bearer-token-for-the-refresher";
const DOCKERCONFIGJSON: &str = ".dockerconfigjson";
/// What moto's GetAuthorizationToken hands out.
const MOTO_USER_PASSWORD: &str = "AWS:123456789012-auth-token";

/// Other registries' entries, spelled as a person or another tool would (spacing, key order,
/// escapes): they must come back with exactly these bytes.
const QUAY_ENTRY: &str = r#"{ "auth" : "cXVheTpzZWNyZXQ=",  "email":"ops@example.com" }"#;
const REDHAT_ENTRY: &str = "{\"email\": \"\\u00e9quipe@example.com\",\n  \"auth\":\"cmg6c2VjcmV0\"}";

struct World {
    moto: MotoServer,
    api: SecretApi,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World { moto: MotoServer::start(), api: SecretApi::start(KUBE_TOKEN), dir: tempfile::tempdir().unwrap() }
    }

    /// Runs `ocync pull-secret args` with moto's AWS environment and a kubeconfig using `token`.
    fn run_with_token(&self, args: &[&str], token: &str) -> std::process::Output {
        let kubeconfig = self.api.kubeconfig(self.dir.path(), token);
        let mut env: Vec<(&str, String)> = self.moto.env();
        env.push(("KUBECONFIG", kubeconfig.to_str().unwrap().to_string()));
        // Everything there is to log: the secret-printing targets stay capped even so.
        env.push(("RUST_LOG", "trace".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ocync_with_env(&[&["pull-secret"], args].concat(), &env)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with_token(args, KUBE_TOKEN)
    }
}

fn ecr_entry() -> String {
    format!(r#"{{"auth":"{}"}}"#, STANDARD.encode(MOTO_USER_PASSWORD))
}

/// No token, no Authorization value, no kube token anywhere in what ocync printed.
fn assert_no_secrets(output: &std::process::Output) {
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    for secret in ["123456789012-auth-token", &STANDARD.encode(MOTO_USER_PASSWORD), KUBE_TOKEN, "cXVheTpzZWNyZXQ="] {
        assert!(!printed.contains(secret), "{secret:?} was printed:\n{printed}");
    }
}

fn methods(requests: &[ApiRequest]) -> Vec<(String, u16)> {
    requests.iter().map(|r| (r.method.clone(), r.status)).collect()
}

#[test]
fn merging_keeps_every_other_entry_byte_for_byte_and_retries_after_a_conflict() {
    let world = World::new();
    let before = format!(r#"{{"auths":{{"quay.io":{QUAY_ENTRY},"{ECR}":{{"auth":"b2xkOnRva2Vu"}}}}}}"#);
    let data = BTreeMap::from([
        (DOCKERCONFIGJSON.to_string(), before.into_bytes()),
        ("notes".to_string(), b"left alone".to_vec()),
    ]);
    world.api.insert("openshift-config", "pull-secret", "kubernetes.io/dockerconfigjson", &data);
    // Between ocync's read and its write, another writer adds Red Hat's entry.
    let concurrent = format!(
        "{{\n  \"auths\": {{\n    \"quay.io\": {QUAY_ENTRY},\n    \"registry.redhat.io\": {REDHAT_ENTRY},\n    \"{ECR}\": {{\"auth\":\"b2xkOnRva2Vu\"}}\n  }}\n}}"
    );
    world.api.conflicts(
        1,
        BTreeMap::from([
            (DOCKERCONFIGJSON.to_string(), concurrent.into_bytes()),
            ("notes".to_string(), b"left alone".to_vec()),
        ]),
    );

    let output = world.run(&["--secret", "openshift-config/pull-secret", "--registry", ECR]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        methods(&world.api.requests()),
        [("GET".into(), 200), ("PUT".into(), 409), ("GET".into(), 200), ("PUT".into(), 200)],
        "read, conflict, read again, write"
    );
    let after =
        String::from_utf8(world.api.data("openshift-config", "pull-secret", DOCKERCONFIGJSON).unwrap()).unwrap();
    assert_eq!(
        after,
        format!(
            r#"{{"auths":{{"quay.io":{QUAY_ENTRY},"registry.redhat.io":{REDHAT_ENTRY},"{ECR}":{}}}}}"#,
            ecr_entry()
        )
    );
    let secret = world.api.secret("openshift-config", "pull-secret").unwrap();
    assert_eq!(world.api.data("openshift-config", "pull-secret", "notes").unwrap(), b"left alone");
    assert_eq!(secret["metadata"]["labels"]["owner"], "someone-else", "metadata kept");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert!(String::from_utf8_lossy(&output.stdout).contains("Secret openshift-config/pull-secret updated"));
    assert_no_secrets(&output);
}

#[test]
fn a_missing_secret_is_created_for_every_ecr_target_of_the_config() {
    let world = World::new();
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: quay.io }}\n  ecr: {{ url: {ECR} }}\n  lab: {{ url: \"http://127.0.0.1:5999\" }}\n\
         defaults: {{ source: up, targets: [ecr, lab] }}\nmappings:\n  - from: argoproj/argocd\n"
    ));
    let output = world.run(&["--secret", "mirror/ecr-pull", "--config", &config.path]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(methods(&world.api.requests()), [("GET".into(), 404), ("POST".into(), 201)]);
    let secret = world.api.secret("mirror", "ecr-pull").expect("created");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let document = world.api.data("mirror", "ecr-pull", DOCKERCONFIGJSON).unwrap();
    assert_eq!(String::from_utf8(document).unwrap(), format!(r#"{{"auths":{{"{ECR}":{}}}}}"#, ecr_entry()));
    assert_no_secrets(&output);
}

#[test]
fn a_config_entry_with_auth_type_ecr_and_a_profile_gets_its_token_with_that_profile() {
    let world = World::new();
    let credentials = world.dir.path().join("credentials");
    std::fs::write(&credentials, "[vendor]\naws_access_key_id = vendor-key\naws_secret_access_key = vendor-secret\n")
        .unwrap();
    let config = TempConfig::new(
        "registries:\n  up: { url: quay.io }\n  vendor: { url: \"http://127.0.0.1:5999\", auth_type: ecr, aws_profile: vendor }\n\
         mappings:\n  - { from: a, source: up, targets: vendor }\n",
    );
    // Only the profile has keys: the ambient chain has none.
    let kubeconfig = world.api.kubeconfig(world.dir.path(), KUBE_TOKEN);
    let mut env: Vec<(&str, String)> = world
        .moto
        .env()
        .into_iter()
        .filter(|(k, _)| !k.contains("ACCESS_KEY") && *k != "AWS_SHARED_CREDENTIALS_FILE")
        .collect();
    env.push(("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap().to_string()));
    env.push(("KUBECONFIG", kubeconfig.to_str().unwrap().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = ocync_with_env(&["pull-secret", "--secret", "ns/pull", "--config", &config.path], &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let document = world.api.data("ns", "pull", DOCKERCONFIGJSON).unwrap();
    assert_eq!(String::from_utf8(document).unwrap(), format!(r#"{{"auths":{{"127.0.0.1:5999":{}}}}}"#, ecr_entry()));

    let without_profile =
        TempConfig::new(&std::fs::read_to_string(&config.path).unwrap().replace(", aws_profile: vendor", ""));
    let output = ocync_with_env(&["pull-secret", "--secret", "ns/pull", "--config", &without_profile.path], &env);
    assert_eq!(output.status.code(), Some(4), "no ambient credentials: {}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot obtain an ECR token for 127.0.0.1:5999"));
}

#[test]
fn print_writes_the_dockerconfigjson_to_stdout_and_touches_no_secret() {
    let world = World::new();
    let output = world.run(&["--print", "--registry", ECR]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let auth = STANDARD.decode(printed["auths"][ECR]["auth"].as_str().unwrap()).unwrap();
    assert_eq!(auth, MOTO_USER_PASSWORD.as_bytes());
    assert!(world.api.requests().is_empty());
}

#[test]
fn an_aws_auth_failure_exits_4_naming_the_registry_and_writes_nothing() {
    let api = SecretApi::start(KUBE_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), KUBE_TOKEN);
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_MAX_ATTEMPTS", "1"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
    ];
    let output = ocync_with_env(&["pull-secret", "--secret", "ns/pull", "--registry", ECR], &env);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot obtain an ECR token for {ECR}")), "{stderr}");
    assert!(!stderr.contains("testing-secret-key"), "{stderr}");
    assert!(api.requests().is_empty(), "no token, no write");
}

#[test]
fn a_kubernetes_api_that_refuses_the_identity_is_an_auth_failure_naming_the_secret() {
    let world = World::new();
    let output = world.run_with_token(&["--secret", "ns/pull", "--registry", ECR], "wrong-token");
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read Secret ns/pull"), "{stderr}");
    assert!(!stderr.contains("wrong-token"), "{stderr}");
    assert_no_secrets(&output);
}

#[test]
fn registries_that_are_not_ecr_and_bad_secret_names_are_usage_errors() {
    let world = World::new();
    let not_ecr = world.run(&["--secret", "ns/pull", "--registry", "quay.io"]);
    assert_eq!(not_ecr.status.code(), Some(3), "{}", describe(&not_ecr));
    assert!(String::from_utf8_lossy(&not_ecr.stderr).contains("quay.io is not an ECR registry"));
    let bad_name = world.run(&["--secret", "pull-secret", "--registry", ECR]);
    assert_eq!(bad_name.status.code(), Some(3), "{}", describe(&bad_name));
    assert!(world.api.requests().is_empty());
}

#[test]
fn the_kubernetes_client_speaks_tls_with_rustls_and_verifies_the_kubeconfig_ca() {
    // No API server runs here, but any HTTPS server shows the TLS path works: a
    // docker-registry with a test CA's certificate answers the Secret GET with its plain-text
    // 404, which ocync reports. Without the CA, the certificate is rejected before any request.
    let world = World::new();
    let ca = crate::support::tls::generate();
    let https = TestRegistry::start(RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() });
    let server = format!("https://{}", https.host);
    let run = |ca_file: Option<&std::path::Path>| {
        let path = kubeconfig(world.dir.path(), &server, KUBE_TOKEN, ca_file);
        let mut env: Vec<(&str, String)> = world.moto.env();
        env.push(("KUBECONFIG", path.to_str().unwrap().to_string()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ocync_with_env(&["pull-secret", "--secret", "ns/pull", "--registry", ECR], &env)
    };

    let trusted = run(Some(&ca.ca_cert));
    assert_eq!(trusted.status.code(), Some(2), "{}", describe(&trusted));
    assert!(
        String::from_utf8_lossy(&trusted.stderr).contains("cannot read Secret ns/pull: \"404 page not found"),
        "the server's own 404 came back through TLS: {}",
        describe(&trusted)
    );

    let untrusted = run(None);
    assert_eq!(untrusted.status.code(), Some(2), "{}", describe(&untrusted));
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("cannot read Secret ns/pull") && stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert_no_secrets(&untrusted);
}

#[test]
fn a_secret_that_keeps_changing_or_is_not_a_dockerconfigjson_fails_without_writing() {
    let world = World::new();
    let data = BTreeMap::from([(DOCKERCONFIGJSON.to_string(), br#"{"auths":{}}"#.to_vec())]);
    world.api.insert("ns", "busy", "kubernetes.io/dockerconfigjson", &data);
    world.api.conflicts(10, data.clone());
    let busy = world.run(&["--secret", "ns/busy", "--registry", ECR]);
    assert_eq!(busy.status.code(), Some(2), "{}", describe(&busy));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("Secret ns/busy changed under every one of 5 attempts"));
    let puts = world.api.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 5, "bounded retries");

    world.api.insert("ns", "opaque", "Opaque", &BTreeMap::from([("token".to_string(), b"keep".to_vec())]));
    let opaque = world.run(&["--secret", "ns/opaque", "--registry", ECR]);
    assert_eq!(opaque.status.code(), Some(2), "{}", describe(&opaque));
    let stderr = String::from_utf8_lossy(&opaque.stderr);
    assert!(stderr.contains("Secret ns/opaque cannot be merged: its type is \"Opaque\""), "{stderr}");
    assert_eq!(world.api.data("ns", "opaque", "token").unwrap(), b"keep");
    assert_no_secrets(&opaque);
}
