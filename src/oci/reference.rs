//! Image references: `[http://]host[:port]/path[:tag][@digest]`, with Docker Hub shorthand.

use std::fmt;
use std::str::FromStr;

use super::Digest;

/// The registry name Docker Hub references use.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// A parsed image reference.
///
/// `nginx` becomes `docker.io/library/nginx:latest`; a reference with neither tag nor digest
/// gets the tag `latest`. A leading `http://` asks for plain HTTP (local and test registries).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, as written (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/nginx`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if pinned.
    pub digest: Option<Digest>,
    /// Whether the reference asked for plain HTTP with an `http://` prefix.
    pub plain_http: bool,
}

/// Why a string is not a valid reference; the message quotes the input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Reference {
    /// The tag, or else the digest, as used in a `/manifests/<reference>` URL.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host that serves the registry API (`docker.io` is served by `registry-1.docker.io`).
    pub fn endpoint_host(&self) -> &str {
        endpoint_host(&self.registry)
    }

    /// The same repository with another tag or digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }
}

/// Docker Hub's legacy index name, which docker's `config.json` still keys Hub credentials by.
const DOCKER_HUB_INDEX: &str = "index.docker.io";

/// Whether `host` (lowercase, without a port) is one of Docker Hub's names: the name
/// references use, its legacy index name, or the host serving its API.
pub fn is_docker_hub(host: &str) -> bool {
    matches!(host, DOCKER_HUB | DOCKER_HUB_INDEX | DOCKER_HUB_ENDPOINT)
}

/// Maps a registry name to the host serving its API.
pub fn endpoint_host(registry: &str) -> &str {
    if is_docker_hub(registry) { DOCKER_HUB_ENDPOINT } else { registry }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut reference = Reference::parse_bare(input)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some("latest".to_string());
        }
        Ok(reference)
    }
}

impl Reference {
    /// Parses like [`FromStr`] but leaves `tag` empty when the input names neither tag nor
    /// digest (a copy destination then takes the source's tag).
    pub fn parse_bare(input: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: String| ReferenceError { input: input.to_string(), reason };
        if input.trim() != input || input.is_empty() {
            return Err(fail("must be non-empty and without surrounding whitespace".into()));
        }
        let (plain_http, rest) = if let Some(rest) = input.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = input.strip_prefix("https://") {
            (false, rest)
        } else if input.contains("://") {
            return Err(fail("only http:// and https:// prefixes are allowed".into()));
        } else {
            (false, input)
        };

        let (name_and_tag, digest) = match rest.split_once('@') {
            Some((name, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|e| fail(format!("digest {}", e.reason)))?;
                (name, Some(digest))
            }
            None => (rest, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let split = last_slash + colon;
                (&name_and_tag[..split], Some(name_and_tag[split + 1..].to_string()))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            validate_tag(tag).map_err(|reason| fail(format!("tag {tag:?} {reason}")))?;
        }

        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
            _ if plain_http => {
                return Err(fail("an http:// reference must name its registry host".into()));
            }
            _ if name.contains('/') => (DOCKER_HUB.to_string(), name.to_string()),
            _ => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        validate_host(&registry).map_err(|reason| fail(format!("registry {registry:?} {reason}")))?;
        validate_repository(&repository).map_err(|reason| fail(format!("repository {repository:?} {reason}")))?;

        Ok(Reference { registry, repository, tag, digest, plain_http })
    }
}

/// Docker's rule: the first path component is a host if it has a dot or a port, or is `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost" || component.starts_with('[')
}

fn validate_host(host: &str) -> Result<(), &'static str> {
    let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or("has an unclosed '['")?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("is not a valid IPv6 address");
        }
        match after {
            "" => return Ok(()),
            _ => ("", after.strip_prefix(':').ok_or("is not a valid host[:port]")?),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, port),
            None => (host, "1"),
        }
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("has an invalid port");
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() && host.starts_with('[') || name.split('.').all(valid_label) {
        Ok(())
    } else {
        Err("is not a valid host name")
    }
}

