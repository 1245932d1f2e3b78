//! The SAM template (`template.yaml`): the real checkers (cfn-lint, `sam validate`) accept it,
//! and the properties the Lambda code relies on hold in it. The checkers run offline, without AWS
//! credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

const INSTALL_HINT: &str = "python3 -m venv .venv && .venv/bin/pip install cfn-lint aws-sam-cli";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A checker from the repository's venv, or a panic saying how to install it (never a skip).
fn venv_tool(name: &str) -> PathBuf {
    let path = repo().join(".venv/bin").join(name);
    assert!(path.is_file(), "{} is missing; install it with: {INSTALL_HINT}", path.display());
    path
}

/// Runs `command` in the repository root and asserts exit status 0, showing its output if not.
fn assert_passes(mut command: Command, what: &str) -> String {
    let output = command.current_dir(repo()).output().unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    stdout
}

/// `sam` with no AWS credentials or profile, a fixed region, no instance-metadata lookups, no
/// telemetry, a throwaway HOME (SAM keeps state in ~/.aws-sam) and every HTTP(S) request sent
/// to a closed local port, so nothing it does can depend on the network or the machine's AWS
/// setup. (Its weekly "newer version?" check to PyPI then fails at once, which SAM ignores.)
fn offline_sam(home: &Path) -> Command {
    let mut command = Command::new(venv_tool("sam"));
    for var in ["AWS_PROFILE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        command.env_remove(var);
    }
    command
        .env("HOME", home)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SAM_CLI_TELEMETRY", "0")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    command
}

#[test]
fn cfn_lint_reports_nothing() {
    let mut command = Command::new(venv_tool("cfn-lint"));
    command.args(["--", "template.yaml"]);
    let stdout = assert_passes(command, "cfn-lint template.yaml");
    assert!(stdout.trim().is_empty(), "cfn-lint printed findings:\n{stdout}");
}

#[test]
fn sam_validate_with_lint_passes_offline() {
    let home = tempfile::tempdir().expect("temp HOME");
    let mut command = offline_sam(home.path());
    command.args(["validate", "--lint", "--template", "template.yaml"]);
    let stdout = assert_passes(command, "sam validate --lint");
    assert!(stdout.contains("is a valid SAM Template"), "unexpected sam output:\n{stdout}");
}

#[test]
fn sam_validate_translation_passes_offline() {
    // Without --lint, SAM runs its own translator (and creates an IAM client it never calls,
    // because the template names no managed policy).
    let home = tempfile::tempdir().expect("temp HOME");
    let mut command = offline_sam(home.path());
    command.args(["validate", "--template", "template.yaml"]);
    let stdout = assert_passes(command, "sam validate");
    assert!(stdout.contains("is a valid SAM Template"), "unexpected sam output:\n{stdout}");
}

fn template() -> Value {
    let text = std::fs::read_to_string(repo().join("template.yaml")).expect("read template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is plain YAML (long-form intrinsics, no !Tags)")
}

fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
    let resource = &template["Resources"][name];
    assert!(resource.is_mapping(), "resource {name} is missing");
    resource
}

fn number(value: &Value, what: &str) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{what} is not a whole number: {value:?}"))
}

/// The parameter a `{Ref: X}` property refers to.
fn referenced_parameter<'a>(template: &'a Value, property: &Value, what: &str) -> &'a Value {
    let name =
        property["Ref"].as_str().unwrap_or_else(|| panic!("{what} should be a Ref to a parameter: {property:?}"));
    let parameter = &template["Parameters"][name];
    assert!(parameter.is_mapping(), "{what} refers to {name}, which is not a parameter");
    parameter
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Parameter values of one deployment, by name.
type Parameters = HashMap<String, Value>;

const TARGETS: &str = "arn:aws:ecr:us-east-1:123456789012:repository/mirror/*";

