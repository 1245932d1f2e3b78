//! The config document exactly as written: serde types that reject unknown keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Problem;
use super::verify::RawVerify;
use crate::registry::UploadMode;

/// The whole `ocync.yaml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Run-wide settings.
    pub global: Option<RawGlobal>,
    /// Registries by name.
    #[serde(default)]
    pub registries: BTreeMap<String, RawRegistry>,
    /// Named lists of target registries.
    #[serde(default)]
    pub target_groups: BTreeMap<String, Vec<String>>,
    /// Values every mapping inherits.
    pub defaults: Option<RawDefaults>,
    /// What to mirror.
    #[serde(default)]
    pub mappings: Vec<RawMapping>,
}

/// `global:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// Transfers in flight at once (a ceiling: fewer while more would not raise throughput).
    #[schemars(range(min = 1, max = super::MAX_TRANSFERS))]
    pub max_concurrent_transfers: Option<usize>,
    /// Per-request timeout (`30s`).
    pub timeout: Option<String>,
    /// Idle timeout on body transfers (`60s`).
    pub idle_timeout: Option<String>,
    /// How long a request waits out throttling before it fails (`5m`).
    pub throttle_budget: Option<String>,
}

/// How ocync authenticates to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// AWS ECR through the AWS SDK.
    Ecr,
    /// Google Artifact Registry with Application Default Credentials.
    Gar,
    /// Google Container Registry with Application Default Credentials.
    Gcr,
    /// Username and password from the config.
    Basic,
    /// A fixed Bearer token from the config.
    StaticToken,
    /// docker's `config.json` and credential helpers.
    DockerConfig,
    /// No credentials.
    Anonymous,
}

/// `registries.<name>:`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// `host[:port]`, with an optional `http://` or `https://`.
    pub url: String,
    /// Explicit auth type; absent means auto-detect from the host.
    pub auth_type: Option<AuthType>,
    /// AWS profile (only with `auth_type: ecr`).
    pub aws_profile: Option<String>,
    /// Basic credentials.
    pub credentials: Option<RawCredentials>,
    /// Static Bearer token.
    pub token: Option<SecretText>,
    /// Extra CA bundle (PEM).
    pub ca_file: Option<PathBuf>,
    /// Concurrent transfers against this registry.
    #[schemars(range(min = 1, max = super::MAX_TRANSFERS))]
    pub max_concurrent: Option<usize>,
    /// `monolithic` (default) or `chunked`.
    pub upload: Option<UploadMode>,
    /// ECR only: create missing target repositories.
    pub create_repositories: Option<bool>,
    /// ECR only, with `create_repositories`: `mutable` (default) or `immutable` tags.
    pub image_tag_mutability: Option<TagMutability>,
    /// ECR only, with `create_repositories`: scan images on push.
    pub scan_on_push: Option<bool>,
    /// As a target: every mapping's `to` lands under `<prefix>/<to>` at this registry.
    pub prefix: Option<String>,
}

/// Tag mutability of repositories ocync creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagMutability {
    /// Tags may be moved.
    Mutable,
    /// Tags, once pushed, stay.
    Immutable,
}

/// `credentials: { username, password }`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// A secret written in the config (a static token): read and written as the plain string, never
/// shown by `Debug`, so a config or registry entry in a debug log or panic message leaks nothing.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(inline)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::fmt::Debug for RawCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawCredentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

/// `tags:` in `defaults` or a mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTags {
    /// Glob patterns, OR-ed.
    pub glob: Option<OneOrMany>,
    /// A semver range.
    pub semver: Option<String>,
    /// Glob patterns to drop.
    pub exclude: Option<OneOrMany>,
    /// `semver` or `alpha`.
    #[schemars(extend("enum" = ["semver", "alpha"]))]
    pub sort: Option<String>,
    /// Keep the newest N after sorting.
    pub latest: Option<usize>,
    /// Fail the mapping if fewer tags match.
    pub min_tags: Option<usize>,
    /// Let prerelease tags count among the newest and match ranges.
    pub include_prereleases: Option<bool>,
}

/// `artifacts:` in `defaults` or a mapping: which referrers (signatures, SBOMs,
/// attestations) follow their images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArtifacts {
    /// Copy referrers at all (default true).
    pub enabled: Option<bool>,
    /// Artifact-type globs to copy (default: all).
    pub include: Option<OneOrMany>,
    /// Artifact-type globs to leave out.
    pub exclude: Option<OneOrMany>,
    /// Fail an image with no matching referrer upstream (default false).
    pub require: Option<bool>,
}

/// `defaults:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Source registry name.
    pub source: Option<String>,
    /// Target group, registry name, or list.
    pub targets: Option<OneOrMany>,
    /// Tag selection.
    pub tags: Option<RawTags>,
    /// Referrers that follow their images.
    pub artifacts: Option<RawArtifacts>,
    /// Platforms to keep of multi-platform indexes (`linux/amd64`).
    pub platforms: Option<Vec<String>>,
    /// Signatures checked before anything is copied.
    pub verify: Option<RawVerify>,
}

