//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` expansion, applied to the config text
//! before it is parsed. `$$` stands for a literal `$`.

/// A variable that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct InterpolationError {
    /// 1-based line of the `${…}`.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Expands variables in `text` using `lookup` (the environment, in production). Every problem
/// is reported, not just the first.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Vec<InterpolationError>> {
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
            errors.push(InterpolationError { line, message: "unclosed ${".to_string() });
            rest = "";
            break;
        };
        match expand(&body_and_rest[..close], &lookup) {
            Ok(value) => output.push_str(&value),
            Err(message) => errors.push(InterpolationError { line, message }),
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
    match (lookup(name).filter(|v| !v.is_empty()), operator, argument) {
        (Some(value), _, _) => Ok(value),
        (None, ":-", Some(default)) => Ok(default.to_string()),
        (None, ":?", Some(message)) if !message.is_empty() => Err(format!("{name}: {message}")),
        _ => Err(format!("environment variable {name} is not set")),
    }
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
    fn secret_looking_names_are_recognised() {
        assert!(looks_secret("CORP_TOKEN") && looks_secret("db_password"));
        assert!(!looks_secret("AWS_ACCOUNT_ID"));
    }
}