/// Values for the parameters without a default.
const REQUIRED: [(&str, &str); 2] = [("ConfigBucket", "mirror-config"), ("TargetRepositoryArns", TARGETS)];

/// The values a deployment with `overrides` (and `REQUIRED`) gives the parameters: each override,
/// else the parameter's default. A CommaDelimitedList is a list, as `Ref` yields it.
fn deployment(template: &Value, overrides: &[(&str, &str)]) -> Parameters {
    let declared = template["Parameters"].as_mapping().expect("parameters");
    let mut values = Parameters::new();
    for (name, parameter) in declared {
        let name = name.as_str().expect("parameter name");
        let text = match overrides.iter().chain(&REQUIRED).find(|(n, _)| *n == name) {
            Some((_, value)) => (*value).to_string(),
            None => match &parameter["Default"] {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                other => panic!("parameter {name} has no usable default: {other:?}"),
            },
        };
        let value = if parameter["Type"].as_str() == Some("CommaDelimitedList") {
            Value::Sequence(text.split(',').map(|item| Value::String(item.to_string())).collect())
        } else {
            Value::String(text)
        };
        values.insert(name.to_string(), value);
    }
    for (name, _) in overrides {
        assert!(values.contains_key(*name), "{name} is not a parameter of the template");
    }
    values
}

/// `value` as CloudFormation deploys it with `parameters`: `Ref`s to parameters replaced by their
/// values, each `Fn::If` decided by its condition, `AWS::NoValue` removed (`None` when `value`
/// itself is). Other intrinsics (`Fn::GetAtt`, `Fn::Sub`, ...) stay as written.
fn resolve(template: &Value, value: &Value, parameters: &Parameters) -> Option<Value> {
    match value {
        Value::Mapping(mapping) => {
            if let Some(name) = value.get("Ref").and_then(Value::as_str).filter(|_| mapping.len() == 1) {
                return match name {
                    "AWS::NoValue" => None,
                    _ => Some(parameters.get(name).cloned().unwrap_or_else(|| value.clone())),
                };
            }
            if let Some(branches) = value.get("Fn::If").filter(|_| mapping.len() == 1) {
                let condition = branches[0].as_str().expect("Fn::If names a condition");
                let branch = if holds(template, condition, parameters) { &branches[1] } else { &branches[2] };
                return resolve(template, branch, parameters);
            }
            let resolved = mapping
                .iter()
                .filter_map(|(key, item)| Some((key.clone(), resolve(template, item, parameters)?)))
                .collect();
            Some(Value::Mapping(resolved))
        }
        Value::Sequence(items) => {
            Some(Value::Sequence(items.iter().filter_map(|item| resolve(template, item, parameters)).collect()))
        }
        _ => Some(value.clone()),
    }
}

/// Whether the template's condition `name` holds with `parameters`.
fn holds(template: &Value, name: &str, parameters: &Parameters) -> bool {
    let expression = &template["Conditions"][name];
    assert!(expression.is_mapping(), "condition {name} is missing");
    evaluate(template, expression, parameters)
}

/// A condition expression (the functions this template uses; anything else fails the test).
fn evaluate(template: &Value, expression: &Value, parameters: &Parameters) -> bool {
    let arguments = |function: &str| expression[function].as_sequence().map(Vec::as_slice);
    if let Some([left, right]) = arguments("Fn::Equals") {
        scalar(template, left, parameters) == scalar(template, right, parameters)
    } else if let Some([inner]) = arguments("Fn::Not") {
        !evaluate(template, inner, parameters)
    } else if let Some(name) = expression["Condition"].as_str() {
        holds(template, name, parameters)
    } else {
        panic!("condition function not understood by this test: {expression:?}")
    }
}

