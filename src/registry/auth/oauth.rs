//! OAuth 2.0 token requests as the cloud providers send them: one form POST
//! (`application/x-www-form-urlencoded`, RFC 6749 §4), a bounded answer, and an error answer
//! quoted by its standard fields (RFC 6749 §5.2 `error`/`error_description`, or a registry's
//! `errors[]`) with every secret masked. Used for Google's service-account token exchange and
//! the two hops of Azure workload identity.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::Error;
use crate::registry::body;

/// How much of an error answer is quoted in messages: enough for Entra ID's `AADSTS…`
/// explanations, short enough for a log line.
const DETAIL_LIMIT: usize = 300;

/// One token request: where, how it is named in messages, and what must never be quoted.
pub(super) struct TokenRequest<'a> {
    /// The endpoint.
    pub url: &'a str,
    /// The request in messages (`ACR token exchange (POST https://…)`).
    pub step: &'a str,
    /// Values masked in anything quoted from the answer (assertions, tokens).
    pub secrets: &'a [&'a str],
    /// Total time for the answer; the client's own timeout covers the request.
    pub timeout: Duration,
}

impl TokenRequest<'_> {
    /// Sends the form `pairs` and returns the body of a 2xx answer (at most
    /// [`body::MAX_TOKEN_ANSWER`] bytes). Errors name the step and never include the request.
    pub async fn post(&self, client: &reqwest::Client, pairs: &[(&str, &str)]) -> Result<Bytes, Error> {
        let response = client
            .post(self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(encode_form(pairs))
            .send()
            .await
            .map_err(|e| self.failure(e))?;
        let status = response.status();
        // Capped, and timed besides the client's own timeout: a token answer is a few hundred
        // bytes, and a hostile endpoint must not hold us or fill memory.
        let limits = body::Limits { max_bytes: body::MAX_TOKEN_ANSWER, idle: self.timeout, total: self.timeout };
        let answer = body::read(response, limits).await.map_err(|error| match error {
            body::Error::Network(e) => self.failure(e),
            other => self.answer_error(format!("answer unusable: {other}")),
        })?;
        if !status.is_success() {
            return Err(Error::Refused {
                step: self.step.to_string(),
                status,
                detail: error_detail(&answer, self.secrets),
            });
        }
        Ok(answer)
    }

    /// An unusable 2xx answer.
    pub fn answer_error(&self, problem: impl Into<String>) -> Error {
        Error::Answer { step: self.step.to_string(), problem: problem.into() }
    }

    fn failure(&self, error: reqwest::Error) -> Error {
        if error.is_timeout() {
            Error::Timeout { step: self.step.to_string() }
        } else {
            // Without the URL: it is in the step already, and a query could carry a secret.
            Error::Request { step: self.step.to_string(), detail: crate::text::error_chain(&error.without_url()) }
        }
    }
}

/// `application/x-www-form-urlencoded`, done by hand: reqwest's `form` feature is not enabled
/// and `url` already has the encoder.
pub(super) fn encode_form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The useful part of an error answer: OAuth's `error: error_description`, a registry's
/// `errors[].code: message`, or the text itself; secrets and anything shaped like a JWT
/// masked, control characters escaped, one line, truncated.
pub(super) fn error_detail(answer: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(answer);
    let detail = match serde_json::from_str::<Value>(&text) {
        Ok(json) => json_error_detail(&json).unwrap_or_else(|| text.to_string()),
        Err(_) => text.to_string(),
    };
    let mut detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        detail = detail.replace(secret, "***");
    }
    // Anything else that looks like a JWT (base64url of `{"`) is masked too: an error
    // answer has no business carrying one.
    let detail = detail
        .split(' ')
        .map(|word| if word.contains("eyJ") && word.matches('.').count() >= 2 { "***" } else { word })
        .collect::<Vec<_>>()
        .join(" ");
    // The server's text goes to terminals and logs: no control sequence gets through.
    let mut detail = crate::text::sanitize(&detail).into_owned();
    if detail.len() > DETAIL_LIMIT {
        let mut cut = DETAIL_LIMIT;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    detail
}

fn json_error_detail(json: &Value) -> Option<String> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(error) = text(json, "error") {
        return Some(match text(json, "error_description") {
            Some(description) => format!("{error}: {description}"),
            None => error,
        });
    }
    let messages: Vec<String> = json
        .get("errors")?
        .as_array()?
        .iter()
        .filter_map(|e| match (text(e, "code"), text(e, "message")) {
            (Some(code), Some(message)) => Some(format!("{code}: {message}")),
            (code, message) => code.or(message),
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_quote_the_server_but_mask_tokens() {
        let entra = br#"{"error":"invalid_client","error_description":"AADSTS700211: No matching federated identity record found for presented assertion issuer.\r\nTrace ID: 1","error_codes":[700211]}"#;
        assert_eq!(
            error_detail(entra, &[]),
            "invalid_client: AADSTS700211: No matching federated identity record found for presented assertion issuer. Trace ID: 1"
        );
        let google = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(error_detail(google, &[]), "invalid_grant: Invalid JWT Signature.");
        assert_eq!(error_detail(br#"{"error":"invalid_scope"}"#, &[]), "invalid_scope");
        let acr = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        assert_eq!(error_detail(acr, &[]), "UNAUTHORIZED: authentication required");
        let echo = b"bad assertion s3cret-value and eyJhbGciOi.eyJzdWIi.c2ln here";
        assert_eq!(error_detail(echo, &["s3cret-value"]), "bad assertion *** and *** here");
        let long = "x".repeat(1000);
        assert!(error_detail(long.as_bytes(), &[]).chars().count() <= DETAIL_LIMIT + 1);
        assert_eq!(error_detail(b"", &[]), "");
        assert_eq!(error_detail(b"\x1b[2Jgone", &[]), "\\x1b[2Jgone");
    }

    #[test]
    fn forms_encode_reserved_characters() {
        let form = encode_form(&[("assertion", "eyJh.b+c/d=e&f"), ("scope", "a b")]);
        assert_eq!(form, "assertion=eyJh.b%2Bc%2Fd%3De%26f&scope=a+b");
    }
}
