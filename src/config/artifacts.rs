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

#[cfg(test)]
mod tests {
    use crate::config::{Config, Error};

    const HEAD: &str = "registries:\n  src: { url: cgr.dev }\n  dst: { url: registry.corp }\n";

    fn parse(rest: &str) -> Result<Config, Error> {
        Config::parse(&format!("{HEAD}{rest}"), "test.yaml", |_| None)
    }

    #[test]
    fn referrers_are_on_by_default_and_mapping_keys_override_defaults_field_by_field() {
        let config = parse(
            "defaults:\n  source: src\n  targets: dst\n  artifacts: { include: \"application/vnd.dev.*\", require: true }\n  platforms: [linux/amd64]\nmappings:\n  - from: a\n    artifacts: { require: false }\n    platforms: [linux/arm64/v8]\n  - from: b\n  - from: c\n    artifacts: { enabled: false, require: false }\n",
        )
        .unwrap();
        let [a, b, c] = &config.mappings[..] else { panic!("three mappings") };
        let policy = a.artifacts.as_ref().unwrap();
        assert!(!policy.require, "the mapping's own key");
        assert!(policy.admits(Some("application/vnd.dev.cosign.artifact.sig.v1+json")), "inherited include");
        assert!(!policy.admits(Some("application/spdx+json")));
        assert_eq!(a.platforms.iter().map(ToString::to_string).collect::<Vec<_>>(), ["linux/arm64/v8"]);
        assert!(b.artifacts.as_ref().unwrap().require);
        assert_eq!(b.platforms[0].to_string(), "linux/amd64");
        assert!(c.artifacts.is_none());
        let bare = parse("mappings:\n  - from: a\n    source: src\n    targets: dst\n").unwrap();
        assert!(bare.mappings[0].artifacts.is_some() && bare.mappings[0].platforms.is_empty());
    }

    #[test]
    fn bad_globs_platforms_and_contradictions_are_reported_with_their_paths() {
        let Err(Error::Invalid { problems, .. }) = parse(
            "defaults:\n  source: src\n  targets: dst\n  artifacts: { exclude: \"[\" }\nmappings:\n  - from: a\n    platforms: [linux/amd64, linux]\n  - from: b\n    artifacts: { enabled: false, require: true }\n",
        ) else {
            panic!("expected problems")
        };
        let found: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for want in [
            "defaults.artifacts.exclude (line 7): invalid pattern \"[\"",
            "mappings[0].platforms[1] (line 10): invalid platform \"linux\"",
            "mappings[1].artifacts.require (line 12): requires referrers, but artifacts.enabled is false",
        ] {
            assert!(found.iter().any(|p| p.starts_with(want)), "missing {want:?} in {found:#?}");
        }
        assert_eq!(found.len(), 3, "the defaults' problem once, not per mapping: {found:#?}");
    }
}