/// The string an operand of `Fn::Equals` stands for (a literal, a parameter, a `Fn::Join`).
fn scalar(template: &Value, operand: &Value, parameters: &Parameters) -> String {
    match resolve(template, operand, parameters).expect("an operand that is not AWS::NoValue") {
        Value::String(text) => text,
        Value::Number(number) => number.to_string(),
        joined if joined.get("Fn::Join").is_some() => {
            let separator = joined["Fn::Join"][0].as_str().expect("Fn::Join separator");
            strings(&joined["Fn::Join"][1]).join(separator)
        }
        other => panic!("operand not understood by this test: {other:?}"),
    }
}

/// The statements of the function role's inline policies, as deployed with `parameters`.
fn role_statements(template: &Value, parameters: &Parameters) -> Vec<Value> {
    let role = resource(template, "OcyncFunctionRole");
    let policies = resolve(template, &role["Properties"]["Policies"], parameters).expect("the role has policies");
    let policies = policies.as_sequence().expect("the role has inline policies");
    policies
        .iter()
        .flat_map(|policy| policy["PolicyDocument"]["Statement"].as_sequence().expect("statements").clone())
        .collect()
}

/// The statements whose actions include `action`.
fn granting<'a>(statements: &'a [Value], action: &str) -> Vec<&'a Value> {
    statements.iter().filter(|s| strings(&s["Action"]).contains(&action)).collect()
}