/// Checks a repository path. Components: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
pub fn validate_repository(repository: &str) -> Result<(), &'static str> {
    if repository.is_empty() {
        return Err("is empty");
    }
    if repository.len() > 255 {
        return Err("is longer than 255 characters");
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() {
            return Err("has an empty path component");
        }
        if bytes.iter().any(u8::is_ascii_uppercase) {
            return Err("must be lowercase");
        }
        if !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
            return Err("components must start and end with a lowercase letter or digit");
        }
        if !bytes.iter().all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-')) {
            return Err("may contain only lowercase letters, digits, '.', '_', '-' and '/'");
        }
        if component.contains("..") || component.contains("___") || component.contains("._") || component.contains("_.")
        {
            return Err("has a malformed separator");
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Tags from registries (tag lists,
/// referrer and cosign tags) pass through this before use, so none can become a path.
pub fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let bytes = tag.as_bytes();
    if bytes.is_empty() {
        return Err("is empty");
    }
    if bytes.len() > 128 {
        return Err("is longer than 128 characters");
    }
    if !(bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_') {
        return Err("must start with a letter, digit or '_'");
    }
    if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("may contain only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plain_http {
            f.write_str("http://")?;
        }
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_known_by_its_three_names_and_no_look_alike() {
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert!(is_docker_hub(hub), "{hub}");
            assert_eq!(endpoint_host(hub), DOCKER_HUB_ENDPOINT, "{hub}");
        }
        for other in ["docker.io.example", "mirror.docker.io", "ghcr.io", "docker.io:5000", ""] {
            assert!(!is_docker_hub(other), "{other}");
            assert_eq!(endpoint_host(other), other);
        }
    }

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(input: &str) -> Reference {
        input.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn expands_docker_hub_shorthand() {
        let reference = parse("nginx");
        assert_eq!(reference.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(reference.endpoint_host(), "registry-1.docker.io");
        assert_eq!(parse("bitnami/redis:7").to_string(), "docker.io/bitnami/redis:7");
    }

    #[test]
    fn parses_host_port_tag_and_digest() {
        let reference = parse(&format!("http://127.0.0.1:5000/team/app:v1.2@{DIGEST}"));
        assert!(reference.plain_http);
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "team/app");
        assert_eq!(reference.tag.as_deref(), Some("v1.2"));
        assert_eq!(reference.manifest_reference(), DIGEST);
    }

    #[test]
    fn digest_only_reference_has_no_tag() {
        let reference = parse(&format!("ghcr.io/org/app@{DIGEST}"));
        assert_eq!(reference.tag, None);
        assert_eq!(reference.digest.unwrap().as_str(), DIGEST);
    }

    #[test]
    fn localhost_and_ipv6_are_hosts() {
        assert_eq!(parse("localhost/app").registry, "localhost");
        assert_eq!(parse("[::1]:5000/app:1").registry, "[::1]:5000");
        assert_eq!(parse("localhost:5000/a/b/c:tag").repository, "a/b/c");
    }

    #[test]
    fn rejects_bad_references_quoting_the_input() {
        for (input, why) in [
            ("", "non-empty"),
            ("Nginx", "must be lowercase"),
            ("ghcr.io/org/app:", "tag \"\" is empty"),
            ("ghcr.io/org/app:-bad", "must start with"),
            ("ghcr.io/org/app@sha256:123", "wrong length"),
            ("ftp://host/app", "only http:// and https://"),
            ("http://app", "must name its registry host"),
            ("host:99999/app", "invalid port"),
            ("ghcr.io//app", "empty path component"),
            ("ghcr.io/a..b", "malformed separator"),
        ] {
            let error = input.parse::<Reference>().unwrap_err();
            let message = error.to_string();
            assert!(message.contains(&format!("{input:?}")), "{message}");
            assert!(message.contains(why), "{input}: {message}");
        }
    }
}
