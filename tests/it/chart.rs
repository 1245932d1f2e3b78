//! The Helm chart `charts/ocync`: strict lint, rendering of every mode and of every example
//! values file users copy (`tests/fixtures/chart-values/`, copies of the published examples),
//! assertions on the rendered objects, Kubernetes schema validation of every rendered manifest
//! (`kubernetes-validate --strict`, offline), and `values.schema.json` rejecting bad values.
//!
//! Helm runs through the Helm SDK (PyPI `helm-python-sdk`, driven by
//! `tests/support/helm_chart.py`), so no `helm` binary is needed; both tools live in the
//! repository's `.venv`, and a missing one fails the test with the install command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

const INSTALL_HINT: &str =
    "python3 -m venv .venv && .venv/bin/pip install helm-python-sdk kubernetes-validate (or run .ci/run)";

/// The oldest Kubernetes the chart supports (`kubeVersion` in Chart.yaml) and the newest
/// kubernetes-validate ships schemas for.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// Kinds without a schema in kubernetes-validate (CRDs); checked field by field instead (the
/// OpenShift mirror sets in `mirror_sets_render_exactly_what_mirror_config_generates`).
const CUSTOM_KINDS: [&str; 3] = ["ServiceMonitor", "ImageDigestMirrorSet", "ImageTagMirrorSet"];

/// `--set-json` values that switch on the refresher and the mirror sets.
const REFRESHER_AND_MIRROR_SETS: [&str; 2] = [
    r#"pullSecretRefresher={"enabled":true,"awsCredentialsSecret":"aws-keys"}"#,
    r#"mirrorSets={"enabled":true,"neverContactSource":true,"digest":[{"source":"quay.io/argoproj/argocd","mirrors":["123456789012.dkr.ecr.us-east-1.amazonaws.com/argo/argocd"]}],"tag":[{"source":"quay.io/argoproj/argocd","mirrors":["123456789012.dkr.ecr.us-east-1.amazonaws.com/argo/argocd"]}]}"#,
];

/// `--set-json` values that switch on every optional object, so validation covers them too.
const EVERYTHING_ON: &str = r#"metrics={"service":{"enabled":true},"serviceMonitor":{"enabled":true}}"#;

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/ocync")
}

/// A tool from the repository's venv, or a panic saying how to install it (never a skip).
fn venv_tool(name: &str) -> PathBuf {
    let path = repo().join(".venv/bin").join(name);
    assert!(path.is_file(), "{} is missing; install it with: {INSTALL_HINT}", path.display());
    path
}

/// What a finished command said.
pub(crate) struct Output {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `program args` in the repository root and returns its status and output.
fn run(program: &Path, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{} did not start: {e}", program.display()));
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `helm_chart.py <args>` (lint or template through the Helm SDK).
pub(crate) fn helm(args: &[&str]) -> Output {
    let driver = repo().join("tests/support/helm_chart.py");
    let mut full = vec![driver.to_str().expect("UTF-8 path")];
    full.extend_from_slice(args);
    let output = run(&venv_tool("python"), &full);
    assert!(!output.stderr.contains("No module named 'helm_python'"), "helm-python-sdk is missing; {INSTALL_HINT}");
    output
}

/// `-f FILE` for each values file and `--set-json EXPR` for each expression.
fn value_args<'a>(files: &'a [PathBuf], set_json: &'a [&'a str]) -> Vec<&'a str> {
    let mut args = Vec::new();
    for file in files {
        args.extend(["-f", file.to_str().expect("UTF-8 path")]);
    }
    for expression in set_json {
        args.extend(["--set-json", *expression]);
    }
    args
}

/// `helm template CHART` (a directory or a packaged `.tgz`) with these values.
fn template(chart: &Path, files: &[PathBuf], set_json: &[&str]) -> Output {
    let mut args = vec!["template", chart.to_str().expect("UTF-8 path")];
    args.extend(value_args(files, set_json));
    helm(&args)
}

/// The manifests `chart` renders, as text; panics with helm's message if rendering fails.
fn render_chart_text(chart: &Path, files: &[PathBuf], set_json: &[&str]) -> String {
    let output = template(chart, files, set_json);
    assert!(output.success, "helm template {} {files:?} {set_json:?} failed:\n{}", chart.display(), output.stderr);
    output.stdout
}

/// The manifests of charts/ocync as text.
fn render_text(files: &[PathBuf], set_json: &[&str]) -> String {
    render_chart_text(&chart_dir(), files, set_json)
}

/// The objects `chart` renders (empty documents dropped).
pub(crate) fn render_chart(chart: &Path, files: &[PathBuf], set_json: &[&str]) -> Vec<Value> {
    parse_documents(&render_chart_text(chart, files, set_json))
}

/// The objects charts/ocync renders.
fn render(files: &[PathBuf], set_json: &[&str]) -> Vec<Value> {
    render_chart(&chart_dir(), files, set_json)
}

/// Renders with only `--set-json` values.
fn render_with(set_json: &[&str]) -> Vec<Value> {
    render(&[], set_json)
}

/// helm's error message for values that must not render.
fn render_error(set_json: &[&str]) -> String {
    let output = template(&chart_dir(), &[], set_json);
    assert!(!output.success, "helm template {set_json:?} should have failed, rendered:\n{}", output.stdout);
    output.stderr
}

fn parse_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{text}")))
        .filter(|value| !value.is_null())
        .collect()
}

/// The example values files (copies of ../shared/examples/chart-values), sorted.
fn examples() -> Vec<PathBuf> {
    let dir = repo().join("tests/fixtures/chart-values");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "expected the six published examples in {}", dir.display());
    files
}

fn example(name: &str) -> Vec<PathBuf> {
    let path = repo().join("tests/fixtures/chart-values").join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    vec![path]
}

