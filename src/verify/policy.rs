//! A mapping's `verify` policy, resolved: what to do with an unverified image, and whom to
//! trust (public keys, keyless identities).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::keyless::TrustedRoot;
use super::keys::PublicKey;

/// What happens to an image without a verifying signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// It is refused: nothing of it reaches any target.
    #[default]
    Enforce,
    /// It is copied, with a warning in the report.
    Warn,
    /// Nothing is checked (a mapping opting out of `defaults.verify`).
    Off,
}

/// Which certificate subjects a keyless identity accepts.
#[derive(Debug, Clone)]
pub enum Subject {
    /// Exactly this subject (a workflow URI, an email address).
    Exact(String),
    /// Any subject this expression matches.
    Pattern(regex::Regex),
}

impl Subject {
    /// Whether `subject` is accepted.
    pub fn matches(&self, subject: &str) -> bool {
        match self {
            Subject::Exact(exact) => exact == subject,
            Subject::Pattern(pattern) => pattern.is_match(subject),
        }
    }
}

impl PartialEq for Subject {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Subject::Exact(a), Subject::Exact(b)) => a == b,
            (Subject::Pattern(a), Subject::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for Subject {}

/// A Sigstore keyless identity: an OIDC issuer and the subjects it may vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The OIDC issuer the Fulcio certificate names.
    pub issuer: String,
    /// The subjects accepted.
    pub subject: Subject,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Exact(subject) => write!(f, "{} {}", self.issuer, subject),
            Subject::Pattern(pattern) => write!(f, "{} /{}/", self.issuer, pattern.as_str()),
        }
    }
}

/// A resolved `verify` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What happens to an image without a verifying signature.
    pub mode: Mode,
    /// Trusted public keys.
    pub keys: Vec<PublicKey>,
    /// Trusted keyless identities; any one suffices.
    pub identities: Vec<Identity>,
    /// The Sigstore trusted root keyless signatures are checked against.
    pub trusted_root: Option<Arc<TrustedRoot>>,
}

impl Policy {
    /// Whom the policy trusts (keys, identities, root), as one string: policies that trust
    /// the same signers reach the same verdicts.
    pub fn trusted(&self) -> String {
        let keys: Vec<&str> = self.keys.iter().map(PublicKey::fingerprint).collect();
        let identities: Vec<String> = self.identities.iter().map(ToString::to_string).collect();
        let root = self.trusted_root.as_ref().map(|root| root.digest().to_string()).unwrap_or_default();
        format!("{keys:?} {identities:?} {root}")
    }
}

impl Serialize for Policy {
    /// The policy as `plan --json` shows it: mode, key fingerprints, identities.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            mode: Mode,
            keys: Vec<&'a str>,
            keyless: Vec<String>,
        }
        Shown {
            mode: self.mode,
            keys: self.keys.iter().map(PublicKey::fingerprint).collect(),
            keyless: self.identities.iter().map(ToString::to_string).collect(),
        }
        .serialize(serializer)
    }
}
