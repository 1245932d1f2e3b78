//! `verify:` in `defaults` and mappings: a mapping's keys replace the same keys of
//! `defaults.verify` (as `tags` does). Key files are read and parsed here, regular expressions
//! compiled, so a policy that cannot work is a config error with its path, not a failed run.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Problem;
use crate::verify::{Identity, Mode, Policy, PublicKey, Subject, TrustedRoot};

/// `verify:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// `enforce` (default) | `warn` | `off`.
    pub mode: Option<Mode>,
    /// PEM public key files.
    pub keys: Option<Vec<PathBuf>>,
    /// Keyless identities.
    pub keyless: Option<Vec<RawIdentity>>,
    /// Sigstore `trusted_root.json`.
    pub trusted_root: Option<PathBuf>,
}

/// One entry of `verify.keyless`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// OIDC issuer URL.
    pub issuer: String,
    /// Exact subject.
    pub subject: Option<String>,
    /// Subject regular expression.
    pub subject_regexp: Option<String>,
}

/// The parts of a policy one `verify:` section sets, each checked.
#[derive(Debug, Clone, Default)]
pub(super) struct Parts {
    present: bool,
    mode: Option<Mode>,
    keys: Option<Vec<PublicKey>>,
    identities: Option<Vec<Identity>>,
    trusted_root: Option<Arc<TrustedRoot>>,
}

/// Checks one `verify:` section at `at` (`defaults.verify`, `mappings[2].verify`).
pub(super) fn check(at: &str, raw: Option<&RawVerify>, problems: &mut Vec<Problem>) -> Parts {
    let Some(raw) = raw else {
        return Parts::default();
    };
    let problem = |problems: &mut Vec<Problem>, path: String, message: String| {
        problems.push(Problem { path, line: None, message });
    };
    let keys = raw.keys.as_ref().map(|paths| {
        let mut keys = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            match PublicKey::load(path) {
                Ok(key) => keys.push(key),
                Err(message) => problem(problems, format!("{at}.keys[{i}]"), message),
            }
        }
        keys
    });
    let identities = raw.keyless.as_ref().map(|entries| {
        let mut identities = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("{at}.keyless[{i}]");
            let subject = match (&entry.subject, &entry.subject_regexp) {
                (Some(subject), None) => Subject::Exact(subject.clone()),
                (None, Some(pattern)) => match regex::Regex::new(pattern) {
                    Ok(pattern) => Subject::Pattern(pattern),
                    Err(error) => {
                        let reason = error.to_string().lines().last().unwrap_or_default().to_string();
                        problem(problems, format!("{path}.subject_regexp"), format!("invalid regexp: {reason}"));
                        continue;
                    }
                },
                _ => {
                    problem(problems, path, "needs exactly one of subject and subject_regexp".into());
                    continue;
                }
            };
            if entry.issuer.is_empty() {
                problem(problems, format!("{path}.issuer"), "must not be empty".into());
                continue;
            }
            identities.push(Identity { issuer: entry.issuer.clone(), subject });
        }
        identities
    });
    let trusted_root = raw.trusted_root.as_ref().and_then(|path| match TrustedRoot::load(path) {
        Ok(root) => Some(Arc::new(root)),
        Err(message) => {
            problem(problems, format!("{at}.trusted_root"), message);
            None
        }
    });
    Parts { present: true, mode: raw.mode, keys, identities, trusted_root }
}