/// A minimal config so renders that are about something else have one.
pub(crate) const SOME_CONFIG: &str = r#"config={"registries":{"src":{"url":"cgr.dev"},"dst":{"url":"registry.example:5000"}},"defaults":{"source":"src","targets":"dst"},"mappings":[{"from":"chainguard/static"}]}"#;

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().map(|o| o["kind"].as_str().expect("every object has a kind").to_string()).collect()
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} in {:?}", kinds(objects));
    found[0]
}

/// The pod template of whichever workload was rendered.
fn pod_template(objects: &[Value]) -> &Value {
    for o in objects {
        match o["kind"].as_str() {
            Some("Deployment" | "Job") => return &o["spec"]["template"],
            Some("CronJob") => return &o["spec"]["jobTemplate"]["spec"]["template"],
            _ => {}
        }
    }
    panic!("no workload among {:?}", kinds(objects))
}

pub(crate) fn container(objects: &[Value]) -> &Value {
    let containers = pod_template(objects)["spec"]["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn args(objects: &[Value]) -> Vec<&str> {
    container(objects)["args"].as_sequence().expect("args").iter().map(|a| a.as_str().expect("string arg")).collect()
}

/// The value following `flag` in the container's arguments.
fn flag<'a>(objects: &'a [Value], name: &str) -> &'a str {
    let args = args(objects);
    let at = args.iter().position(|a| *a == name).unwrap_or_else(|| panic!("{name} missing from {args:?}"));
    args.get(at + 1).unwrap_or_else(|| panic!("{name} has no value in {args:?}"))
}

fn pod_labels(objects: &[Value]) -> &Value {
    &pod_template(objects)["metadata"]["labels"]
}

fn checksum(objects: &[Value]) -> String {
    pod_template(objects)["metadata"]["annotations"]["checksum/config"]
        .as_str()
        .expect("checksum/config annotation on the pod template")
        .to_string()
}

fn service_account_annotations(objects: &[Value]) -> BTreeMap<String, String> {
    let annotations = &object(objects, "ServiceAccount")["metadata"]["annotations"];
    serde_norway::from_value(annotations.clone()).unwrap_or_default()
}