#[test]
fn function_is_the_arm64_al2023_bootstrap_binary() {
    let template = template();
    let function = resource(&template, "OcyncFunction");
    assert_eq!(function["Type"].as_str(), Some("AWS::Serverless::Function"));
    let properties = &function["Properties"];
    assert_eq!(properties["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(strings(&properties["Architectures"]), ["arm64"]);
    assert_eq!(properties["Handler"].as_str(), Some("bootstrap"));
    assert_eq!(function["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"));
    assert_eq!(function["Metadata"]["BuildProperties"]["Binary"].as_str(), Some("bootstrap"));

    let variables = &properties["Environment"]["Variables"];
    assert_eq!(variables["OCYNC_CONFIG"]["Fn::Sub"].as_str(), Some("s3://${ConfigBucket}/${ConfigKey}"));
    assert_eq!(variables["OCYNC_QUEUE_URL"]["Ref"].as_str(), Some("SyncQueue"));
    assert!(variables["RUST_LOG"].is_mapping(), "RUST_LOG is set from a parameter");
}

#[test]
fn continuation_settings_are_parameters_defaulting_to_the_functions_own_defaults() {
    let template = template();
    let variables = &resource(&template, "OcyncFunction")["Properties"]["Environment"]["Variables"];
    for (variable, default) in [
        ("OCYNC_CONTINUATION_MIN_BYTES", ocync::lambda::CONTINUATION_MIN_BYTES),
        ("OCYNC_MAX_CONTINUATIONS", u64::from(ocync::lambda::MAX_CONTINUATIONS)),
    ] {
        let parameter = referenced_parameter(&template, &variables[variable], variable);
        assert_eq!(number(&parameter["Default"], variable), default, "{variable}");
    }
    // Continuations go to the function's own queue, which the role may send to.
    let statements = role_statements(&template, &deployment(&template, &[]));
    let senders = granting(&statements, "sqs:SendMessage");
    assert_eq!(senders.len(), 1);
    assert_eq!(senders[0]["Resource"]["Fn::GetAtt"][0].as_str(), Some("SyncQueue"));
}

#[test]
fn queue_visibility_timeout_is_at_least_six_function_timeouts() {
    let template = template();
    let function = resource(&template, "OcyncFunction");
    let timeout = referenced_parameter(&template, &function["Properties"]["Timeout"], "the function Timeout");

    // VisibilityTimeout: {Fn::FindInMap: [MAP, {Ref: <the timeout parameter>}, KEY]}.
    let queue = resource(&template, "SyncQueue");
    let find = queue["Properties"]["VisibilityTimeout"]["Fn::FindInMap"]
        .as_sequence()
        .expect("the queue VisibilityTimeout comes from Fn::FindInMap keyed by the function timeout");
    assert_eq!(find[1], function["Properties"]["Timeout"], "the mapping is keyed by the same parameter as Timeout");
    let map = &template["Mappings"][find[0].as_str().expect("map name")];
    let key = find[2].as_str().expect("second-level key");

    // Every timeout the parameter allows has a mapping entry of at least 6x (so FindInMap cannot
    // fail at deploy time), and the default is one of them.
    let allowed: Vec<u64> = timeout["AllowedValues"]
        .as_sequence()
        .expect("FunctionTimeout lists its AllowedValues")
        .iter()
        .map(|v| number(v, "an allowed timeout"))
        .collect();
    let default = number(&timeout["Default"], "the default FunctionTimeout");
    assert!(allowed.contains(&default), "default timeout {default} is not among {allowed:?}");
    for seconds in &allowed {
        assert!((1..=900).contains(seconds), "Lambda timeouts are 1..=900 s, got {seconds}");
        let visibility = number(&map[seconds.to_string().as_str()][key], &format!("visibility for timeout {seconds}"));
        assert!(visibility >= 6 * seconds, "timeout {seconds}: visibility {visibility} < 6 x {seconds}");
        assert!(visibility <= 43_200, "SQS visibility timeouts are at most 12 h, got {visibility}");
    }
    let entries = map.as_mapping().expect("the visibility mapping").len();
    assert_eq!(entries, allowed.len(), "one mapping entry per allowed timeout");
}

#[test]
fn sqs_event_reports_batch_item_failures_and_failures_go_to_the_dlq() {
    let template = template();
    let events = resource(&template, "OcyncFunction")["Properties"]["Events"].as_mapping().expect("function events");
    let sqs: Vec<&Value> = events.values().filter(|event| event["Type"].as_str() == Some("SQS")).collect();
    assert_eq!(sqs.len(), 1, "exactly one SQS event");
    let properties = &sqs[0]["Properties"];
    assert_eq!(strings(&properties["Queue"]["Fn::GetAtt"]), ["SyncQueue", "Arn"]);
    assert_eq!(strings(&properties["FunctionResponseTypes"]), ["ReportBatchItemFailures"]);
    referenced_parameter(&template, &properties["BatchSize"], "BatchSize");
    referenced_parameter(&template, &properties["ScalingConfig"]["MaximumConcurrency"], "MaximumConcurrency");

    let schedules: Vec<&Value> =
        events.values().filter(|event| matches!(event["Type"].as_str(), Some("Schedule" | "ScheduleV2"))).collect();
    assert_eq!(schedules.len(), 1, "exactly one schedule event");
    let input = schedules[0]["Properties"]["Input"].as_str().expect("the schedule passes a constant Input");
    let input: serde_json::Value = serde_json::from_str(input).expect("the schedule Input is JSON");
    assert_eq!(input, serde_json::json!({"ocync": "schedule"}));
    let expression = referenced_parameter(&template, &schedules[0]["Properties"]["ScheduleExpression"], "schedule");
    assert_eq!(expression["Default"].as_str(), Some("rate(1 hour)"));

    let redrive = &resource(&template, "SyncQueue")["Properties"]["RedrivePolicy"];
    assert_eq!(strings(&redrive["deadLetterTargetArn"]["Fn::GetAtt"]), ["SyncDeadLetterQueue", "Arn"]);
    referenced_parameter(&template, &redrive["maxReceiveCount"], "maxReceiveCount");
}

#[test]
fn role_reads_exactly_the_config_object_and_nothing_else_is_unscoped() {
    let template = template();
    // The function uses this role, so SAM adds no policies of its own.
    let role = &resource(&template, "OcyncFunction")["Properties"]["Role"]["Fn::GetAtt"];
    assert_eq!(strings(role), ["OcyncFunctionRole", "Arn"]);

    // Every optional grant switched on, so every conditional statement is checked too.
    let everything = deployment(
        &template,
        &[
            ("CreateRepositories", "true"),
            ("SourceRepositoryArns", "arn:aws:ecr:us-east-1:123456789012:repository/src/*"),
        ],
    );
    let statements = role_statements(&template, &everything);
    let s3: Vec<&Value> =
        statements.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("s3:"))).collect();
    assert_eq!(s3.len(), 1, "one S3 statement");
    assert_eq!(strings(&s3[0]["Action"]), ["s3:GetObject", "s3:GetObjectVersion"]);
    assert_eq!(
        s3[0]["Resource"]["Fn::Sub"].as_str(),
        Some("arn:${AWS::Partition}:s3:::${ConfigBucket}/${ConfigKey}"),
        "the S3 resource is exactly the config object"
    );

    for statement in &statements {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        assert!(!strings(&statement["Action"]).iter().any(|a| a.contains('*')), "wildcard action in {statement:?}");
        if strings(&statement["Resource"]).contains(&"*") {
            assert_eq!(strings(&statement["Action"]), ["ecr:GetAuthorizationToken"], "only this action is on *");
        }
        // ocync never tags ECR repositories, sets their policies or lifecycle, or deletes any.
        for action in strings(&statement["Action"]) {
            let Some(verb) = action.strip_prefix("ecr:") else { continue };
            assert!(
                !["Delete", "Tag", "Untag", "Set", "PutLifecycle", "PutRegistry"].iter().any(|v| verb.starts_with(v)),
                "{action} is more than ocync needs"
            );
        }
    }

    let sqs_actions = |verb: &str| {
        statements.iter().any(|s| {
            strings(&s["Action"]).contains(&verb) && strings(&s["Resource"]["Fn::GetAtt"]) == ["SyncQueue", "Arn"]
        })
    };
    for action in ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"] {
        assert!(sqs_actions(action), "{action} on the queue");
    }

    let target = granting(&statements, "ecr:PutImage");
    assert_eq!(target.len(), 1, "one statement allows pushes");
    assert_eq!(strings(&target[0]["Resource"]), [TARGETS], "pushes only to TargetRepositoryArns");
    for action in [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:DescribeRepositories",
    ] {
        assert!(strings(&target[0]["Action"]).contains(&action), "{action} on the target repositories");
    }
}

