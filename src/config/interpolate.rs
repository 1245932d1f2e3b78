//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` expansion, applied to the config text
//! before it is parsed. `$$` stands for a literal `$`.
//!
//! Whoever can write a config (an S3 object, a ConfigMap) is trusted with registry settings,
//! not with the identity of the process that reads it: a `${VAR}` naming one of the platform's
//! own credential variables is refused, so a config cannot copy the Lambda role's keys into a
//! registry password and send them to a host of its choosing.

/// A variable that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Error {
    /// 1-based line of the `${…}`.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Expands variables in `text` using `lookup` (the environment, in production). Every problem
/// is reported, not just the first.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Vec<Error>> {
    let mut output = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        output.push_str(&rest[..dollar]);
        let line = text[..text.len() - rest.len() + dollar].matches('\n').count() + 1;
        let after = &rest[dollar + 1..];
        if let Some(after_escape) = after.strip_prefix('$') {
            output.push('$');
            rest = after_escape;
            continue;
        }
        let Some(body_and_rest) = after.strip_prefix('{') else {
            output.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body_and_rest.find('}') else {
            errors.push(Error { line, message: "unclosed ${".to_string() });
            rest = "";
            break;
        };
        match expand(&body_and_rest[..close], &lookup) {
            Ok(value) => output.push_str(&value),
            Err(message) => errors.push(Error { line, message }),
        }
        rest = &body_and_rest[close + 1..];
    }
    output.push_str(rest);
    if errors.is_empty() { Ok(output) } else { Err(errors) }
}

fn expand(body: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, operator, argument) = match body.find(":-").or_else(|| body.find(":?")) {
        Some(at) => (&body[..at], &body[at..at + 2], Some(&body[at + 2..])),
        None => (body, "", None),
    };
    let valid_name = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid_name {
        return Err(format!("${{{body}}} is not a valid variable reference"));
    }
    // Refused before the lookup, set or not, so even `${AWS_SESSION_TOKEN:-x}` reads nothing.
    if is_platform_credential(name) {
        return Err(format!(
            "{name} is the platform's own credential, which a config may not read; \
             put registry secrets in their own variables"
        ));
    }
    match (lookup(name).filter(|v| !v.is_empty()), operator, argument) {
        (Some(value), _, _) => Ok(value),
        (None, ":-", Some(default)) => Ok(default.to_string()),
        (None, ":?", Some(message)) if !message.is_empty() => Err(format!("{name}: {message}")),
        _ => Err(format!("environment variable {name} is not set")),
    }
}

/// The cloud SDKs' own credential variables (and the endpoints that hand out credentials with
/// them): AWS's default chain, ECS/EKS container credentials and IRSA; Azure's service principal,
/// workload identity and App Service / Arc managed identity; Google's ADC and gcloud overrides;
/// GitHub Actions' OIDC request token.
const PLATFORM_CREDENTIALS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_PASSWORD",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "CLOUDSDK_AUTH_ACCESS_TOKEN",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
];

/// Prefixes of the cloud SDKs' variables, and the words that make one of them a credential:
/// the SDKs add variables over time (`AWS_BEARER_TOKEN_BEDROCK`, `ARM_CLIENT_SECRET`), so the
/// rule catches their kin that the list above does not name. `AWS_REGION`, `AZURE_CLIENT_ID`,
/// `GOOGLE_CLOUD_PROJECT` and the like stay usable.
const PLATFORM_PREFIXES: &[&str] =
    &["AWS_", "AMAZON_", "AZURE_", "ARM_", "MSI_", "GOOGLE_", "GCP_", "GCLOUD_", "CLOUDSDK_"];