/// A mapping's policy: its own parts over the defaults', key by key. `None`: nothing to check.
/// A policy that trusts nobody is reported at `at` (the mapping's `verify` if it has one).
pub(super) fn merge(defaults: &Parts, own: Parts, at: &str, problems: &mut Vec<Problem>) -> Option<Policy> {
    if !defaults.present && !own.present {
        return None;
    }
    let mode = own.mode.or(defaults.mode).unwrap_or_default();
    if mode == Mode::Off {
        return None;
    }
    let policy = Policy {
        mode,
        keys: own.keys.or_else(|| defaults.keys.clone()).unwrap_or_default(),
        identities: own.identities.or_else(|| defaults.identities.clone()).unwrap_or_default(),
        trusted_root: own.trusted_root.or_else(|| defaults.trusted_root.clone()),
    };
    let reported = problems.iter().any(|p| p.path.starts_with(at));
    let policy = match policy.trusted_root {
        // Keyless without a root of its own trusts the public-good Sigstore instance.
        None if !policy.identities.is_empty() => match TrustedRoot::public_good() {
            Ok(root) => Policy { trusted_root: Some(Arc::new(root)), ..policy },
            Err(message) => {
                problems.push(Problem { path: format!("{at}.trusted_root"), line: None, message });
                policy
            }
        },
        _ => policy,
    };
    if policy.keys.is_empty() && policy.identities.is_empty() && !reported {
        problems.push(Problem {
            path: at.to_string(),
            line: None,
            message: "trusts nobody: list keys or keyless identities (or set mode: off)".into(),
        });
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Error};
    use crate::testing::keys::{KeyPair, SigningKind};
    use crate::verify::{Mode, Subject};

    const HEAD: &str = "registries:\n  src: { url: cgr.dev }\n  dst: { url: registry.corp }\n";

    fn parse(rest: &str) -> Result<Config, Error> {
        Config::parse(&format!("{HEAD}{rest}"), "test.yaml", |_| None)
    }

    fn problems(rest: &str) -> Vec<String> {
        let Err(Error::Invalid { problems, .. }) = parse(rest) else { panic!("expected problems") };
        problems.iter().map(ToString::to_string).collect()
    }

    fn key_file(dir: &tempfile::TempDir, name: &str, pair: &KeyPair) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, pair.public_pem()).unwrap();
        path.display().to_string()
    }

    #[test]
    fn a_mapping_overrides_the_defaults_policy_key_by_key_and_can_opt_out() {
        let dir = tempfile::tempdir().unwrap();
        let (vendor, own) = (KeyPair::generate(SigningKind::P256), KeyPair::generate(SigningKind::Ed25519));
        let (vendor_path, own_path) = (key_file(&dir, "vendor.pub", &vendor), key_file(&dir, "own.pub", &own));
        let root = dir.path().join("trusted_root.json");
        crate::testing::sigstore::TestSigstore::new().write_trusted_root(&root);
        let root = root.display();
        let config = parse(&format!(
            "defaults:\n  source: src\n  targets: dst\n  verify:\n    keys: [{vendor_path}]\n    trusted_root: {root}\n    keyless:\n      - {{ issuer: https://token.actions.githubusercontent.com, subject_regexp: '^https://github\\.com/chainguard-images/' }}\nmappings:\n  - from: a\n  - from: b\n    verify: {{ mode: warn }}\n  - from: c\n    verify: {{ keys: [{own_path}] }}\n  - from: d\n    verify: {{ mode: off }}\n  - from: e\n    source: src\n"
        ))
        .unwrap();
        let policies: Vec<_> = config.mappings.iter().map(|m| m.verify.clone()).collect();
        let a = policies[0].as_ref().unwrap();
        assert_eq!(a.mode, Mode::Enforce, "enforce is the default once verify is present");
        assert_eq!(a.keys.iter().map(|k| k.fingerprint().to_string()).collect::<Vec<_>>(), [vendor.fingerprint()]);
        assert!(
            matches!(&a.identities[0].subject, Subject::Pattern(p) if p.is_match("https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main"))
        );
        let b = policies[1].as_ref().unwrap();
        assert_eq!((b.mode, b.keys.len(), b.identities.len()), (Mode::Warn, 1, 1), "inherits what it does not set");
        let c = policies[2].as_ref().unwrap();
        assert_eq!(c.keys[0].fingerprint(), own.fingerprint(), "its own keys replace the defaults'");
        assert_eq!(c.identities.len(), 1);
        assert!(policies[3].is_none(), "mode: off");
        assert!(policies[4].is_some());
        let bare = parse("mappings:\n  - from: a\n    source: src\n    targets: dst\n").unwrap();
        assert!(bare.mappings[0].verify.is_none(), "no verify, nothing checked");
    }

    #[test]
    fn unknown_keys_unreadable_key_files_and_bad_regexps_are_reported_with_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_key = dir.path().join("private.pem");
        std::fs::write(&not_a_key, KeyPair::generate(SigningKind::P256).private_pem()).unwrap();
        let found = problems(&format!(
            "defaults:\n  source: src\n  targets: dst\n  verify:\n    keyless:\n      - {{ issuer: https://accounts.google.com, subject_regexp: '(unclosed' }}\nmappings:\n  - from: a\n    verify: {{ keys: [/nonexistent/vendor.pub, {}] }}\n  - from: b\n    verify: {{ mod: warn }}\n  - from: c\n    verify:\n      keyless: [{{ issuer: x, subject: y, subject_regexp: z }}]\n",
            not_a_key.display()
        ));
        for want in [
            "defaults.verify.keyless[0].subject_regexp (line 9): invalid regexp",
            "mappings[0].verify.keys[0] (line 12): cannot read key file /nonexistent/vendor.pub",
            "mappings[0].verify.keys[1] (line 12): key file",
            "mappings[1].verify (line 14): unknown field `mod`",
            "mappings[2].verify.keyless[0] (line 17): needs exactly one of subject and subject_regexp",
        ] {
            assert!(found.iter().any(|p| p.starts_with(want)), "missing {want:?} in {found:#?}");
        }
        assert!(found.iter().any(|p| p.contains("\"PRIVATE KEY\"")), "{found:#?}");
        assert!(found.iter().any(|p| p.contains("did you mean `mode`?")), "{found:#?}");
        assert_eq!(found.len(), 5, "{found:#?}");
    }

    #[test]
    fn keyless_identities_default_to_the_public_good_root_and_a_named_root_must_be_readable() {
        let keyless = "keyless: [{ issuer: https://accounts.google.com, subject: a@b.c }]";
        let found = problems(&format!(
            "defaults:\n  source: src\n  targets: dst\nmappings:\n  - from: a\n    verify: {{ {keyless} }}\n  - from: b\n    verify: {{ {keyless}, trusted_root: /nonexistent/root.json }}\n"
        ));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("mappings[1].verify.trusted_root (line 11): cannot read /nonexistent/root.json"));
    }

    #[test]
    fn a_policy_that_trusts_nobody_is_an_error() {
        let found =
            problems("defaults:\n  source: src\n  targets: dst\nmappings:\n  - from: a\n    verify: { mode: warn }\n");
        assert_eq!(
            found,
            ["mappings[0].verify (line 9): trusts nobody: list keys or keyless identities (or set mode: off)"]
        );
    }
}
