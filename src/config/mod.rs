//! The `ocync.yaml` format: parsing in two stages (raw serde types that reject unknown keys,
//! then validation that reports every problem with its path) and registry lookup by host.

mod artifacts;
mod collect;
pub mod interpolate;
mod raw;
mod resolve;
mod source;
mod tree;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use interpolate::{interpolate, is_platform_credential, looks_secret};
pub use raw::{
    AuthType, OneOrMany, RawArtifacts, RawConfig, RawCredentials, RawDefaults, RawMapping, RawRegistry, RawTags,
    SecretText, TagMutability, problem_from_serde,
};
pub use resolve::Mapping;
pub use source::{ConfigLocation, Loaded, S3Config, S3ConfigCache, Source, s3_client};
pub use verify::{RawIdentity, RawVerify};

use crate::oci::endpoint_host;
use crate::registry::UploadMode;
use crate::registry::kind::RegistryKind;

/// One problem found in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending value (`registries.corp.credentials`), empty for the whole file.
    pub path: String,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, self.path.is_empty()) {
            (Some(line), false) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config {origin}: {reason}")]
    Read {
        /// Where the config was read from.
        origin: String,
        /// What went wrong.
        reason: String,
    },
    /// The config has problems; all of them are listed.
    #[error("invalid config {origin}:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Where the config was read from.
        origin: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// A registry entry after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The name the config gives it (`ecr`, `corp`).
    pub name: String,
    /// Host and optional port, without scheme (`registry.corp`, `127.0.0.1:5000`).
    pub host: String,
    /// `url` started with `http://`.
    pub plain_http: bool,
    /// Explicit authentication type; `None` means auto-detect.
    pub auth_type: Option<AuthType>,
    /// AWS profile for `auth_type: ecr`.
    pub aws_profile: Option<String>,
    /// Username/password for `auth_type: basic`.
    pub credentials: Option<RawCredentials>,
    /// Token for `auth_type: static_token`.
    pub token: Option<SecretText>,
    /// Extra CA bundle trusted for this registry.
    pub ca_file: Option<PathBuf>,
    /// Concurrent transfers allowed against this registry.
    pub max_concurrent: Option<usize>,
    /// Upload strategy.
    pub upload: UploadMode,
    /// ECR: create missing repositories, with these settings.
    pub create_repositories: Option<crate::registry::ecr::CreateRepositories>,
    /// As a target, the repository path every mapping's `to` lands under (`mas-images`).
    pub prefix: Option<String>,
}

impl RegistryConfig {
    /// Where a mapping's `to` lands at this registry: `<prefix>/<to>`, or `to` without a prefix.
    pub fn target_repository(&self, to: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}/{to}"),
            None => to.to_string(),
        }
    }
}

/// The most transfers in flight a config may allow, overall or at one registry: far above what
/// pays on any link, low enough that a typo (`max_concurrent_transfers: 100000000`) is refused
/// rather than trusted.
pub const MAX_TRANSFERS: usize = 1024;

/// Settings that apply to the whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Transfers in flight at once, across all registries.
    pub max_concurrent_transfers: usize,
    /// Timeout for requests without a body.
    pub timeout: Duration,
    /// How long a body transfer may make no progress.
    pub idle_timeout: Duration,
    /// How long one request keeps waiting out a registry's throttling before it fails.
    pub throttle_budget: Duration,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            max_concurrent_transfers: 32,
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            throttle_budget: crate::registry::DEFAULT_THROTTLE_BUDGET,
        }
    }
}

/// A loaded, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Run-wide settings.
    pub global: Global,
    /// Registries by config name.
    pub registries: BTreeMap<String, RegistryConfig>,
    /// Mappings with sources, targets and tag filters resolved.
    pub mappings: Vec<Mapping>,
    /// The document as written (after interpolation).
    pub raw: RawConfig,
}