const CREDENTIAL_WORDS: &[&str] =
    &["SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "SESSION", "ACCESS_KEY", "PRIVATE_KEY", "CERTIFICATE"];

/// Whether `name` is one of the platform's own credential variables, which `${…}` never expands:
/// a name in the list above, or a cloud SDK prefix (`AWS_`, `AZURE_`, `ARM_`, `MSI_`, `GOOGLE_`,
/// `GCP_`, `GCLOUD_`, `CLOUDSDK_`, `AMAZON_`) followed by a credential word (`SECRET`, `TOKEN`,
/// `PASSWORD`, `CREDENTIAL`, `SESSION`, `ACCESS_KEY`, `PRIVATE_KEY`, `CERTIFICATE`). Case does
/// not matter (Windows variables ignore it).
pub fn is_platform_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    PLATFORM_CREDENTIALS.contains(&upper.as_str())
        || PLATFORM_PREFIXES.iter().any(|prefix| {
            upper.strip_prefix(prefix).is_some_and(|rest| CREDENTIAL_WORDS.iter().any(|word| rest.contains(word)))
        })
}

/// Whether a variable name looks like it holds a secret (for `ocync expand`).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH"].iter().any(|word| upper.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ACCOUNT" => Some("123456789012".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_defaults_and_escapes() {
        let text = "url: ${ACCOUNT}.dkr\nport: ${PORT:-5000}\nliteral: $$HOME and $5";
        assert_eq!(interpolate(text, env).unwrap(), "url: 123456789012.dkr\nport: 5000\nliteral: $HOME and $5");
    }

    #[test]
    fn empty_counts_as_unset_for_defaults() {
        assert_eq!(interpolate("${EMPTY:-x}", env).unwrap(), "x");
    }

    #[test]
    fn reports_every_missing_variable_with_its_line() {
        let errors =
            interpolate("a: ${NOPE}\nb: ${TOKEN:?set TOKEN to the robot password}\nc: ${bad-name}", env).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "line 1: environment variable NOPE is not set",
                "line 2: TOKEN: set TOKEN to the robot password",
                "line 3: ${bad-name} is not a valid variable reference",
            ]
        );
    }

    #[test]
    fn platform_credentials_are_refused_without_being_read() {
        let read = std::cell::RefCell::new(Vec::new());
        let lookup = |name: &str| {
            read.borrow_mut().push(name.to_string());
            Some("value-of-the-role".to_string())
        };
        let text = "a: ${AWS_SECRET_ACCESS_KEY}\nb: ${AWS_SESSION_TOKEN:-fallback}\nc: ${azure_client_secret}\nd: ${CORP_TOKEN}";
        let errors = interpolate(text, lookup).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3], "{errors:?}");
        assert!(errors[0].message.starts_with("AWS_SECRET_ACCESS_KEY is the platform's own credential"), "{errors:?}");
        assert!(errors[0].message.contains("put registry secrets in their own variables"), "{errors:?}");
        assert!(errors.iter().all(|e| !e.message.contains("value-of-the-role")), "{errors:?}");
        assert_eq!(*read.borrow(), ["CORP_TOKEN"], "a refused variable is never looked up");
    }

    #[test]
    fn the_list_and_the_prefix_rule_cover_the_cloud_sdks_and_spare_ordinary_names() {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECURITY_TOKEN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_BEARER_TOKEN_BEDROCK",
            "AZURE_CLIENT_CERTIFICATE_PASSWORD",
            "AZURE_FEDERATED_TOKEN_FILE",
            "ARM_CLIENT_SECRET",
            "IDENTITY_HEADER",
            "MSI_SECRET",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_OAUTH_ACCESS_TOKEN",
            "CLOUDSDK_AUTH_ACCESS_TOKEN",
            "GCP_SA_PRIVATE_KEY",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        ] {
            assert!(is_platform_credential(name), "{name}");
        }
        for name in [
            "AWS_REGION",
            "AWS_ACCOUNT_ID",
            "AZURE_CLIENT_ID",
            "GOOGLE_CLOUD_PROJECT",
            "CORP_TOKEN",
            "GITHUB_TOKEN",
            "HOME",
        ] {
            assert!(!is_platform_credential(name), "{name}");
        }
    }

    #[test]
    fn secret_looking_names_are_recognised() {
        assert!(looks_secret("CORP_TOKEN") && looks_secret("db_password"));
        assert!(!looks_secret("AWS_ACCOUNT_ID"));
    }
}