#[test]
fn create_repository_is_granted_only_when_the_create_repositories_parameter_is_true() {
    let template = template();
    // A deployment that leaves the parameter alone cannot create repositories, wherever it pushes.
    for unset in [deployment(&template, &[]), deployment(&template, &[("CreateRepositories", "false")])] {
        let statements = role_statements(&template, &unset);
        assert_eq!(granting(&statements, "ecr:PutImage").len(), 1, "the role still pushes");
        assert!(
            granting(&statements, "ecr:CreateRepository").is_empty(),
            "CreateRepository granted without the parameter"
        );
    }

    let creating = role_statements(&template, &deployment(&template, &[("CreateRepositories", "true")]));
    let create = granting(&creating, "ecr:CreateRepository");
    assert_eq!(create.len(), 1, "one statement allows CreateRepository");
    assert_eq!(create[0]["Effect"].as_str(), Some("Allow"));
    assert_eq!(strings(&create[0]["Resource"]), [TARGETS], "only where the function may push");
}

#[test]
fn reserved_concurrency_follows_the_parameter_and_is_unset_by_default() {
    let template = template();
    let reserved = |overrides: &[(&str, &str)]| {
        let function =
            resolve(&template, &resource(&template, "OcyncFunction")["Properties"], &deployment(&template, overrides))
                .expect("function properties");
        function.get("ReservedConcurrentExecutions").map(|value| match value {
            Value::String(text) => text.clone(),
            other => panic!("ReservedConcurrentExecutions should be the parameter's value: {other:?}"),
        })
    };
    // Unset: no reservation, so the stack deploys in accounts with a small concurrency quota.
    assert_eq!(reserved(&[]), None);
    assert_eq!(reserved(&[("ReservedConcurrency", "")]), None);
    assert_eq!(reserved(&[("ReservedConcurrency", "11")]).as_deref(), Some("11"));
    // 0 is a value, not "unset": it stops every invocation (an emergency brake).
    assert_eq!(reserved(&[("ReservedConcurrency", "0")]).as_deref(), Some("0"));
}