/// One entry of `mappings:`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// Source repository.
    pub from: String,
    /// Target repository; defaults to `from`.
    pub to: Option<String>,
    /// Source registry name.
    pub source: Option<String>,
    /// Targets (group, registry, or list).
    pub targets: Option<OneOrMany>,
    /// Tag selection, overriding `defaults.tags` field by field.
    pub tags: Option<RawTags>,
    /// Referrers, overriding `defaults.artifacts` field by field.
    pub artifacts: Option<RawArtifacts>,
    /// Platforms, replacing `defaults.platforms`.
    pub platforms: Option<Vec<String>>,
    /// Signature policy, overriding `defaults.verify` key by key.
    pub verify: Option<RawVerify>,
}

/// Turns a serde error into a [`Problem`] with path, line and a "did you mean" for unknown keys
/// and variants. The message names the expected type and what was found, never the value: a
/// mistyped `credentials: "s3cr3t"` must not put the password in a log line.
pub fn problem_from_serde(error: &serde_norway::Error) -> Problem {
    let text = error.to_string();
    // serde_norway formats as "path: message at line L column C"; the last " at line " is the
    // location, whatever a quoted value contains.
    let without_location = match error.location() {
        Some(_) => text.rfind(" at line ").map_or(text.as_str(), |at| &text[..at]),
        None => &text,
    };
    let (path, message) = match without_location.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path.to_string(), message),
        _ => (String::new(), without_location),
    };
    let hint = suggestion(message);
    let mut message = without_values(message);
    if let Some(hint) = hint {
        message = format!("{message}; did you mean `{hint}`?");
    }
    Problem { path, line: error.location().map(|l| l.line()), message }
}

/// What serde calls the kinds of value it found (its `Unexpected`), longest first where one
/// starts another.
const VALUE_KINDS: &[&str] = &[
    "string",
    "integer",
    "floating point",
    "boolean",
    "character",
    "sequence",
    "map",
    "unit value",
    "unit variant",
    "newtype struct",
    "newtype variant",
    "tuple variant",
    "struct variant",
    "byte array",
    "Option value",
    "enum",
];

/// A serde message with any value it quotes taken out: "invalid type: string \"…\", expected
/// a sequence" becomes "invalid type: string, expected a sequence", and "unknown variant `…`"
/// loses the name that was written. Field names (keys) stay: they are the config's own words.
fn without_values(message: &str) -> String {
    // The expected part comes last and names types or keys, so the last ", expected " ends
    // whatever the value contained.
    let (found, expected) = match message.rfind(", expected ") {
        Some(at) => (&message[..at], &message[at..]),
        None => (message, ""),
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(unexpected) = found.strip_prefix(prefix) {
            let kind = VALUE_KINDS.iter().find(|kind| unexpected.starts_with(*kind)).copied().unwrap_or("value");
            return format!("{prefix}{kind}{expected}");
        }
    }
    if found.starts_with("unknown variant ") {
        return format!("unknown variant{expected}");
    }
    message.to_string()
}

/// For "unknown field `x`, expected one of `a`, `b`" (or an unknown variant): the closest
/// expected name.
fn suggestion(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (unknown, expected) = rest.split_once('`')?;
    closest(unknown, expected.split('`').skip(1).step_by(2)).map(str::to_string)
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a typo.
pub(super) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= candidate.len().max(word.len()) / 2)
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_expected_field() {
        assert_eq!(suggestion("unknown field `form`, expected one of `from`, `to`, `source`").as_deref(), Some("from"));
        assert_eq!(suggestion("unknown field `zzzzzz`, expected one of `from`, `to`"), None);
        assert_eq!(suggestion("invalid type"), None);
    }

    fn problem(yaml: &str) -> Problem {
        let error = serde_norway::from_str::<RawConfig>(yaml).expect_err("the document is mistyped");
        problem_from_serde(&error)
    }

    #[test]
    fn mistyped_secrets_are_named_by_path_and_type_never_by_value() {
        for (yaml, path, expected) in [
            (
                "registries:\n  corp: { url: c.io, credentials: \"s3cr3t, expected at line 9\" }\n",
                "registries.corp.credentials",
                "invalid type: string, expected struct RawCredentials",
            ),
            (
                "registries:\n  corp: { url: c.io, credentials: { username: u, password: { s3cr3t: 987654321 } } }\n",
                "registries.corp.credentials.password",
                "invalid type: map, expected a string",
            ),
            (
                "registries:\n  corp: { url: c.io, credentials: { username: u, password: [s3cr3t, 2] } }\n",
                "registries.corp.credentials.password",
                "invalid type: sequence, expected a string",
            ),
            (
                "registries:\n  corp: { url: c.io, token: { s3cr3t: 1 } }\n",
                "registries.corp.token",
                "invalid type: map",
            ),
            ("registries:\n  corp: { url: c.io, auth_type: s3cr3t }\n", "registries.corp.auth_type", "unknown variant"),
        ] {
            let found = problem(yaml);
            assert_eq!(found.path, path, "{found:?}");
            assert!(found.message.starts_with(expected), "{found:?}");
            assert!(!found.to_string().contains("s3cr3t") && !found.to_string().contains("987654321"), "{found}");
            assert_eq!(found.line, Some(2), "{found:?}");
        }
    }

    #[test]
    fn a_mistyped_variant_still_gets_a_suggestion() {
        let found = problem("registries:\n  corp: { url: c.io, auth_type: basci }\n");
        assert!(found.message.starts_with("unknown variant, expected one of `ecr`"), "{found:?}");
        assert!(found.message.ends_with("did you mean `basic`?") && !found.message.contains("basci"), "{found:?}");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("auth_typ", "auth_type"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