impl Config {
    /// Reads, interpolates and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Read { origin: origin.clone(), reason: e.to_string() })?;
        Config::parse(&text, &origin, |name| std::env::var(name).ok())
    }

    /// Interpolates, parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let invalid = |problems| Error::Invalid { origin: origin.to_string(), problems };
        let expanded = interpolate(text, lookup).map_err(|errors| {
            invalid(
                errors
                    .into_iter()
                    .map(|e| Problem { path: String::new(), line: Some(e.line), message: e.message })
                    .collect(),
            )
        })?;
        let mut problems = Vec::new();
        let Some((document, raw, unparsed)) = collect::collect(&expanded, &mut problems) else {
            return Err(invalid(problems));
        };
        let global = validate_global(&raw, &mut problems);
        let registries = raw
            .registries
            .iter()
            .filter_map(|(name, entry)| validate_registry(name, entry, &mut problems).map(|r| (name.clone(), r)))
            .collect();
        let mappings = resolve::resolve(&raw, &registries, &unparsed, &mut problems);
        if problems.is_empty() {
            return Ok(Config { global, registries, mappings, raw });
        }
        // Each lookup reads the document again, so a config with thousands of problems gets
        // lines for the first ones only; the paths still say where every one is.
        for problem in problems.iter_mut().filter(|p| p.line.is_none() && !p.path.is_empty()).take(LINES_LOOKED_UP) {
            problem.line = tree::line_of(&expanded, &document, &problem.path);
        }
        Err(invalid(problems))
    }

    /// The registry entry whose host matches `host` (Docker Hub's spellings are one host).
    pub fn registry_for_host(&self, host: &str) -> Option<&RegistryConfig> {
        let wanted = endpoint_host(host);
        self.registries.values().find(|r| endpoint_host(&r.host) == wanted)
    }

    /// The entry for a reference to `host` (`ocync copy`), with its scheme taken into account,
    /// since credentials belong to an origin: an `http://` reference gets only a plain `http://`
    /// entry, never one configured for HTTPS; a reference without a scheme prefers an HTTPS
    /// entry and falls back to a plain one (the config then asks for HTTP).
    pub fn registry_for(&self, host: &str, plain_http: bool) -> Option<&RegistryConfig> {
        let wanted = endpoint_host(host);
        let for_host = || self.registries.values().filter(move |r| endpoint_host(&r.host) == wanted);
        let https = for_host().find(|r| !r.plain_http);
        let http = for_host().find(|r| r.plain_http);
        if plain_http { http } else { https.or(http) }
    }
}

/// Problems without a line from the parser that get one looked up.
const LINES_LOOKED_UP: usize = 100;

fn validate_global(raw: &RawConfig, problems: &mut Vec<Problem>) -> Global {
    let mut global = Global::default();
    let Some(raw_global) = &raw.global else {
        return global;
    };
    if let Some(n) = raw_global.max_concurrent_transfers {
        check_transfer_bound("global.max_concurrent_transfers", n, problems);
        global.max_concurrent_transfers = n;
    }
    for (key, value, slot) in [
        ("global.timeout", &raw_global.timeout, &mut global.timeout),
        ("global.idle_timeout", &raw_global.idle_timeout, &mut global.idle_timeout),
        ("global.throttle_budget", &raw_global.throttle_budget, &mut global.throttle_budget),
    ] {
        if let Some(text) = value {
            match parse_duration(text) {
                Ok(duration) => *slot = duration,
                Err(message) => problems.push(problem(key, &message)),
            }
        }
    }
    global
}

