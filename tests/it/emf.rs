//! Checking log lines against the CloudWatch Embedded Metric Format: a JSON Schema of the
//! `_aws` metadata written here from the AWS specification, validated by Python `jsonschema`
//! (a real validator), and the rules a schema cannot say (every dimension and metric a
//! directive names is a top-level member, a string or a number) checked by hand.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The EMF specification's rules for the root and its `_aws` object: a millisecond
/// `Timestamp`, and `CloudWatchMetrics` directives each with a `Namespace`, dimension sets of at
/// most 30 names, and at most 100 metric definitions whose `Unit` is a CloudWatch unit.
const SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["_aws"],
  "properties": {
    "_aws": {
      "type": "object",
      "required": ["Timestamp", "CloudWatchMetrics"],
      "properties": {
        "Timestamp": {"type": "integer", "minimum": 0},
        "LogGroupName": {"type": "string", "minLength": 1},
        "CloudWatchMetrics": {
          "type": "array",
          "items": {
            "type": "object",
            "required": ["Namespace", "Dimensions", "Metrics"],
            "properties": {
              "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[A-Za-z0-9._/#: -]+$", "not": {"pattern": "^AWS/"}},
              "Dimensions": {
                "type": "array",
                "items": {
                  "type": "array",
                  "maxItems": 30,
                  "uniqueItems": true,
                  "items": {"type": "string", "minLength": 1, "maxLength": 250}
                }
              },
              "Metrics": {
                "type": "array",
                "maxItems": 100,
                "items": {
                  "type": "object",
                  "required": ["Name"],
                  "additionalProperties": false,
                  "properties": {
                    "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "Unit": {"enum": ["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
                      "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent",
                      "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
                      "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
                      "Terabits/Second", "Count/Second", "None"]},
                    "StorageResolution": {"enum": [1, 60]}
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}"##;

/// The documents among `output`'s lines: JSON objects with an `_aws` member.
pub(crate) fn documents(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(|value| value.get("_aws").is_some())
        .collect()
}

/// Asserts that every document is valid EMF: the schema through Python `jsonschema`, then the
/// member rules.
pub(crate) fn assert_valid(documents: &[Value]) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing; install it with: python3 -m venv .venv && .venv/bin/pip install jsonschema",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (schema, lines) = (dir.path().join("emf.schema.json"), dir.path().join("lines.json"));
    std::fs::write(&schema, SCHEMA).unwrap();
    std::fs::write(&lines, serde_json::to_string(documents).unwrap()).unwrap();
    let script = "import json, sys\n\
        try:\n    import jsonschema\n\
        except ImportError:\n    sys.exit('jsonschema is missing: .venv/bin/pip install jsonschema')\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        validator = jsonschema.Draft202012Validator(schema)\n\
        for n, document in enumerate(json.load(open(sys.argv[2]))):\n    \
            for error in validator.iter_errors(document):\n        \
                print(f'document {n}: {error.json_path}: {error.message}')\n";
    let output = Command::new(&python).args(["-c", script]).arg(&schema).arg(&lines).output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && printed.trim().is_empty(),
        "EMF schema check failed:\n{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for document in documents {
        for directive in document["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            for name in directive["Dimensions"].as_array().unwrap().iter().flat_map(|set| set.as_array().unwrap()) {
                let name = name.as_str().unwrap();
                assert!(document[name].is_string(), "dimension {name} is not a string member: {document}");
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(document[name].is_number(), "metric {name} is not a number member: {document}");
            }
        }
    }
}

#[test]
fn the_schema_and_the_member_rules_refuse_broken_documents() {
    let good = serde_json::json!({
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "ocync", "Dimensions": [["Function"]],
            "Metrics": [{"Name": "ImagesFailed", "Unit": "Count"}]}]},
        "Function": "f", "ImagesFailed": 0
    });
    assert_valid(std::slice::from_ref(&good));
    let broken = [
        ("/_aws/Timestamp", serde_json::json!("yesterday")),
        ("/_aws/CloudWatchMetrics/0/Metrics/0/Unit", serde_json::json!("Images")),
        ("/_aws/CloudWatchMetrics/0/Namespace", serde_json::json!("AWS/Lambda")),
        ("/ImagesFailed", serde_json::json!("none")),
    ];
    for (pointer, value) in broken {
        let mut document = good.clone();
        *document.pointer_mut(pointer).unwrap() = value;
        let refused = std::panic::catch_unwind(|| assert_valid(std::slice::from_ref(&document)));
        assert!(refused.is_err(), "accepted with {pointer} broken: {document}");
    }
}
