//! `ocync validate` and `ocync expand` read the config as `sync` does: `--config FILE` or the
//! positional FILE, a local path or `s3://bucket/key` (through moto's S3).

use crate::copy::{describe, ocync, ocync_with_env};
use crate::support::moto::MotoServer;
use crate::support::tools::TempConfig;

/// A valid config with one variable and one secret, so `expand` shows both masking and
/// expansion.
const CONFIG: &str = "registries:\n  src: { url: src.example }\n  dst:\n    url: dst.example\n    auth_type: basic\n    \
                      credentials: { username: bot, password: \"${DST_PASSWORD}\" }\nmappings:\n  \
                      - { from: \"team/${TEAM}\", source: src, targets: dst }\n";
/// Same config, one unknown key (`taregts`).
const BROKEN: &str =
    "registries:\n  src: { url: src.example }\nmappings:\n  - { from: a, source: src, taregts: src }\n";
const PASSWORD: &str = "expand-password-0004";

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn validate_takes_the_config_as_config_flag_or_positionally() {
    let config = TempConfig::new(CONFIG);
    let env = [("TEAM", "web"), ("DST_PASSWORD", PASSWORD)];
    for args in [
        vec!["validate", &config.path],
        vec!["validate", "--config", &config.path],
        vec!["validate", "-c", &config.path],
    ] {
        let output = ocync_with_env(&args, &env);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", describe(&output));
        assert_eq!(stdout(&output), format!("{}: valid (2 registries, 1 mappings)\n", config.path), "{args:?}");
    }
    let broken = TempConfig::new(BROKEN);
    let output = ocync(&["validate", "--config", &broken.path]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("taregts"), "{}", describe(&output));
}

#[test]
fn expand_takes_the_config_as_config_flag_or_positionally() {
    let config = TempConfig::new(CONFIG);
    let env = [("TEAM", "web"), ("DST_PASSWORD", PASSWORD)];
    let positional = ocync_with_env(&["expand", &config.path], &env);
    let flagged = ocync_with_env(&["expand", "--config", &config.path], &env);
    for output in [&positional, &flagged] {
        assert_eq!(output.status.code(), Some(0), "{}", describe(output));
        let printed = stdout(output);
        assert!(printed.contains("from: team/web"), "{printed}");
        assert!(!printed.contains(PASSWORD), "{printed}");
    }
    assert_eq!(stdout(&positional), stdout(&flagged), "both forms print the same document");
}

#[test]
fn validate_and_expand_refuse_both_forms_at_once_and_neither() {
    let config = TempConfig::new(CONFIG);
    for command in ["validate", "expand"] {
        let both = ocync(&[command, &config.path, "--config", &config.path]);
        assert_eq!(both.status.code(), Some(3), "{command}: {}", describe(&both));
        assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"), "{}", describe(&both));
        let neither = ocync(&[command]);
        assert_eq!(neither.status.code(), Some(3), "{command}: {}", describe(&neither));
        assert!(String::from_utf8_lossy(&neither.stderr).contains("--config"), "{}", describe(&neither));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_expand_read_an_s3_config() {
    let moto = MotoServer::start();
    let s3 = moto.s3_client();
    s3.create_bucket().bucket("configs").send().await.expect("create bucket");
    for (key, text) in [("good.yaml", CONFIG), ("broken.yaml", BROKEN)] {
        s3.put_object().bucket("configs").key(key).body(text.as_bytes().to_vec().into()).send().await.expect("put");
    }
    let mut env: Vec<(&str, String)> = moto.env();
    env.extend([
        ("AWS_S3_FORCE_PATH_STYLE", "true".to_string()),
        ("TEAM", "web".into()),
        ("DST_PASSWORD", PASSWORD.into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    for args in [["validate", "s3://configs/good.yaml"].as_slice(), &["validate", "--config", "s3://configs/good.yaml"]]
    {
        let output = ocync_with_env(args, &env);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", describe(&output));
        assert_eq!(stdout(&output), "s3://configs/good.yaml: valid (2 registries, 1 mappings)\n");
    }
    let broken = ocync_with_env(&["validate", "--config", "s3://configs/broken.yaml"], &env);
    assert_eq!(broken.status.code(), Some(3), "{}", describe(&broken));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("s3://configs/broken.yaml") && stderr.contains("taregts"), "{stderr}");
    let missing = ocync_with_env(&["validate", "s3://configs/absent.yaml"], &env);
    assert_eq!(missing.status.code(), Some(3), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read config s3://configs/absent.yaml"));

    let expanded = ocync_with_env(&["expand", "--config", "s3://configs/good.yaml"], &env);
    assert_eq!(expanded.status.code(), Some(0), "{}", describe(&expanded));
    let printed = stdout(&expanded);
    assert!(printed.contains("from: team/web") && !printed.contains(PASSWORD), "{printed}");
    let shown = ocync_with_env(&["expand", "--show-secrets", "s3://configs/good.yaml"], &env);
    assert!(stdout(&shown).contains(PASSWORD), "{}", describe(&shown));
    let malformed = ocync(&["validate", "s3://bucket-only"]);
    assert_eq!(malformed.status.code(), Some(3), "{}", describe(&malformed));
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("expected s3://bucket/key"),
        "{}",
        describe(&malformed)
    );
}
