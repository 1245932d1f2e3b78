//! Secrets stay out of reach and out of output: a config cannot interpolate the platform's own
//! credentials, a mistyped secret is reported without its value, `expand` masks secret fields,
//! and no log level prints the AWS keys, the session token, the ECR token or a Basic password.

use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync_with_env, seed};
use crate::support::moto::MotoServer;
use crate::support::registry::RegistryAuth;
use crate::support::tools::TempConfig;
use crate::support::{RegistryOptions, TestRegistry};

/// Values no output may contain, set in the environment of the runs below.
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI-secret-access-key-0001";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEB-session-token-0002";
const MIRROR_PASSWORD: &str = "mirror-basic-password-0003";
/// The password in moto's GetAuthorizationToken answer (its token is `AWS:<this>`, base64).
const ECR_PASSWORD: &str = "123456789012-auth-token";

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ocync_with_env(args, &env)
}

#[test]
fn a_config_reading_a_platform_credential_exits_3_naming_the_variable() {
    let config = TempConfig::new(
        "registries:\n  corp:\n    url: registry.corp\n    auth_type: basic\n    credentials: { username: bot, password: \"${AWS_SECRET_ACCESS_KEY}\" }\n  \
         other: { url: other.io, auth_type: static_token, token: \"${AWS_SESSION_TOKEN:-none}\" }\n",
    );
    let env = [("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()), ("AWS_SESSION_TOKEN", SESSION_TOKEN.into())];
    for args in [
        vec!["validate", &config.path],
        vec!["sync", "--config", &config.path],
        vec!["expand", &config.path],
        vec!["expand", "--show-secrets", &config.path],
    ] {
        let output = run(&args, &env);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            assert!(stderr.contains(&format!("{name} is the platform's own credential")), "{args:?}: {stderr}");
        }
        assert!(stderr.contains("put registry secrets in their own variables"), "{args:?}: {stderr}");
        let printed = printed(&output);
        assert!(!printed.contains(SECRET_ACCESS_KEY) && !printed.contains(SESSION_TOKEN), "{args:?}: {printed}");
    }
}

#[test]
fn a_mistyped_secret_is_reported_by_path_and_type_without_its_value() {
    let config = TempConfig::new(
        "registries:\n  corp:\n    url: registry.corp\n    auth_type: basic\n    credentials: \"${CORP_PASSWORD}\"\n",
    );
    let output = run(&["validate", &config.path], &[("CORP_PASSWORD", MIRROR_PASSWORD.into())]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("registries.corp.credentials (line 5): invalid type: string, expected struct RawCredentials"),
        "{stderr}"
    );
    assert!(!printed(&output).contains(MIRROR_PASSWORD), "{}", printed(&output));
}

#[test]
fn expand_masks_every_secret_field_whatever_fills_it_and_show_secrets_shows_them() {
    let config = TempConfig::new(
        "# comments are dropped from the masked form\nregistries:\n  \
         corp: { url: \"${CORP_HOST}\", auth_type: basic, credentials: { username: bot, password: \"${ROBOT}\" } }\n  \
         literal: { url: l.io, auth_type: basic, credentials: { username: ci, password: literal-pass-0004 } }\n  \
         bearer: { url: b.io, auth_type: static_token, token: \"${OPAQUE}\" }\n",
    );
    let env = [
        ("CORP_HOST", "registry.corp:5000".to_string()),
        ("ROBOT", "robot-value-0005".into()),
        ("OPAQUE", "opaque-value-0006".into()),
    ];
    let secrets = ["robot-value-0005", "literal-pass-0004", "opaque-value-0006"];

    let output = run(&["expand", &config.path], &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for secret in secrets {
        assert!(!printed(&output).contains(secret), "{secret} printed: {}", printed(&output));
    }
    let masked: serde_norway::Value = serde_norway::from_slice(&output.stdout).expect("expand prints YAML");
    let registries = &masked["registries"];
    assert_eq!(registries["corp"]["url"].as_str(), Some("registry.corp:5000"), "other values are expanded");
    assert_eq!(registries["corp"]["credentials"]["username"].as_str(), Some("bot"));
    for hidden in [
        &registries["corp"]["credentials"]["password"],
        &registries["literal"]["credentials"]["password"],
        &registries["bearer"]["token"],
    ] {
        assert_eq!(hidden.as_str(), Some("<hidden>"), "{masked:?}");
    }

    let shown = run(&["expand", "--show-secrets", &config.path], &env);
    assert_eq!(shown.status.code(), Some(0), "{}", describe(&shown));
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(secrets.iter().all(|secret| stdout.contains(secret)), "{stdout}");
    assert!(stdout.starts_with("# comments are dropped"), "--show-secrets prints the text as expanded: {stdout}");
}

/// A sync to ECR (moto's GetAuthorizationToken, a docker-registry data plane) and to a Basic
/// registry, with a session token in the environment, at `-vv` and under `RUST_LOG`s asking
/// for everything: the logs are long, and hold no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_printed_at_vv_or_with_rust_log_trace() {
    let moto = MotoServer::start();
    let source = TestRegistry::plain();
    let ecr = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Basic { username: "AWS".into(), password: ECR_PASSWORD.into() },
        ..Default::default()
    });
    let mirror = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Basic { username: "mirror".into(), password: MIRROR_PASSWORD.into() },
        ..Default::default()
    });
    seed(&source, "team/app", "v1", &Built::Image(testdata::image(&[(31, 2000)], ("linux", "amd64"), false))).await;
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  ecr: {{ url: \"http://{}\", auth_type: ecr, create_repositories: true }}\n  \
         mirror: {{ url: \"http://{}\", auth_type: basic, credentials: {{ username: mirror, password: \"${{MIRROR_PASSWORD}}\" }} }}\n\
         mappings:\n  - {{ from: team/app, to: mirror/app, source: up, targets: [ecr, mirror] }}\n",
        source.host, ecr.host, mirror.host
    ));
    let mut env: Vec<(&str, String)> = moto.env().into_iter().filter(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY").collect();
    env.extend([
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
        ("MIRROR_PASSWORD", MIRROR_PASSWORD.into()),
    ]);
    let secrets = [
        SECRET_ACCESS_KEY.to_string(),
        SESSION_TOKEN.into(),
        ECR_PASSWORD.into(),
        STANDARD.encode(format!("AWS:{ECR_PASSWORD}")),
        MIRROR_PASSWORD.into(),
        STANDARD.encode(format!("mirror:{MIRROR_PASSWORD}")),
    ];

    let everything = "aws_sigv4=trace,aws_smithy_runtime=trace,aws_config=trace,hyper_util=trace,reqwest=trace,trace";
    // The first run copies (uploads, mounts, tokens), the later ones find the images in place.
    for (flags, rust_log, at_least_lines) in [
        (&["-vv"][..], "", 50),
        (&[][..], "trace", 50),
        (&["--log-format", "json"][..], everything, 50),
        (&["-vv"][..], "aws_sigv4::http_request::sign=trace,aws_smithy_runtime::client::orchestrator=trace", 5),
    ] {
        let mut run_env = env.clone();
        run_env.push(("RUST_LOG", rust_log.into()));
        let args = [flags, &["sync", "--config", &config.path]].concat();
        let output = run(&args, &run_env);
        assert_eq!(output.status.code(), Some(0), "{flags:?} RUST_LOG={rust_log}: {}", describe(&output));
        let printed = printed(&output);
        for secret in &secrets {
            assert!(!printed.contains(secret.as_str()), "{flags:?} RUST_LOG={rust_log}: {secret:?} printed");
        }
        // Not vacuous: the run logged at debug and beyond, the AWS SDK's retry and timeout lines too.
        assert!(printed.lines().count() > at_least_lines, "{flags:?} RUST_LOG={rust_log}: {printed}");
        assert!(printed.contains("aws_smithy_runtime"), "{flags:?} RUST_LOG={rust_log}: {printed}");
    }
}