#[test]
fn chart_is_api_v2_and_its_app_version_is_the_crate_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_norway::from_str(&text).expect("Chart.yaml is YAML");
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("ocync"));
    // image.tag defaults to appVersion, so a release runs the ocync this chart was written for.
    assert_eq!(chart["appVersion"].as_str(), Some(env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_default_image_tag_is_the_crate_version() {
    let objects = render_with(&[SOME_CONFIG]);
    assert_eq!(container(&objects)["image"].as_str(), Some(format!("ocync:{}", env!("CARGO_PKG_VERSION")).as_str()));
    let values: Value =
        serde_norway::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"))
            .expect("values YAML");
    assert_eq!(values["image"]["tag"].as_str(), Some(""), "image.tag must stay empty to follow appVersion");
}

#[test]
fn example_fixtures_match_the_published_examples() {
    // The fixtures are copies so the repository tests itself alone; where the published
    // originals are checked out next to it (CI, the team's machines), they must not drift.
    let published = repo().join("../shared/examples/chart-values");
    if !published.is_dir() {
        eprintln!("{} is not checked out; comparing nothing", published.display());
        return;
    }
    for entry in std::fs::read_dir(&published).expect("published examples") {
        let original = entry.expect("dir entry").path();
        let name = original.file_name().expect("file name");
        let copy = repo().join("tests/fixtures/chart-values").join(name);
        let copy = std::fs::read(&copy).unwrap_or_else(|e| panic!("{} not copied into fixtures: {e}", copy.display()));
        assert_eq!(
            copy,
            std::fs::read(&original).expect("read original"),
            "{} differs from its original",
            name.display()
        );
    }
}

#[test]
fn lint_strict_passes_with_the_defaults_and_every_example() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    let mut cases: Vec<Vec<PathBuf>> = vec![vec![]];
    cases.extend(examples().into_iter().map(|file| vec![file]));
    for files in cases {
        let mut args = vec!["lint", chart];
        args.extend(value_args(&files, &[]));
        let output = helm(&args);
        assert!(output.success, "helm lint --strict {files:?}:\n{}{}", output.stdout, output.stderr);
    }
}

#[test]
fn lint_strict_fails_on_a_warning() {
    // Proves the lint above is not vacuous: a deprecated API is only a warning, which strict
    // mode must turn into a failure.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("ocync");
    copy_dir(&chart_dir(), &copy);
    std::fs::write(
        copy.join("templates/old.yaml"),
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: old\nspec:\n  minAvailable: 1\n",
    )
    .expect("write template");
    let output = helm(&["lint", copy.to_str().expect("UTF-8 path"), "--set-json", SOME_CONFIG]);
    assert!(!output.success, "lint passed a deprecated API:\n{}", output.stdout);
    assert!(output.stdout.contains("deprecated"), "unexpected lint output:\n{}{}", output.stdout, output.stderr);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("dir entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

#[test]
fn each_mode_renders_its_workload_and_nothing_else() {
    let common = ["ServiceAccount", "ConfigMap"];
    for (mode, workload) in [("watch", "Deployment"), ("cronjob", "CronJob"), ("job", "Job")] {
        let objects = render_with(&[SOME_CONFIG, &format!(r#"mode="{mode}""#)]);
        let expected: BTreeSet<String> = common.iter().chain([&workload]).map(|k| k.to_string()).collect();
        assert_eq!(kinds(&objects), expected, "mode {mode}");
        let subcommand = if mode == "watch" { "watch" } else { "sync" };
        assert_eq!(args(&objects)[0], subcommand, "mode {mode} runs `ocync {subcommand}`");
        assert_eq!(pod_template(&objects)["metadata"]["labels"]["app.kubernetes.io/component"].as_str(), Some(mode));
    }
    // Only `watch` serves /metrics, so the metrics objects follow the mode.
    let with_metrics = render_with(&[SOME_CONFIG, EVERYTHING_ON, r#"mode="cronjob""#]);
    assert!(!kinds(&with_metrics).contains("Service"), "no metrics Service outside watch mode");
}

#[test]
fn watch_mode_probes_health_endpoints_on_the_health_port() {
    let objects = render_with(&[SOME_CONFIG, r#"watch={"healthPort":9464,"interval":120}"#]);
    let deployment = object(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1), "one loop per config");
    let container = container(&objects);
    assert_eq!(container["ports"][0]["name"].as_str(), Some("health"));
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(9464));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(container["livenessProbe"]["httpGet"]["port"].as_str(), Some("health"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["port"].as_str(), Some("health"));
    assert_eq!(flag(&objects, "--health-port"), "9464");
    assert_eq!(flag(&objects, "--interval"), "120");
    assert_eq!(flag(&objects, "--health-bind"), "0.0.0.0", "the default bind");
}

#[test]
fn watch_ipv6_example_binds_the_health_server_to_the_ipv6_wildcard() {
    let objects = render(&example("watch-ipv6.yaml"), &[]);
    assert!(kinds(&objects).contains("Deployment"));
    assert_eq!(flag(&objects, "--health-bind"), "::");
    assert_eq!(flag(&objects, "--health-port"), "8080");
    assert_eq!(flag(&objects, "--interval"), "300");
    assert_eq!(container(&objects)["ports"][0]["containerPort"].as_u64(), Some(8080));
}

#[test]
fn cronjob_irsa_example_schedules_sync_forbidding_overlap_with_the_role_annotation() {
    let objects = render(&example("cronjob-irsa.yaml"), &[]);
    let cronjob = object(&objects, "CronJob");
    assert_eq!(cronjob["spec"]["schedule"].as_str(), Some("*/15 * * * *"));
    assert_eq!(cronjob["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"));
    assert_eq!(cronjob["spec"]["successfulJobsHistoryLimit"].as_u64(), Some(3));
    assert_eq!(cronjob["spec"]["failedJobsHistoryLimit"].as_u64(), Some(3));
    assert_eq!(cronjob["spec"]["startingDeadlineSeconds"].as_u64(), Some(300));
    assert_eq!(pod_template(&objects)["spec"]["restartPolicy"].as_str(), Some("Never"));
    assert_eq!(
        service_account_annotations(&objects).get("eks.amazonaws.com/role-arn").map(String::as_str),
        Some("arn:aws:iam::123456789012:role/ocync")
    );
    let resources = &container(&objects)["resources"];
    assert_eq!(resources["limits"]["ephemeral-storage"].as_str(), Some("2Gi"));
    assert_eq!(resources["requests"]["cpu"].as_str(), Some("500m"));
    // Config and auth errors (exit 3, 4) are not retried.
    let rules = &cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"][0];
    assert_eq!(rules["action"].as_str(), Some("FailJob"));
    let codes: Vec<u64> =
        rules["onExitCodes"]["values"].as_sequence().expect("exit codes").iter().filter_map(Value::as_u64).collect();
    assert_eq!(codes, [3, 4]);
}

#[test]
fn cronjob_defaults_forbid_concurrency() {
    let objects = render_with(&[SOME_CONFIG, r#"mode="cronjob""#]);
    let spec = &object(&objects, "CronJob")["spec"];
    assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"));
    assert_eq!(spec["schedule"].as_str(), Some("0 * * * *"));
}

#[test]
fn job_fips_example_runs_sync_once_with_irsa_and_the_fips_variable() {
    let objects = render(&example("job-aws-workload-identity-fips.yaml"), &[]);
    let job = object(&objects, "Job");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"].as_str(), Some("Never"));
    assert_eq!(args(&objects)[0], "sync");
    assert_eq!(
        service_account_annotations(&objects).get("eks.amazonaws.com/role-arn").map(String::as_str),
        Some("arn:aws:iam::123456789012:role/ocync-irsa")
    );
    let env = container(&objects)["env"].as_sequence().expect("env");
    assert!(
        env.iter().any(|e| e["name"].as_str() == Some("AWS_USE_FIPS_ENDPOINT") && e["value"].as_str() == Some("true")),
        "env: {env:?}"
    );
}

#[test]
fn gke_example_annotates_the_service_account_with_the_gcp_service_account() {
    let objects = render(&example("gke-workload-identity.yaml"), &[]);
    let annotations = service_account_annotations(&objects);
    assert_eq!(
        annotations.get("iam.gke.io/gcp-service-account").map(String::as_str),
        Some("ocync@my-project.iam.gserviceaccount.com")
    );
    assert_eq!(
        pod_template(&objects)["spec"]["serviceAccountName"],
        object(&objects, "ServiceAccount")["metadata"]["name"]
    );
}

#[test]
fn aks_example_annotates_the_service_account_and_labels_the_pod() {
    let objects = render(&example("aks-workload-identity.yaml"), &[]);
    assert_eq!(
        service_account_annotations(&objects).get("azure.workload.identity/client-id").map(String::as_str),
        Some("00000000-0000-0000-0000-000000000000")
    );
    // The webhook (v1.0+) reads the label from the pod, not from the ServiceAccount where the
    // example also puts it.
    assert_eq!(pod_labels(&objects)["azure.workload.identity/use"].as_str(), Some("true"));
}

#[test]
fn gcp_keyfile_example_mounts_the_secret_read_only_and_points_adc_at_it() {
    let objects = render(&example("gcp-keyfile-off-gke.yaml"), &[]);
    let pod = &pod_template(&objects)["spec"];
    let volume = pod["volumes"].as_sequence().expect("volumes").iter().find(|v| v["name"].as_str() == Some("gcp-key"));
    assert_eq!(volume.expect("gcp-key volume")["secret"]["secretName"].as_str(), Some("gcp-service-account-key"));
    let mounts = container(&objects)["volumeMounts"].as_sequence().expect("mounts");
    let mount = mounts.iter().find(|m| m["name"].as_str() == Some("gcp-key")).expect("gcp-key mount");
    assert_eq!(mount["mountPath"].as_str(), Some("/var/secrets/gcp"));
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    assert_eq!(container(&objects)["env"][0]["value"].as_str(), Some("/var/secrets/gcp/key.json"));
    assert!(service_account_annotations(&objects).is_empty(), "no cloud identity off-cloud");
    assert!(pod_labels(&objects).get("azure.workload.identity/use").is_none());
}

#[test]
fn workload_identity_provider_writes_its_annotation_and_only_azure_labels_the_pod() {
    let cases = [
        (
            r#"workloadIdentity={"provider":"aws","aws":{"roleArn":"arn:aws:iam::111122223333:role/m"}}"#,
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/m",
        ),
        (
            r#"workloadIdentity={"provider":"gcp","gcp":{"serviceAccount":"m@p.iam.gserviceaccount.com"}}"#,
            "iam.gke.io/gcp-service-account",
            "m@p.iam.gserviceaccount.com",
        ),
        (
            r#"workloadIdentity={"provider":"azure","azure":{"clientId":"11111111-2222-3333-4444-555555555555"}}"#,
            "azure.workload.identity/client-id",
            "11111111-2222-3333-4444-555555555555",
        ),
    ];
    for (values, key, expected) in cases {
        let objects = render_with(&[SOME_CONFIG, values]);
        let annotations = service_account_annotations(&objects);
        assert_eq!(annotations.get(key).map(String::as_str), Some(expected), "{values}");
        assert_eq!(annotations.len(), 1, "only the provider's annotation: {annotations:?}");
        let azure = pod_labels(&objects).get("azure.workload.identity/use").and_then(Value::as_str);
        assert_eq!(azure, key.starts_with("azure").then_some("true"), "{values}");
    }
    // EKS Pod Identity: no provider, nothing on the ServiceAccount.
    let objects = render_with(&[SOME_CONFIG]);
    assert!(service_account_annotations(&objects).is_empty());
}

#[test]
fn pods_run_non_root_read_only_without_capabilities_and_with_a_writable_tmp() {
    for mode in ["watch", "cronjob", "job"] {
        let objects = render_with(&[SOME_CONFIG, &format!(r#"mode="{mode}""#)]);
        let pod = &pod_template(&objects)["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{mode}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"), "{mode}");
        assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false), "{mode}: ocync never calls the API");
        let security = &container(&objects)["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{mode}");
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true), "{mode}");
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false), "{mode}");
        assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"), "{mode}");
        assert_eq!(security["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"), "{mode}");

        let tmp = pod["volumes"].as_sequence().expect("volumes").iter().find(|v| v["name"].as_str() == Some("tmp"));
        assert!(tmp.expect("tmp volume")["emptyDir"].is_mapping(), "{mode}: /tmp is an emptyDir");
        let mounts = container(&objects)["volumeMounts"].as_sequence().expect("mounts");
        let tmp_mount = mounts.iter().find(|m| m["name"].as_str() == Some("tmp")).expect("tmp mount");
        assert_eq!(tmp_mount["mountPath"].as_str(), Some("/tmp"));
        assert_ne!(tmp_mount["readOnly"].as_bool(), Some(true), "/tmp must be writable");
    }
}

#[test]
fn config_is_rendered_into_a_configmap_mounted_read_only_and_passed_to_config() {
    let objects = render_with(&[SOME_CONFIG]);
    let configmap = object(&objects, "ConfigMap");
    let text = configmap["data"]["ocync.yaml"].as_str().expect("ocync.yaml key");
    let config: Value = serde_norway::from_str(text).expect("the ConfigMap holds YAML");
    assert_eq!(config["registries"]["src"]["url"].as_str(), Some("cgr.dev"));

    let mounts = container(&objects)["volumeMounts"].as_sequence().expect("mounts");
    let mount = mounts.iter().find(|m| m["name"].as_str() == Some("config")).expect("config mount");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    assert_eq!(mount["mountPath"].as_str(), Some("/etc/ocync"));
    assert!(mount.get("subPath").is_none(), "a subPath mount would never see ConfigMap updates");
    let volume = pod_template(&objects)["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("config"))
        .expect("config volume");
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
    assert_eq!(flag(&objects, "--config"), "/etc/ocync/ocync.yaml");
}

#[test]
fn a_config_string_is_kept_verbatim() {
    let text = "# mirrors for team A\nregistries:\n  src: { url: cgr.dev }\n";
    let objects = render_with(&[&format!("config={}", serde_json::json!(text))]);
    let rendered = object(&objects, "ConfigMap")["data"]["ocync.yaml"].as_str().expect("ocync.yaml");
    assert_eq!(rendered.trim_end(), text.trim_end());
}

#[test]
fn config_uri_and_existing_configmap_replace_the_chart_configmap() {
    let objects = render_with(&[r#"configUri="s3://mirror-config/ocync.yaml""#]);
    assert!(!kinds(&objects).contains("ConfigMap"), "no ConfigMap with an s3:// config");
    assert_eq!(flag(&objects, "--config"), "s3://mirror-config/ocync.yaml");
    let volumes = pod_template(&objects)["spec"]["volumes"].as_sequence().expect("volumes");
    assert!(volumes.iter().all(|v| v["name"].as_str() != Some("config")));

    let objects = render_with(&[r#"existingConfigMap="team-mirrors""#, r#"existingConfigMapKey="mirrors.yaml""#]);
    assert!(!kinds(&objects).contains("ConfigMap"), "the existing ConfigMap is not rendered");
    assert_eq!(flag(&objects, "--config"), "/etc/ocync/mirrors.yaml");
    let volumes = pod_template(&objects)["spec"]["volumes"].as_sequence().expect("volumes");
    let config = volumes.iter().find(|v| v["name"].as_str() == Some("config")).expect("config volume");
    assert_eq!(config["configMap"]["name"].as_str(), Some("team-mirrors"));
}

#[test]
fn config_checksum_changes_with_the_config_and_only_with_it() {
    let base = checksum(&render_with(&[SOME_CONFIG]));
    assert_eq!(base.len(), 64, "a sha256: {base}");
    let same = checksum(&render_with(&[SOME_CONFIG, r#"watch={"interval":60}"#]));
    assert_eq!(base, same, "a value outside the config does not change the checksum");
    let changed = SOME_CONFIG.replace("chainguard/static", "chainguard/nginx");
    assert_ne!(base, checksum(&render_with(&[&changed])), "a config change rolls the pods");
    let uri_a = checksum(&render_with(&[r#"configUri="s3://b/a.yaml""#]));
    let uri_b = checksum(&render_with(&[r#"configUri="s3://b/b.yaml""#]));
    assert_ne!(uri_a, uri_b, "pointing at another object rolls the pods too");
}

#[test]
fn metrics_service_and_service_monitor_reach_the_health_port() {
    let objects =
        render_with(&[SOME_CONFIG, EVERYTHING_ON, r#"metrics={"serviceMonitor":{"labels":{"release":"prom"}}}"#]);
    let service = object(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some("health"));
    assert_eq!(service["spec"]["ports"][0]["name"].as_str(), Some("metrics"));
    let selector: BTreeMap<String, String> =
        serde_norway::from_value(service["spec"]["selector"].clone()).expect("selector map");
    let labels: BTreeMap<String, Value> = serde_norway::from_value(pod_labels(&objects).clone()).expect("labels");
    for (key, value) in &selector {
        assert_eq!(labels.get(key).and_then(Value::as_str), Some(value.as_str()), "the Service selects the pod");
    }

    // ServiceMonitor is a CRD kubernetes-validate has no schema for: check what matters here.
    let monitor = object(&objects, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(monitor["metadata"]["labels"]["release"].as_str(), Some("prom"));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let wanted: BTreeMap<String, String> =
        serde_norway::from_value(monitor["spec"]["selector"]["matchLabels"].clone()).expect("matchLabels");
    for (key, value) in &wanted {
        assert_eq!(service["metadata"]["labels"][key.as_str()].as_str(), Some(value.as_str()), "selects the Service");
    }
}

#[test]
fn every_rendered_manifest_passes_kubernetes_validate_strict() {
    // Every example as is, every mode, and every optional object switched on.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut renders: Vec<(String, String)> = examples()
        .into_iter()
        .map(|file| (file.file_name().expect("name").to_string_lossy().into_owned(), render_text(&[file], &[])))
        .collect();
    for mode in ["watch", "cronjob", "job"] {
        let set = format!(r#"mode="{mode}""#);
        let extras = r#"tmpDir={"sizeLimit":"1Gi","medium":"Memory"}"#;
        let job = r#"job={"ttlSecondsAfterFinished":600,"activeDeadlineSeconds":3600}"#;
        let identity = r#"workloadIdentity={"provider":"azure","azure":{"clientId":"11111111-2222-3333-4444-555555555555","tenantId":"11111111-2222-3333-4444-555555555555"}}"#;
        let text = render_text(&[], &[SOME_CONFIG, &set, EVERYTHING_ON, extras, job, identity]);
        renders.push((format!("mode-{mode}"), text));
    }
    renders.push(("config-uri".into(), render_text(&[], &[r#"configUri="s3://b/k.yaml""#])));
    let refresher =
        [
            &[
                SOME_CONFIG,
                r#"workloadIdentity={"provider":"aws","aws":{"roleArn":"arn:aws:iam::123456789012:role/r"}}"#,
            ][..],
            &REFRESHER_AND_MIRROR_SETS,
        ]
        .concat();
    renders.push(("pull-secret-refresher".into(), render_text(&[], &refresher)));

    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (name, text) in &renders {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("write rendered manifests");
        for object in parse_documents(text) {
            let kind = object["kind"].as_str().expect("kind").to_string();
            if !CUSTOM_KINDS.contains(&kind.as_str()) {
                let name = object["metadata"]["name"].as_str().expect("name").to_string();
                expected.push((path.display().to_string(), format!("{}/{name}", kind.to_lowercase())));
            }
        }
        files.push(path);
    }

    let mut args = vec!["--strict"];
    for version in KUBERNETES_VERSIONS {
        args.extend(["-k", version]);
    }
    args.extend(files.iter().map(|f| f.to_str().expect("UTF-8 path")));
    let output = run(&venv_tool("kubernetes-validate"), &args);
    assert!(output.success, "kubernetes-validate --strict failed:\n{}{}", output.stdout, output.stderr);
    // A kind without a schema is only a warning there; make sure each object really was checked.
    for (file, resource) in &expected {
        for version in KUBERNETES_VERSIONS {
            let minor = version.rsplit_once('.').expect("x.y.z").0;
            let line = format!("INFO {file} passed for resource {resource} against version {minor}");
            assert!(output.stdout.contains(&line), "not validated: {line}\n{}", output.stdout);
        }
    }
}

#[test]
fn kubernetes_validate_strict_rejects_an_unknown_field() {
    // Proves the validation above is not vacuous.
    let text =
        render_text(&example("watch-ipv6.yaml"), &[]).replace("readOnlyRootFilesystem", "readOnlyRootFileSystem");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("typo.yaml");
    std::fs::write(&path, text).expect("write");
    let output = run(&venv_tool("kubernetes-validate"), &["--strict", "--quiet", path.to_str().expect("UTF-8")]);
    assert!(!output.success, "a misspelt field passed:\n{}", output.stdout);
    assert!(output.stdout.contains("readOnlyRootFileSystem"), "{}", output.stdout);
}

#[test]
fn rendered_configs_of_every_example_pass_ocync_validate() {
    // The chart must hand ocync the config the user wrote; `ocync validate` is the judge.
    let dir = tempfile::tempdir().expect("temp dir");
    for file in examples() {
        let objects = render(std::slice::from_ref(&file), &[]);
        let text = object(&objects, "ConfigMap")["data"]["ocync.yaml"].as_str().expect("ocync.yaml").to_string();
        let path = dir.path().join("ocync.yaml");
        std::fs::write(&path, text).expect("write config");
        let output = run(Path::new(env!("CARGO_BIN_EXE_ocync")), &["validate", path.to_str().expect("UTF-8")]);
        assert!(output.success, "{}: ocync validate failed:\n{}{}", file.display(), output.stdout, output.stderr);
    }
}

#[test]
fn ocync_accepts_the_arguments_the_chart_passes() {
    // The image's ENTRYPOINT is ocync, so the container args are its command line. A trailing
    // --help makes clap parse and check every argument before it, then exit 0 without running.
    let mut renders = vec![render(&example("watch-ipv6.yaml"), &[])];
    for mode in ["watch", "cronjob", "job"] {
        let set = format!(r#"mode="{mode}""#);
        renders.push(render_with(&[SOME_CONFIG, &set, r#"logFormat="json""#, r#"extraArgs=["-v"]"#]));
    }
    for objects in &renders {
        let mut command_line = args(objects);
        command_line.push("--help");
        let output = run(Path::new(env!("CARGO_BIN_EXE_ocync")), &command_line);
        assert!(output.success, "ocync rejects the chart's arguments {command_line:?}:\n{}", output.stderr);
    }
}

#[test]
fn schema_rejects_values_that_cannot_work() {
    let cases = [
        (r#"mode="daemon""#, "/mode"),
        (r#"watch={"interval":"300"}"#, "/watch/interval"),
        (r#"watch={"healthPort":70000}"#, "/watch/healthPort"),
        (r#"cronjob={"concurrencyPolicy":"Never"}"#, "/cronjob/concurrencyPolicy"),
        (r#"cronjob={"startingDeadlineSeconds":"5m"}"#, "/cronjob/startingDeadlineSeconds"),
        (r#"replicas=2"#, "replicas"),
        (r#"image={"tags":"1.0"}"#, "tags"),
        (r#"workloadIdentity={"provider":"aws"}"#, "/workloadIdentity"),
        (r#"workloadIdentity={"provider":"oracle"}"#, "/workloadIdentity/provider"),
        (
            r#"workloadIdentity={"provider":"azure","azure":{"clientId":"not-a-uuid"}}"#,
            "/workloadIdentity/azure/clientId",
        ),
        (r#"configUri="https://example.com/ocync.yaml""#, "/configUri"),
        (r#"serviceAccount={"annotations":{"a":1}}"#, "/serviceAccount/annotations/a"),
        (r#"env=[{"value":"x"}]"#, "/env/0"),
        (
            r#"pullSecretRefresher={"secret":{"namespace":"Openshift-Config","name":"p"}}"#,
            "/pullSecretRefresher/secret/namespace",
        ),
        (r#"pullSecretRefresher={"registries":["https://x.io"]}"#, "/pullSecretRefresher/registries/0"),
        (r#"pullSecretRefresher={"resync":true}"#, "resync"),
        (r#"mirrorSets={"digest":[{"source":"quay.io/a"}]}"#, "/mirrorSets/digest/0"),
        (r#"mirrorSets={"tag":[{"source":"quay.io/a","mirrors":["x.io/a:v1"]}]}"#, "/mirrorSets/tag/0/mirrors/0"),
    ];
    for (values, path) in cases {
        let error = render_error(&[SOME_CONFIG, values]);
        assert!(
            error.contains("HelmValuesError") && error.contains("schema"),
            "{values}: not a schema error:\n{error}"
        );
        assert!(error.contains(path), "{values}: the error should name {path}:\n{error}");
    }
}

#[test]
fn missing_or_ambiguous_config_fails_with_what_to_set() {
    let error = render_error(&[]);
    assert!(error.contains("ocync needs a config") && error.contains("configUri"), "{error}");
    let error = render_error(&[SOME_CONFIG, r#"configUri="s3://b/k""#]);
    assert!(error.contains("set only one of"), "{error}");
    let error = render_error(&[
        SOME_CONFIG,
        r#"serviceAccount={"create":false}"#,
        r#"workloadIdentity={"provider":"gcp","gcp":{"serviceAccount":"a@b.iam.gserviceaccount.com"}}"#,
    ]);
    assert!(error.contains("serviceAccount.create=true"), "{error}");
}

#[test]
fn notes_name_the_next_step_for_each_mode_and_the_identity_in_use() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    for (mode, expected) in
        [("watch", "port-forward"), ("cronjob", "create job --from=cronjob/"), ("job", "logs -f job/")]
    {
        let set = format!(r#"mode="{mode}""#);
        let output = helm(&["template", chart, "--notes", "--set-json", SOME_CONFIG, "--set-json", &set]);
        assert!(output.success, "{}", output.stderr);
        assert!(output.stdout.contains(expected), "{mode} NOTES:\n{}", output.stdout);
    }
    // The identity line follows the ServiceAccount's annotations, however they were set.
    for (file, expected) in [
        ("cronjob-irsa.yaml", "with IRSA role arn:aws:iam::123456789012:role/ocync"),
        ("gke-workload-identity.yaml", "with GKE Workload Identity"),
        ("aks-workload-identity.yaml", "with AKS Workload Identity"),
        ("gcp-keyfile-off-gke.yaml", "create-pod-identity-association"),
    ] {
        let values = example(file);
        let output = helm(&["template", chart, "--notes", "-f", values[0].to_str().expect("UTF-8 path")]);
        assert!(output.success, "{}", output.stderr);
        assert!(output.stdout.contains(expected), "{file} NOTES:\n{}", output.stdout);
    }
}

/// Every dotted path of a values tree; a non-empty mapping contributes its children only.
fn value_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value.as_mapping() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = key.as_str().expect("string keys");
                let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                out.insert(path.clone());
                value_paths(child, &path, out);
            }
        }
        _ => {}
    }
}

#[test]
fn readme_and_schema_cover_every_value() {
    let values: Value =
        serde_norway::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"))
            .expect("values.yaml is YAML");
    let mut paths = BTreeSet::new();
    value_paths(&values, "", &mut paths);

    // The README's values table: the first column of every `| `key` |` row under "## Values".
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("chart README");
    let table = readme.split_once("\n## Values\n").expect("a ## Values section").1;
    let table = table.split("\n## ").next().expect("the section");
    let documented: BTreeSet<String> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once("` |").map(|(key, _)| key.to_string()))
        .collect();
    // A leaf is covered by its own row or by a row for a block containing it (`resources`).
    let is_leaf = |p: &String| !paths.iter().any(|other| other.starts_with(&format!("{p}.")));
    for leaf in paths.iter().filter(|p| is_leaf(p)) {
        let covered = documented.contains(leaf) || documented.iter().any(|d| leaf.starts_with(&format!("{d}.")));
        assert!(covered, "values.yaml key {leaf} is not in charts/ocync/README.md's values table");
    }
    for key in &documented {
        assert!(paths.contains(key), "README documents {key}, which values.yaml does not have");
    }

    // The schema describes exactly the top-level keys values.yaml has (it rejects all others).
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart_dir().join("values.schema.json")).expect("schema"))
            .expect("schema is JSON");
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    let in_schema: BTreeSet<String> = schema["properties"].as_object().expect("properties").keys().cloned().collect();
    let top: BTreeSet<String> = paths.iter().filter(|p| !p.contains('.')).cloned().collect();
    assert_eq!(in_schema, top, "values.schema.json properties vs values.yaml keys");
}

/// The objects of one component (`pull-secret-refresher`) among the rendered ones.
fn refresher_objects(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("pull-secret-refresher"))
        .collect()
}

fn refresher<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> =
        refresher_objects(objects).into_iter().filter(|o| o["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "one refresher {kind}");
    found[0]
}

fn refresher_args(objects: &[Value]) -> Vec<&str> {
    let container = &refresher(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    container["args"].as_sequence().expect("args").iter().map(|a| a.as_str().expect("string arg")).collect()
}

#[test]
fn the_refresher_and_mirror_sets_are_off_by_default() {
    let objects = render_with(&[SOME_CONFIG]);
    assert!(refresher_objects(&objects).is_empty());
    let found = kinds(&objects);
    for kind in ["CronJob", "Role", "RoleBinding", "ImageDigestMirrorSet", "ImageTagMirrorSet"] {
        assert!(!found.contains(kind), "{kind} rendered by default");
    }
}

#[test]
fn the_refresher_runs_pull_secret_on_a_schedule_with_rbac_on_that_one_secret_only() {
    let objects = render_with(&[SOME_CONFIG, REFRESHER_AND_MIRROR_SETS[0]]);
    let kinds: BTreeSet<&str> = refresher_objects(&objects).iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CronJob", "Job", "Role", "RoleBinding", "ServiceAccount"].into());

    let account = refresher(&objects, "ServiceAccount");
    assert_eq!(account["metadata"]["name"].as_str(), Some("ocync-pull-secret"));
    assert_eq!(account["automountServiceAccountToken"].as_bool(), Some(true), "it calls the API");

    let role = refresher(&objects, "Role");
    assert_eq!(role["metadata"]["namespace"].as_str(), Some("openshift-config"), "the Secret's namespace");
    let rules: serde_json::Value = serde_norway::from_value(role["rules"].clone()).unwrap();
    assert_eq!(
        rules,
        serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["pull-secret"], "verbs": ["get", "update", "patch"]}]),
        "that one Secret, nothing else (create cannot be limited by name, so it is not granted)"
    );
    let binding = refresher(&objects, "RoleBinding");
    assert_eq!(binding["metadata"]["namespace"].as_str(), Some("openshift-config"));
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("Role"));
    let subjects: serde_json::Value = serde_norway::from_value(binding["subjects"].clone()).unwrap();
    assert_eq!(
        subjects,
        serde_json::json!([{"kind": "ServiceAccount", "name": "ocync-pull-secret", "namespace": "mirror"}])
    );
    for object in &objects {
        if matches!(object["kind"].as_str(), Some("ClusterRole" | "ClusterRoleBinding")) {
            panic!("no cluster-wide RBAC: {object:?}");
        }
    }

    let cronjob = refresher(&objects, "CronJob");
    assert_eq!(cronjob["spec"]["schedule"].as_str(), Some("0 */6 * * *"));
    assert_eq!(cronjob["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"));
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"].as_str(), Some("ocync-pull-secret"));
    assert_eq!(
        refresher_args(&objects),
        [
            "pull-secret",
            "--secret",
            "openshift-config/pull-secret",
            "--config",
            "/etc/ocync/ocync.yaml",
            "--log-format",
            "text"
        ]
    );
    let env: serde_json::Value = serde_norway::from_value(pod["spec"]["containers"][0]["env"].clone()).unwrap();
    assert_eq!(
        env,
        serde_json::json!([
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_ACCESS_KEY_ID"}}},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_SECRET_ACCESS_KEY"}}},
        ])
    );
    // The watch Deployment's selector must not pick up the refresher's pods.
    let selector = &object(&objects, "Deployment")["spec"]["selector"]["matchLabels"];
    let labels = pod["metadata"]["labels"].as_mapping().unwrap();
    let matches = selector.as_mapping().unwrap().iter().all(|(key, value)| labels.get(key) == Some(value));
    assert!(!matches, "Deployment selector {selector:?} matches refresher pod labels {labels:?}");

    let mut command_line = refresher_args(&objects);
    command_line.push("--help");
    let output = run(Path::new(env!("CARGO_BIN_EXE_ocync")), &command_line);
    assert!(output.success, "ocync rejects the refresher's arguments {command_line:?}:\n{}", output.stderr);
}

#[test]
fn the_refresher_also_runs_once_as_an_install_and_upgrade_hook_sharing_the_cronjobs_identity() {
    let objects = render_with(&[SOME_CONFIG, REFRESHER_AND_MIRROR_SETS[0]]);
    let hook = refresher(&objects, "Job");
    assert_eq!(hook["metadata"]["name"].as_str(), Some("ocync-pull-secret-install"));
    let annotations: serde_json::Value = serde_norway::from_value(hook["metadata"]["annotations"].clone()).unwrap();
    assert_eq!(
        annotations,
        serde_json::json!({
            "helm.sh/hook": "post-install,post-upgrade",
            "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
        })
    );
    // The same Job spec as every CronJob run: the same command, ServiceAccount (so the same
    // Role), environment and config volume.
    assert_eq!(hook["spec"], refresher(&objects, "CronJob")["spec"]["jobTemplate"]["spec"]);
    assert_eq!(hook["spec"]["template"]["spec"]["serviceAccountName"].as_str(), Some("ocync-pull-secret"));
    // The identity it uses is an ordinary release resource, which Helm creates before any
    // post-install hook runs; it is not a hook itself (a hook would leave the release).
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        assert!(refresher(&objects, kind)["metadata"]["annotations"]["helm.sh/hook"].is_null(), "{kind} is no hook");
    }

    let without = render_with(&[SOME_CONFIG, r#"pullSecretRefresher={"enabled":true,"runOnInstall":false}"#]);
    let kinds: BTreeSet<&str> = refresher_objects(&without).iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CronJob", "Role", "RoleBinding", "ServiceAccount"].into(), "runOnInstall: false");
}

#[test]
fn the_refresher_names_its_registries_and_takes_the_irsa_role() {
    let objects = render_with(&[
        SOME_CONFIG,
        r#"pullSecretRefresher={"enabled":true,"schedule":"15 */4 * * *","secret":{"namespace":"apps","name":"ecr-pull"},"registries":["123456789012.dkr.ecr.us-east-1.amazonaws.com","210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com"]}"#,
        r#"workloadIdentity={"provider":"aws","aws":{"roleArn":"arn:aws:iam::123456789012:role/refresher"}}"#,
    ]);
    assert_eq!(
        refresher_args(&objects),
        [
            "pull-secret",
            "--secret",
            "apps/ecr-pull",
            "--registry",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "--registry",
            "210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            "--log-format",
            "text"
        ],
        "named registries: no config needed"
    );
    let cronjob = refresher(&objects, "CronJob");
    assert_eq!(cronjob["spec"]["schedule"].as_str(), Some("15 */4 * * *"));
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert!(pod["volumes"].is_null() && pod["containers"][0]["env"].is_null());
    let account = refresher(&objects, "ServiceAccount");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str(),
        Some("arn:aws:iam::123456789012:role/refresher")
    );
    assert_eq!(refresher(&objects, "Role")["rules"][0]["resourceNames"][0].as_str(), Some("ecr-pull"));
    assert_eq!(refresher(&objects, "Role")["metadata"]["namespace"].as_str(), Some("apps"));
}

#[test]
fn mirror_sets_render_exactly_what_mirror_config_generates() {
    // A config with several sources (one Docker Hub), targets and a prefix; the chart renders
    // the helm-values output, and the result must equal `mirror-config --format idms/itms`.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("ocync.yaml");
    std::fs::write(
        &config,
        "registries:\n  hub: { url: docker.io }\n  quay: { url: quay.io }\n  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com, prefix: mas-images }\n  gar: { url: us-docker.pkg.dev }\n\
         defaults: { targets: [ecr, gar] }\nmappings:\n  - { from: nginx, source: hub }\n  - { from: argoproj/argocd, source: quay, to: argo/argocd }\n",
    )
    .expect("write config");
    let ocync = Path::new(env!("CARGO_BIN_EXE_ocync"));
    let generate = |format: &str| {
        let config = config.to_str().expect("UTF-8");
        let out = dir.path().to_str().expect("UTF-8");
        let args = [
            "mirror-config",
            "--config",
            config,
            "--format",
            format,
            "--never-contact-source",
            "--name",
            "mas",
            "--out",
            out,
        ];
        let output = run(ocync, &[&args[..], if format == "helm-values" { &["--tags"][..] } else { &[] }].concat());
        assert!(output.success, "mirror-config --format {format}: {}", output.stderr);
    };
    for format in ["helm-values", "idms", "itms"] {
        generate(format);
    }
    let values = dir.path().join("mas-values.yaml");
    let objects = render(&[values], &[SOME_CONFIG]);
    for (kind, file, list) in [
        ("ImageDigestMirrorSet", "mas-idms.yaml", "imageDigestMirrors"),
        ("ImageTagMirrorSet", "mas-itms.yaml", "imageTagMirrors"),
    ] {
        let rendered = object(&objects, kind);
        let generated: Value =
            serde_norway::from_str(&std::fs::read_to_string(dir.path().join(file)).unwrap()).unwrap();
        assert_eq!(rendered["apiVersion"].as_str(), Some("config.openshift.io/v1"));
        assert_eq!(rendered["kind"], generated["kind"]);
        assert_eq!(rendered["metadata"]["name"].as_str(), Some("mas"));
        assert!(rendered["metadata"]["namespace"].is_null(), "{kind} is cluster-scoped");
        assert_eq!(rendered["spec"], generated["spec"], "{kind}: chart and mirror-config agree");
        // Structurally what OpenShift's CRD requires (kubernetes-validate has no schema for it).
        let entries = rendered["spec"][list].as_sequence().expect("entries");
        assert_eq!(entries.len(), 2);
        for entry in entries {
            let fields: BTreeSet<&str> = entry.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
            assert_eq!(fields, ["mirrorSourcePolicy", "mirrors", "source"].into());
            assert_eq!(entry["mirrorSourcePolicy"].as_str(), Some("NeverContactSource"));
            let mirrors = entry["mirrors"].as_sequence().expect("mirrors");
            assert!(!mirrors.is_empty() && mirrors.iter().all(|m| !m.as_str().unwrap().contains(['@', ':'])));
        }
        assert_eq!(entries[0]["source"].as_str(), Some("docker.io/library/nginx"));
        assert_eq!(
            entries[0]["mirrors"],
            serde_norway::from_str::<Value>(
                "[123456789012.dkr.ecr.us-east-1.amazonaws.com/mas-images/nginx, us-docker.pkg.dev/nginx]"
            )
            .unwrap()
        );
    }
}