#[test]
fn alarms_watch_the_dlq_and_function_errors() {
    let template = template();
    let alarms: Vec<&Value> = template["Resources"]
        .as_mapping()
        .expect("resources")
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|r| &r["Properties"])
        .collect();
    let dlq = alarms
        .iter()
        .find(|a| a["MetricName"].as_str() == Some("ApproximateNumberOfMessagesVisible"))
        .expect("a DLQ depth alarm");
    assert_eq!(strings(&dlq["Dimensions"][0]["Value"]["Fn::GetAtt"]), ["SyncDeadLetterQueue", "QueueName"]);
    assert_eq!(dlq["ComparisonOperator"].as_str(), Some("GreaterThanThreshold"));
    assert_eq!(dlq["Threshold"].as_u64(), Some(0));

    let errors = alarms.iter().find(|a| a["MetricName"].as_str() == Some("Errors")).expect("a function errors alarm");
    assert_eq!(errors["Namespace"].as_str(), Some("AWS/Lambda"));
    assert_eq!(errors["Dimensions"][0]["Value"]["Ref"].as_str(), Some("OcyncFunction"));

    let outputs = template["Outputs"].as_mapping().expect("outputs");
    for name in ["FunctionArn", "QueueUrl", "DeadLetterQueueUrl"] {
        assert!(outputs.contains_key(name), "output {name}");
    }
}