fn validate_registry(name: &str, entry: &RawRegistry, problems: &mut Vec<Problem>) -> Option<RegistryConfig> {
    let path = |key: &str| format!("registries.{name}.{key}");
    let before = problems.len();
    let (plain_http, rest) = match entry.url.split_once("://") {
        Some(("http", rest)) => (true, rest),
        Some(("https", rest)) => (false, rest),
        Some((scheme, _)) => {
            problems
                .push(problem(&path("url"), &format!("scheme {scheme}:// is not supported (use http:// or https://)")));
            (false, "")
        }
        None => (false, entry.url.as_str()),
    };
    let host = rest.trim_end_matches('/');
    if host.contains('@') {
        // `https://user:password@host`: the URL is printed in messages and logs, so it must not
        // carry a password; and the value is not echoed here for the same reason.
        problems.push(problem(&path("url"), "must not hold user info (user:password@); use credentials: or token:"));
    } else if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        problems.push(problem(&path("url"), &format!("{:?} is not a registry host[:port]", entry.url)));
    }
    match entry.auth_type {
        Some(AuthType::Basic) if entry.credentials.is_none() => {
            problems.push(problem(&path("credentials"), "auth_type basic needs credentials: { username, password }"));
        }
        Some(AuthType::StaticToken) if entry.token.is_none() => {
            problems.push(problem(&path("token"), "auth_type static_token needs a token"));
        }
        _ => {}
    }
    if entry.credentials.is_some() && !matches!(entry.auth_type, None | Some(AuthType::Basic)) {
        problems.push(problem(&path("credentials"), "credentials are only used with auth_type basic"));
    }
    if entry.aws_profile.is_some() && entry.auth_type != Some(AuthType::Ecr) {
        problems.push(problem(&path("aws_profile"), "aws_profile requires auth_type: ecr"));
    }
    let is_ecr = entry.auth_type == Some(AuthType::Ecr)
        || (entry.auth_type.is_none() && matches!(RegistryKind::detect(host), RegistryKind::Ecr(_)));
    let creates = entry.create_repositories == Some(true);
    for (key, set) in [
        ("create_repositories", entry.create_repositories.is_some()),
        ("image_tag_mutability", entry.image_tag_mutability.is_some()),
        ("scan_on_push", entry.scan_on_push.is_some()),
    ] {
        if set && !is_ecr {
            problems.push(problem(&path(key), &format!("{key} applies to ECR registries only")));
        }
    }
    if !creates && (entry.image_tag_mutability.is_some() || entry.scan_on_push.is_some()) && is_ecr {
        problems.push(problem(
            &path("create_repositories"),
            "image_tag_mutability and scan_on_push need create_repositories: true",
        ));
    }
    if entry.upload == Some(UploadMode::Chunked) && !RegistryKind::detect(host).accepts_chunked_uploads() {
        problems.push(problem(
            &path("upload"),
            "chunked uploads are not supported by GAR or GCR; remove `upload: chunked`",
        ));
    }
    if let Some(n) = entry.max_concurrent {
        check_transfer_bound(&path("max_concurrent"), n, problems);
    }
    if let Some(prefix) = &entry.prefix
        && let Err(reason) = crate::oci::validate_repository(prefix)
    {
        problems.push(problem(&path("prefix"), &format!("{prefix:?} is not a repository path: it {reason}")));
    }
    (problems.len() == before).then(|| RegistryConfig {
        name: name.to_string(),
        host: host.to_string(),
        plain_http,
        auth_type: entry.auth_type,
        aws_profile: entry.aws_profile.clone(),
        credentials: entry.credentials.clone(),
        token: entry.token.clone(),
        ca_file: entry.ca_file.clone(),
        max_concurrent: entry.max_concurrent,
        upload: entry.upload.unwrap_or_default(),
        create_repositories: creates.then(|| crate::registry::ecr::CreateRepositories {
            immutable_tags: entry.image_tag_mutability == Some(TagMutability::Immutable),
            scan_on_push: entry.scan_on_push.unwrap_or(false),
        }),
        prefix: entry.prefix.clone(),
    })
}

/// A bound on transfers in flight (`global.max_concurrent_transfers`, a registry's
/// `max_concurrent`) outside 1..=[`MAX_TRANSFERS`], as a problem at `path`.
fn check_transfer_bound(path: &str, n: usize, problems: &mut Vec<Problem>) {
    if !(1..=MAX_TRANSFERS).contains(&n) {
        problems.push(problem(path, &format!("must be between 1 and {MAX_TRANSFERS}")));
    }
}

fn problem(path: &str, message: &str) -> Problem {
    Problem { path: path.to_string(), line: None, message: message.to_string() }
}

