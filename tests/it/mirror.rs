//! `ocync mirror-config`: the registries.conf.d drop-in read by a real skopeo that pulls
//! through a local mirror, and every other format written by the binary and parsed back.

use std::path::Path;
use std::process::Command;

use ocync::testing::testdata;

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::tools::{TempConfig, skopeo};

/// A host that never resolves (`.invalid` is reserved, RFC 2606), so only the mirror can answer.
const UPSTREAM: &str = "upstream.ocync.invalid";

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// `skopeo inspect --raw docker://<reference>` with `extra` flags before it.
fn skopeo_inspect(reference: &str, extra: &[&str]) -> std::process::Output {
    Command::new(skopeo())
        .args(extra)
        .args(["inspect", "--raw", "--retry-times", "0"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs")
}

/// Runs `ocync mirror-config --format FORMAT --out DIR` and returns DIR's file `name`.
fn generate(config: &TempConfig, dir: &Path, format: &str, extra: &[&str], name: &str) -> String {
    let out = dir.to_str().expect("UTF-8 temp path");
    let mut args = vec!["mirror-config", "--config", &config.path, "--format", format, "--out", out];
    args.extend_from_slice(extra);
    let output = ocync(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{}", describe(&output)))
}

#[tokio::test]
async fn skopeo_pulls_an_unreachable_upstream_through_the_mirror_with_the_generated_drop_in() {
    let mirror = TestRegistry::plain();
    let built = testdata::index(7, &[(0, 4096)], &[("linux", "amd64"), ("linux", "arm64")], false);
    seed(&mirror, "mirror/app", "v1", &built).await;
    let config = TempConfig::new(&format!(
        "registries:\n  upstream: {{ url: {UPSTREAM} }}\n  mirror: {{ url: \"http://{}\", prefix: mirror }}\n\
         mappings:\n  - from: team/app\n    to: app\n    source: upstream\n    targets: mirror\n",
        mirror.host
    ));
    let dir = tempfile::tempdir().unwrap();
    let drop_in = generate(&config, dir.path(), "registries-conf", &[], "ocync.conf");
    assert!(drop_in.contains(&format!("location = \"{}/mirror/app\"", mirror.host)), "{drop_in}");
    let conf = dir.path().join("ocync.conf");
    let conf_arg = format!("--registries-conf={}", conf.display());
    let by_digest = format!("{UPSTREAM}/team/app@{}", built.digest());

    let through = skopeo_inspect(&by_digest, &[&conf_arg]);
    assert!(through.status.success(), "through the mirror: {}", String::from_utf8_lossy(&through.stderr));
    assert_eq!(ocync::oci::Digest::sha256_of(&through.stdout), *built.digest(), "the mirror's bytes");
    assert!(mirror.count("GET", &format!("/manifests/{}", built.digest())) >= 1, "the mirror answered");

    let without = skopeo_inspect(&by_digest, &[]);
    assert!(!without.status.success(), "without the drop-in the upstream is unreachable");
    let by_tag = format!("{UPSTREAM}/team/app:v1");
    assert!(!skopeo_inspect(&by_tag, &[&conf_arg]).status.success(), "digest-only: tags still go upstream");

    let tags_dir = tempfile::tempdir().unwrap();
    generate(&config, tags_dir.path(), "registries-conf", &["--tags", "--name", "all-pulls"], "all-pulls.conf");
    let all = format!("--registries-conf={}", tags_dir.path().join("all-pulls.conf").display());
    let tagged = skopeo_inspect(&by_tag, &[&all]);
    assert!(tagged.status.success(), "--tags: {}", String::from_utf8_lossy(&tagged.stderr));
    assert_eq!(ocync::oci::Digest::sha256_of(&tagged.stdout), *built.digest());
}

/// Docker Hub (two ways), Quay, GHCR; targets ECR with a prefix and a plain-HTTP registry.
fn rich_config() -> TempConfig {
    TempConfig::new(&format!(
        "registries:\n  hub: {{ url: docker.io }}\n  quay: {{ url: quay.io }}\n  ghcr: {{ url: ghcr.io }}\n\
         \x20 ecr: {{ url: {ECR}, prefix: mas-images }}\n  lab: {{ url: \"http://127.0.0.1:5999\" }}\n\
         defaults:\n  targets: [ecr, lab]\n\
         mappings:\n\
         \x20 - {{ from: nginx, source: hub }}\n\
         \x20 - {{ from: library/alpine, source: hub, targets: lab }}\n\
         \x20 - {{ from: argoproj/argocd, source: quay, to: argo/argocd }}\n\
         \x20 - {{ from: org/tool, source: ghcr }}\n"
    ))
}

fn yaml(text: &str) -> serde_json::Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

fn pairs(list: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let strings =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["source"].as_str().unwrap().to_string(), strings(&entry["mirrors"])))
        .collect()
}

fn expected_pairs() -> Vec<(String, Vec<String>)> {
    let to = |mirrors: &[&str]| mirrors.iter().map(ToString::to_string).collect();
    vec![
        ("docker.io/library/alpine".into(), to(&["127.0.0.1:5999/library/alpine"])),
        ("docker.io/library/nginx".into(), to(&[&format!("{ECR}/mas-images/nginx"), "127.0.0.1:5999/nginx"])),
        ("ghcr.io/org/tool".into(), to(&[&format!("{ECR}/mas-images/org/tool"), "127.0.0.1:5999/org/tool"])),
        (
            "quay.io/argoproj/argocd".into(),
            to(&[&format!("{ECR}/mas-images/argo/argocd"), "127.0.0.1:5999/argo/argocd"]),
        ),
        ("registry.example/vendor".into(), to(&[&format!("{ECR}/mas-images"), "127.0.0.1:5999"])),
    ]
}

#[test]
fn idms_and_itms_list_every_source_with_each_targets_location() {
    let config = rich_config();
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--extra-source", "registry.example/vendor", "--name", "mas"];
    let idms = yaml(&generate(
        &config,
        dir.path(),
        "idms",
        &[&extra[..], &["--never-contact-source"]].concat(),
        "mas-idms.yaml",
    ));
    assert_eq!(
        (&idms["apiVersion"], &idms["kind"], &idms["metadata"]["name"]),
        (&"config.openshift.io/v1".into(), &"ImageDigestMirrorSet".into(), &"mas".into())
    );
    assert_eq!(pairs(&idms["spec"]["imageDigestMirrors"]), expected_pairs());
    let policies = idms["spec"]["imageDigestMirrors"].as_array().unwrap().iter().map(|e| &e["mirrorSourcePolicy"]);
    assert!(policies.into_iter().all(|p| p == "NeverContactSource"));

    let itms = yaml(&generate(&config, dir.path(), "itms", &extra, "mas-itms.yaml"));
    assert_eq!(itms["kind"], "ImageTagMirrorSet");
    assert_eq!(pairs(&itms["spec"]["imageTagMirrors"]), expected_pairs());
    assert!(itms["spec"]["imageTagMirrors"][0].get("mirrorSourcePolicy").is_none());
}

#[test]
fn helm_values_carry_the_same_sets_for_the_chart() {
    let config = rich_config();
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--extra-source", "registry.example/vendor", "--tags", "--never-contact-source"];
    let values = yaml(&generate(&config, dir.path(), "helm-values", &extra, "ocync-values.yaml"));
    let sets = &values["mirrorSets"];
    assert_eq!(
        (&sets["enabled"], &sets["name"], &sets["neverContactSource"]),
        (&true.into(), &"ocync".into(), &true.into())
    );
    assert_eq!(pairs(&sets["digest"]), expected_pairs());
    assert_eq!(pairs(&sets["tag"]), expected_pairs());
}

#[test]
fn containerd_refuses_changed_paths_unless_told_to_skip_them() {
    let config = rich_config();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let refused = ocync(&["mirror-config", "--config", &config.path, "--format", "containerd", "--out", out]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "error: cannot express quay.io/argoproj/argocd -> {ECR}/mas-images/argo/argocd (mappings[2]): the repository path changes (argoproj/argocd becomes mas-images/argo/argocd)"
        )),
        "{stderr}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");

    let hosts = |host: &str| -> toml::Table {
        let text = std::fs::read_to_string(dir.path().join(format!("certs.d/{host}/hosts.toml"))).unwrap();
        text.parse().unwrap_or_else(|e| panic!("{host}/hosts.toml is not TOML: {e}\n{text}"))
    };
    generate(&config, dir.path(), "containerd", &["--skip-unrepresentable", "--tags"], "certs.d/ghcr.io/hosts.toml");
    let ghcr = hosts("ghcr.io");
    assert_eq!(ghcr["server"].as_str(), Some("https://ghcr.io"));
    let tables = ghcr["host"].as_table().expect("[host.\"…\"] tables");
    let pull_resolve = toml::Value::Array(vec!["pull".into(), "resolve".into()]);
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        [&"http://127.0.0.1:5999".to_string(), &format!("https://{ECR}/v2/mas-images")]
    );
    let ecr = &tables[&format!("https://{ECR}/v2/mas-images")];
    assert_eq!((&ecr["capabilities"], ecr["override_path"].as_bool()), (&pull_resolve, Some(true)));
    let lab = &tables["http://127.0.0.1:5999"];
    assert_eq!((&lab["capabilities"], lab.get("override_path")), (&pull_resolve, None));
    let hub = hosts("docker.io");
    assert_eq!(hub["server"].as_str(), Some("https://registry-1.docker.io"));
    let hub_hosts: Vec<&String> = hub["host"].as_table().unwrap().keys().collect();
    assert_eq!(hub_hosts, ["http://127.0.0.1:5999"], "alpine keeps its path; nginx does not");
    assert!(!dir.path().join("certs.d/quay.io").exists(), "argocd's path changes at every target");
}

#[test]
fn flags_that_do_not_fit_the_format_are_config_errors() {
    let config = rich_config();
    for (format, flag) in [("registries-conf", "--never-contact-source"), ("idms", "--tags")] {
        let output = ocync(&["mirror-config", "--config", &config.path, "--format", format, flag]);
        assert_eq!(output.status.code(), Some(3), "{format} {flag}: {}", describe(&output));
    }
    let bad =
        ocync(&["mirror-config", "--config", &config.path, "--format", "idms", "--extra-source", "https://x.io/a"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("without a scheme"), "{}", describe(&bad));
}
