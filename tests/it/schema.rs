//! `ocync schema` and the committed `infra/schema/ocync.schema.json`: the file is exactly what
//! the command prints, it is a valid Draft 2020-12 schema, every example config in the
//! repository validates against it with a real validator (Python `jsonschema`, driven by
//! `tests/support/config_schema.py`), and malformed configs that `ocync validate` rejects are
//! rejected by the schema too, both naming the bad key.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::copy::{describe, ocync, ocync_with_env};
use crate::support::tools::{TempConfig, venv_tool};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `{name: [error, ...]}` for each named YAML document, from `jsonschema` against the committed
/// schema (an empty list: valid).
fn schema_errors(documents: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let python = venv_tool("python", "jsonschema pyyaml");
    let mut child = Command::new(python)
        .arg(repo().join("tests/support/config_schema.py"))
        .arg(repo().join(ocync::cli::schema::COMMITTED_PATH))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start config_schema.py");
    let input = serde_json::to_vec(documents).expect("documents as JSON");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write documents");
    let output = child.wait_with_output().expect("config_schema.py finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("No module named"), "a Python package is missing ({stderr}); run .ci/run");
    assert!(output.status.success(), "{}", describe(&output));
    serde_json::from_slice(&output.stdout).expect("results JSON")
}

/// Every config a user can copy from the repository: `tests/fixtures/examples/*.yaml`, the
/// README's config blocks, and the `config:` of the chart's example values.
fn example_configs() -> BTreeMap<String, String> {
    let mut examples = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("tests/fixtures/examples")).expect("examples dir") {
        let path = entry.expect("dir entry").path();
        examples.insert(path.display().to_string(), std::fs::read_to_string(&path).expect("example"));
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    for (index, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().expect("a fenced block");
        if block.lines().any(|line| line.starts_with("mappings:") || line.starts_with("registries:")) {
            examples.insert(format!("README.md yaml block {index}"), block.to_string());
        }
    }
    for entry in std::fs::read_dir(repo().join("tests/fixtures/chart-values")).expect("chart values dir") {
        let path = entry.expect("dir entry").path();
        let values: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).expect("values")).expect("values YAML");
        let text = match &values["config"] {
            serde_norway::Value::String(text) => text.clone(),
            serde_norway::Value::Mapping(map) if !map.is_empty() => {
                serde_norway::to_string(&values["config"]).expect("config as YAML")
            }
            _ => continue,
        };
        examples.insert(format!("{} (config)", path.display()), text);
    }
    examples
}

#[test]
fn the_committed_schema_is_what_ocync_schema_prints() {
    let output = ocync(&["schema"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let committed = std::fs::read_to_string(repo().join(ocync::cli::schema::COMMITTED_PATH)).expect("committed schema");
    assert!(
        String::from_utf8_lossy(&output.stdout) == committed,
        "{} is stale; regenerate it with: cargo run -- schema > {}",
        ocync::cli::schema::COMMITTED_PATH,
        ocync::cli::schema::COMMITTED_PATH
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).expect("schema JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["additionalProperties"], false, "unknown top-level keys must be refused");
    let mut top: Vec<&str> = schema["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["defaults", "global", "mappings", "registries", "target_groups"]);
}

#[test]
fn every_example_config_in_the_repository_validates_against_the_schema() {
    let examples = example_configs();
    // 5 examples, the README's config reference, at least one chart values file with a config.
    assert!(examples.len() >= 7, "found only {:?}", examples.keys().collect::<Vec<_>>());
    assert!(examples.keys().any(|name| name.starts_with("README.md")), "no README config block found");
    let results = schema_errors(&examples);
    let failed: BTreeMap<_, _> = results.iter().filter(|(_, errors)| !errors.is_empty()).collect();
    assert!(failed.is_empty(), "examples the schema rejects: {failed:#?}");
    assert_eq!(results.len(), examples.len());
}

/// A config that `ocync validate` accepts up to `registry` (lines added under `registries:`)
/// and `rest` (top-level keys).
fn config_with(registry: &str, rest: &str) -> String {
    format!(
        "registries:\n  src: {{ url: \"http://127.0.0.1:5000\" }}\n  dst: {{ url: \"http://127.0.0.1:5001\" }}\n{registry}{rest}"
    )
}

/// Malformed configs: name, a registry line, top-level keys, and the key both checks must name.
const BAD_CONFIGS: [(&str, &str, &str, &str); 12] = [
    ("misspelt top-level key", "", "mapings: [{ from: a, source: src, targets: dst }]\n", "mapings"),
    ("misspelt mapping key", "", "mappings: [{ form: a, source: src, targets: dst }]\n", "form"),
    ("mapping without from", "", "mappings: [{ to: a, source: src, targets: dst }]\n", "from"),
    ("unknown auth_type", "  corp: { url: corp.example, auth_type: basci }\n", "", "auth_type"),
    ("unknown upload mode", "  corp: { url: corp.example, upload: chunky }\n", "", "upload"),
    ("credentials without password", "  corp: { url: corp.example, credentials: { username: bot } }\n", "", "password"),
    ("latest as a word", "", "mappings: [{ from: a, source: src, targets: dst, tags: { latest: five } }]\n", "latest"),
    ("unknown sort", "", "mappings: [{ from: a, source: src, targets: dst, tags: { sort: newest } }]\n", "sort"),
    ("negative transfer limit", "", "global: { max_concurrent_transfers: -1 }\n", "max_concurrent_transfers"),
    ("transfer limit past 1024", "", "global: { max_concurrent_transfers: 100000 }\n", "max_concurrent_transfers"),
    ("registry bound of zero", "  corp: { url: corp.example, max_concurrent: 0 }\n", "", "max_concurrent"),
    ("group as a string", "", "target_groups: { g: dst }\n", "target_groups"),
];

#[test]
fn bad_configs_are_rejected_by_the_schema_as_by_ocync_validate() {
    let good = config_with("", "mappings: [{ from: team/app, source: src, targets: dst }]\n");
    let mut documents = BTreeMap::from([("good".to_string(), good.clone())]);
    for (name, registry, rest, _) in BAD_CONFIGS {
        documents.insert(name.to_string(), config_with(registry, rest));
    }
    let results = schema_errors(&documents);
    assert_eq!(results["good"], Vec::<String>::new(), "the schema rejects a good config");
    let validated = ocync(&["validate", TempConfig::new(&good).path.as_str()]);
    assert_eq!(validated.status.code(), Some(0), "{}", describe(&validated));

    for (name, _, _, key) in BAD_CONFIGS {
        let errors = &results[name];
        assert!(errors.iter().any(|error| error.contains(key)), "{name}: schema errors {errors:?} do not name {key}");
        let config = TempConfig::new(&documents[name]);
        let output = ocync_with_env(&["validate", config.path.as_str()], &[]);
        assert_eq!(output.status.code(), Some(3), "{name}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{name}: validate does not name {key}: {stderr}");
    }
}

#[test]
fn references_between_names_are_left_to_ocync_validate() {
    // The schema checks structure and types only: a mapping naming a registry that does not
    // exist is well-formed, so only `ocync validate` refuses it (README says so).
    let document = config_with("", "mappings: [{ from: a, source: nowhere, targets: dst }]\n");
    let results = schema_errors(&BTreeMap::from([("unknown source".to_string(), document.clone())]));
    assert_eq!(results["unknown source"], Vec::<String>::new());
    let output = ocync(&["validate", TempConfig::new(&document).path.as_str()]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nowhere"), "{}", describe(&output));
}