/// `30s`, `2m`, `500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 30s, 2m or 500ms"))?;
    match unit.trim() {
        "" | "s" => Ok(Duration::from_secs(value)),
        "ms" => Ok(Duration::from_millis(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "h" => Ok(Duration::from_secs(value * 3600)),
        _ => Err(format!("{text:?} has an unknown unit (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, "test.yaml", |name| (name == "CORP_TOKEN").then(|| "hunter2".to_string()))
    }

    #[test]
    fn parses_registries_with_schemes_and_credentials() {
        let config = parse(
            "registries:\n  local: { url: \"http://127.0.0.1:5000\" }\n  corp: { url: registry.corp, auth_type: basic, credentials: { username: bot, password: \"${CORP_TOKEN}\" } }\n",
        )
        .unwrap();
        let local = config.registry_for_host("127.0.0.1:5000").unwrap();
        assert!(local.plain_http);
        let corp = &config.registries["corp"];
        assert_eq!(corp.credentials.as_ref().unwrap().password, "hunter2");
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_being_repeated() {
        let error = parse("registries:\n  corp: { url: \"https://bot:${CORP_TOKEN}@registry.corp/v2\" }\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registries.corp.url (line 2): must not hold user info"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn an_http_reference_never_finds_an_entry_configured_for_https() {
        let both = parse(
            "registries:\n  a-secure: { url: \"127.0.0.1:5000\", credentials: { username: u, password: p } }\n  z-plain: { url: \"http://127.0.0.1:5000\" }\n",
        )
        .unwrap();
        assert_eq!(both.registry_for("127.0.0.1:5000", true).unwrap().name, "z-plain");
        assert_eq!(both.registry_for("127.0.0.1:5000", false).unwrap().name, "a-secure");
        let https_only =
            parse("registries:\n  secure: { url: \"127.0.0.1:5000\", credentials: { username: u, password: p } }\n")
                .unwrap();
        assert!(https_only.registry_for("127.0.0.1:5000", true).is_none(), "no credentials over http");
        let http_only = parse("registries:\n  plain: { url: \"http://127.0.0.1:5000\" }\n").unwrap();
        assert_eq!(http_only.registry_for("127.0.0.1:5000", false).unwrap().name, "plain", "the config asks for HTTP");
    }

    #[test]
    fn docker_hub_spellings_find_the_same_entry() {
        let config = parse("registries:\n  hub: { url: docker.io }\n").unwrap();
        assert_eq!(config.registry_for_host("registry-1.docker.io").unwrap().name, "hub");
    }

    #[test]
    fn reports_every_registry_problem_with_its_path() {
        let error = parse(
            "global: { timeout: 5 parsecs }\nregistries:\n  a: { url: \"ftp://x\" }\n  b: { url: b.io, auth_type: basic }\n  c: { url: c.io, aws_profile: vendor }\n",
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "global.timeout (line 1): \"5 parsecs\" has an unknown unit",
            "registries.a.url (line 3): scheme ftp:// is not supported",
            "registries.b.credentials (line 4): auth_type basic needs credentials",
            "registries.c.aws_profile (line 5): aws_profile requires auth_type: ecr",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in:\n{error}");
        }
    }

    #[test]
    fn the_throttle_budget_is_a_duration_with_a_default_of_five_minutes() {
        assert_eq!(parse("registries: {}\n").unwrap().global.throttle_budget, Duration::from_secs(300));
        let config = parse("global: { throttle_budget: 90s }\nregistries: {}\n").unwrap();
        assert_eq!(config.global.throttle_budget, Duration::from_secs(90));
        let error = parse("global: { throttle_budget: forever }\nregistries: {}\n").unwrap_err().to_string();
        assert!(error.contains("global.throttle_budget (line 1): \"forever\" is not a duration"), "{error}");
    }

    #[test]
    fn transfer_bounds_past_the_most_that_could_pay_are_refused() {
        let error = parse(
            "global: { max_concurrent_transfers: 100000000 }\nregistries:\n  a: { url: a.io, max_concurrent: 0 }\n",
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "global.max_concurrent_transfers (line 1): must be between 1 and 1024",
            "registries.a.max_concurrent (line 3): must be between 1 and 1024",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in:\n{error}");
        }
        let config = parse("global: { max_concurrent_transfers: 1024 }\nregistries: {}\n").unwrap();
        assert_eq!(config.global.max_concurrent_transfers, MAX_TRANSFERS);
    }

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion() {
        let error = parse("registries:\n  a: { url: a.io, auth_typ: basic }\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `auth_typ`"), "{error}");
        assert!(error.contains("did you mean `auth_type`?"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn debug_output_of_a_config_shows_no_token_or_password() {
        let config = parse(
            "registries:\n  a: { url: a.io, auth_type: static_token, token: tok-3x4mpl3 }\n  b: { url: b.io, credentials: { username: u, password: pw-3x4mpl3 } }\nmappings:\n  - { from: x, source: a, targets: b }\n",
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("3x4mpl3"), "{shown}");
        assert!(shown.contains("token: Some(\"***\")"), "{shown}");
        assert_eq!(
            config.registries["a"].token.as_ref().map(|t| t.0.as_str()),
            Some("tok-3x4mpl3"),
            "the value itself is kept"
        );
    }

    #[test]
    fn chunked_uploads_are_refused_for_gar_and_gcr_only() {
        let error = parse(
            "registries:\n  gar: { url: us-docker.pkg.dev, upload: chunked }\n  gcr: { url: eu.gcr.io, upload: chunked }\n  corp: { url: registry.corp, upload: chunked }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("registries.gar.upload (line 2): chunked uploads are not supported by GAR"), "{error}");
        assert!(error.contains("registries.gcr.upload (line 3): chunked uploads are not supported"), "{error}");
        assert!(!error.contains("registries.corp"), "{error}");
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    }
}