#[test]
fn metric_alarms_and_the_dashboard_read_the_metrics_the_function_emits() {
    use ocync::lambda::metrics;
    let template = template();
    let variables = &resource(&template, "OcyncFunction")["Properties"]["Environment"]["Variables"];
    let namespace = referenced_parameter(&template, &variables[metrics::NAMESPACE_VARIABLE], "the metrics namespace");
    assert_eq!(namespace["Default"].as_str(), Some(metrics::DEFAULT_NAMESPACE));
    let function_dimension = |dimensions: &Value| {
        assert_eq!(dimensions[0]["Name"].as_str(), Some(metrics::FUNCTION));
        assert_eq!(dimensions[0]["Value"]["Ref"].as_str(), Some("OcyncFunction"));
    };

    let failed = &resource(&template, "FailedImagesAlarm")["Properties"];
    assert_eq!(failed["Namespace"]["Ref"].as_str(), Some("MetricsNamespace"));
    assert_eq!(failed["MetricName"].as_str(), Some(metrics::IMAGES_FAILED));
    function_dimension(&failed["Dimensions"]);
    assert_eq!((failed["Statistic"].as_str(), failed["Threshold"].as_u64()), (Some("Sum"), Some(0)));
    assert_eq!(failed["ComparisonOperator"].as_str(), Some("GreaterThanThreshold"));

    // Mirror lag: scheduled minus in sync, per schedule period, above zero for
    // MirrorLagPeriods (default 3) periods in a row; no data at all (no schedule) is lag too.
    let lag = &resource(&template, "MirrorLagAlarm")["Properties"];
    let queries = lag["Metrics"].as_sequence().expect("metric queries");
    let stat = |id: &str| &queries.iter().find(|q| q["Id"].as_str() == Some(id)).expect(id)["MetricStat"];
    for (id, name) in [("scheduled", metrics::MAPPINGS_SCHEDULED), ("insync", metrics::MAPPINGS_IN_SYNC)] {
        assert_eq!(stat(id)["Metric"]["MetricName"].as_str(), Some(name));
        assert_eq!(stat(id)["Metric"]["Namespace"]["Ref"].as_str(), Some("MetricsNamespace"));
        function_dimension(&stat(id)["Metric"]["Dimensions"]);
        assert_eq!(stat(id)["Stat"].as_str(), Some("Sum"));
    }
    let returned: Vec<&str> = queries
        .iter()
        .filter(|q| q["ReturnData"].as_bool() == Some(true))
        .filter_map(|q| q["Expression"].as_str())
        .collect();
    assert_eq!(returned, ["FILL(scheduled, 0) - FILL(insync, 0)"]);
    let periods = referenced_parameter(&template, &lag["EvaluationPeriods"], "EvaluationPeriods");
    assert_eq!(number(&periods["Default"], "MirrorLagPeriods"), 3);
    assert_eq!(lag["DatapointsToAlarm"], lag["EvaluationPeriods"], "every period of the window must be behind");
    assert_eq!(lag["TreatMissingData"].as_str(), Some("breaching"));
    let period = referenced_parameter(&template, &stat("scheduled")["Period"], "the alarm period");
    assert_eq!(stat("insync")["Period"], stat("scheduled")["Period"]);
    assert_eq!(number(&period["Default"], "SchedulePeriodSeconds"), 3600);
    assert_eq!(template["Parameters"]["ScheduleExpression"]["Default"].as_str(), Some("rate(1 hour)"));
    // CloudWatch evaluates an alarm over at most 7 days, in whole minutes.
    let longest = number(&periods["MaxValue"], "MirrorLagPeriods max");
    for allowed in period["AllowedValues"].as_sequence().expect("allowed periods") {
        let seconds = number(allowed, "a period");
        assert!(seconds.is_multiple_of(60) && seconds * longest <= 7 * 86400, "period {seconds} x {longest}");
    }

    // The dashboard: valid JSON once substituted, naming only metrics the function emits.
    let body =
        resource(&template, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"].as_str().expect("a Fn::Sub body");
    let substituted = substitute(body, &[("SchedulePeriodSeconds", "3600")]);
    let dashboard: serde_json::Value =
        serde_json::from_str(&substituted).unwrap_or_else(|e| panic!("{e}:\n{substituted}"));
    let emitted = [
        metrics::IMAGES_SYNCED,
        metrics::IMAGES_SKIPPED,
        metrics::IMAGES_FAILED,
        metrics::BYTES_COPIED,
        metrics::CONTINUATIONS,
        metrics::MAPPINGS_SCHEDULED,
        metrics::MAPPINGS_IN_SYNC,
    ];
    let mut shown = Vec::new();
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        for line in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            match line[0].as_str() {
                Some(_) => shown.push(line[1].as_str().expect("a metric name").to_string()),
                None => assert!(
                    line[0]["expression"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("MetricName=\"{}\"", metrics::MIRROR_LAG))
                ),
            }
        }
    }
    shown.sort();
    let mut expected: Vec<String> = emitted.iter().map(|name| name.to_string()).collect();
    expected.sort();
    assert_eq!(shown, expected, "every total the function emits is on the dashboard, nothing else");
    let alarms: Vec<&str> = dashboard["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["properties"]["alarms"].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(
        alarms,
        ["FailedImagesAlarm.Arn", "MirrorLagAlarm.Arn", "DeadLetterQueueAlarm.Arn", "FunctionErrorsAlarm.Arn"]
    );
}

/// `body` with each `${Name}` of `values` replaced, and every other `${...}` by its name.
fn substitute(body: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out += &rest[..start];
        let end = start + rest[start..].find('}').expect("a closed ${");
        let name = &rest[start + 2..end];
        out += values.iter().find(|(n, _)| *n == name).map_or(name, |(_, v)| v);
        rest = &rest[end + 1..];
    }
    out + rest
}
