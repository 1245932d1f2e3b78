//! Cargo features keep test support, the Lambda's crates and the FIPS module out of the product:
//! what a default build links, and which binaries need which feature.

use std::process::Command;

use serde_json::Value;

/// `cargo` with the manifest of this package, offline (the lock file already names every crate).
fn cargo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO"))
        .args(args)
        .args(["--offline", "--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")])
        .output()
        .expect("cargo runs (it built this test)")
}

/// Crate names in the normal (non-dev, non-build) dependency tree with `features`.
fn normal_dependencies(features: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "-e", "normal", "--prefix", "none"];
    args.extend_from_slice(features);
    let output = cargo(&args);
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_string).collect()
}

const LAMBDA_ONLY: [&str; 3] = ["aws-sdk-sqs", "aws_lambda_events", "lambda_runtime"];

#[test]
fn a_default_build_links_none_of_the_lambda_crates() {
    let default = normal_dependencies(&[]);
    for name in LAMBDA_ONLY {
        assert!(!default.iter().any(|d| d == name), "{name} is in the default build");
    }
    let lambda = normal_dependencies(&["--features", "lambda"]);
    for name in LAMBDA_ONLY {
        assert!(lambda.iter().any(|d| d == name), "{name} is missing from the lambda build");
    }
}

#[test]
fn only_a_fips_build_links_the_fips_module() {
    let module = "aws-lc-fips-sys";
    assert!(!normal_dependencies(&[]).iter().any(|d| d == module), "{module} is in the default build");
    assert!(normal_dependencies(&["--features", "fips"]).iter().any(|d| d == module), "{module} is missing from fips");
}

#[test]
fn the_testdata_and_lambda_binaries_need_their_features() {
    let output = cargo(&["metadata", "--no-deps", "--format-version", "1"]);
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let targets = metadata["packages"][0]["targets"].as_array().expect("targets");
    let required = |name: &str| {
        let target = targets.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no target {name}"));
        target["required-features"].clone()
    };
    assert_eq!(required("ocync-testdata"), serde_json::json!(["testing"]));
    assert_eq!(required("bootstrap"), serde_json::json!(["lambda"]));
    assert_eq!(required("ocync"), Value::Null);
}
