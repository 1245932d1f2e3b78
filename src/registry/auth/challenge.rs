//! Parsing `WWW-Authenticate` challenges (RFC 7235 auth-params with quoted strings).

use std::collections::HashMap;

/// What a registry asked for on a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send credentials as HTTP Basic.
    Basic,
    /// Fetch a token from `realm` for `service`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// Service name to pass along, if given.
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a header value; `None` for schemes ocync cannot answer.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => {
                let mut params = parse_params(params);
                let realm = params.remove("realm")?;
                Some(Challenge::Bearer { realm, service: params.remove("service") })
            }
            _ => None,
        }
    }
}

/// `key=value, key="quoted, value"` → map with lowercase keys.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge_with_commas_in_scope() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
    }

    #[test]
    fn parses_basic_and_unquoted_params() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse("bearer realm=http://127.0.0.1:1/token"),
            Some(Challenge::Bearer { realm: "http://127.0.0.1:1/token".into(), service: None })
        );
    }

    #[test]
    fn unknown_scheme_or_missing_realm_is_none() {
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }
}
