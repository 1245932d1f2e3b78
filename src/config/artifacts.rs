//! `artifacts:` and `platforms:` resolved: a mapping's `artifacts` keys replace the same keys
//! of `defaults.artifacts` (as `tags` does), its `platforms` replace `defaults.platforms`, and
//! globs and platform names are checked, each problem with its path.

use super::Problem;
use super::raw::{OneOrMany, RawArtifacts, RawDefaults, RawMapping};
use crate::oci::{ArtifactPolicy, Platform};

/// A mapping's referrer policy (`None`: referrers are not copied) and platforms (empty: all).
pub(super) type Resolved = (Option<ArtifactPolicy>, Vec<Platform>);

/// Checks `defaults.artifacts` and `defaults.platforms`, once for the whole file.
pub(super) fn check_defaults(defaults: &RawDefaults, problems: &mut Vec<Problem>) {
    resolve_at("defaults", defaults.artifacts.as_ref(), defaults.platforms.as_ref(), problems);
}

/// Resolves mapping `index` over the defaults. Problems in values the mapping inherits were
/// reported under `defaults` already.
pub(super) fn resolve(
    defaults: &RawDefaults,
    mapping: &RawMapping,
    index: usize,
    problems: &mut Vec<Problem>,
) -> Resolved {
    let artifacts = merge(defaults.artifacts.as_ref(), mapping.artifacts.as_ref());
    let platforms = mapping.platforms.as_ref().or(defaults.platforms.as_ref());
    let mut found = Vec::new();
    let resolved = resolve_at(&format!("mappings[{index}]"), Some(&artifacts), platforms, &mut found);
    let own = |problem: &Problem| {
        let field = problem.path.split('.').skip(1).collect::<Vec<_>>().join(".");
        let artifacts_field = |name: &str| mapping.artifacts.as_ref().is_some_and(|a| is_set(a, name));
        match field.split_once('.') {
            Some(("artifacts", name)) => artifacts_field(name),
            _ => mapping.platforms.is_some(),
        }
    };
    problems.extend(found.into_iter().filter(own));
    resolved
}

fn is_set(artifacts: &RawArtifacts, field: &str) -> bool {
    match field {
        "include" => artifacts.include.is_some(),
        "exclude" => artifacts.exclude.is_some(),
        "require" => artifacts.require.is_some() || artifacts.enabled.is_some(),
        _ => false,
    }
}

fn merge(defaults: Option<&RawArtifacts>, mapping: Option<&RawArtifacts>) -> RawArtifacts {
    let defaults = defaults.cloned().unwrap_or_default();
    let Some(mapping) = mapping else {
        return defaults;
    };
    RawArtifacts {
        enabled: mapping.enabled.or(defaults.enabled),
        include: mapping.include.clone().or(defaults.include),
        exclude: mapping.exclude.clone().or(defaults.exclude),
        require: mapping.require.or(defaults.require),
    }
}

fn resolve_at(
    at: &str,
    artifacts: Option<&RawArtifacts>,
    platforms: Option<&Vec<String>>,
    problems: &mut Vec<Problem>,
) -> Resolved {
    let artifacts = artifacts.cloned().unwrap_or_default();
    let list = |value: &Option<OneOrMany>| match value {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one.clone()],
        Some(OneOrMany::Many(many)) => many.clone(),
    };
    let require = artifacts.require.unwrap_or(false);
    let policy = match ArtifactPolicy::new(list(&artifacts.include), list(&artifacts.exclude), require) {
        Ok(policy) => Some(policy),
        Err((field, message)) => {
            problems.push(Problem { path: format!("{at}.artifacts.{field}"), line: None, message });
            None
        }
    };
    let enabled = artifacts.enabled.unwrap_or(true);
    if !enabled && require {
        problems.push(Problem {
            path: format!("{at}.artifacts.require"),
            line: None,
            message: "requires referrers, but artifacts.enabled is false".into(),
        });
    }
    let mut parsed = Vec::new();
    for (i, platform) in platforms.into_iter().flatten().enumerate() {
        match platform.parse::<Platform>() {
            Ok(platform) => parsed.push(platform),
            Err(message) => problems.push(Problem { path: format!("{at}.platforms[{i}]"), line: None, message }),
        }
    }
    (policy.filter(|_| enabled), parsed)
}
