//! Resolving mappings: sources and targets to registry names, `to` defaulting to `from`,
//! and each mapping's tag filter merged field by field over `defaults.tags`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::collect::Unparsed;
use super::raw::{OneOrMany, RawConfig, RawTags, closest};
use super::{Problem, RegistryConfig};
use crate::filter::{self, Sort, TagFilter};
use crate::oci::{ArtifactPolicy, Platform, validate_repository};

/// One mapping, ready for planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// Position in `mappings` (0-based), as used in paths and SQS messages.
    pub index: usize,
    /// Source registry name.
    pub source: String,
    /// Source repository.
    pub from: String,
    /// Target repository.
    pub to: String,
    /// Target registry names, without repeats, in the order given.
    pub targets: Vec<String>,
    /// The repository at each target whose registry has a `prefix` (`<prefix>/<to>`); other
    /// targets receive `to` itself. Use [`Mapping::repository_at`].
    pub prefixed: BTreeMap<String, String>,
    /// The merged tag filter.
    pub tags: TagFilter,
    /// Which referrers follow the images; `None`: none.
    pub artifacts: Option<ArtifactPolicy>,
    /// Platforms kept of multi-platform indexes; empty: all (the index is copied unchanged).
    pub platforms: Vec<Platform>,
    /// Signatures checked before an image is copied; `None`: none.
    pub verify: Option<std::sync::Arc<crate::verify::Policy>>,
}

impl Mapping {
    /// `from -> to`, the mapping's identity in reports and messages.
    pub fn key(&self) -> String {
        format!("{} -> {}", self.from, self.to)
    }

    /// The repository this mapping writes at target registry `target`: `to`, under the
    /// registry's `prefix` if it has one.
    pub fn repository_at(&self, target: &str) -> &str {
        self.prefixed.get(target).map_or(&self.to, String::as_str)
    }
}

/// Resolves every mapping, pushing a [`Problem`] for each thing wrong.
pub(super) fn resolve(
    raw: &RawConfig,
    registries: &BTreeMap<String, RegistryConfig>,
    unparsed: &Unparsed,
    problems: &mut Vec<Problem>,
) -> Vec<Mapping> {
    let problem = |problems: &mut Vec<Problem>, path: String, message: String| {
        problems.push(Problem { path, line: None, message });
    };
    // A registry whose entry did not parse exists: its problem is reported already.
    let known = |name: &str| raw.registries.contains_key(name) || unparsed.registries.contains(name);
    let unknown_registry = |name: &str| {
        let hint = closest(name, raw.registries.keys().map(String::as_str))
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
        format!("unknown registry `{name}`{hint}")
    };
    for (group, members) in &raw.target_groups {
        if registries.contains_key(group) {
            problem(problems, format!("target_groups.{group}"), "has the same name as a registry".into());
        }
        for (i, member) in members.iter().enumerate() {
            if !known(member) {
                problem(problems, format!("target_groups.{group}[{i}]"), unknown_registry(member));
            }
        }
    }
    let defaults = raw.defaults.clone().unwrap_or_default();
    if let Some(source) = &defaults.source
        && !known(source)
    {
        problem(problems, "defaults.source".into(), unknown_registry(source));
    }
    let default_tags = defaults.tags.clone().unwrap_or_default();
    if let Err(error) = check_tags(&default_tags) {
        problem(problems, format!("defaults.tags.{}", error.field), error.message);
    }
    super::artifacts::check_defaults(&defaults, problems);
    let default_verify = super::verify::check("defaults.verify", defaults.verify.as_ref(), problems);
    if unparsed.defaults {
        // What every mapping inherits is unknown; checking them now would only report its absence.
        return Vec::new();
    }

    let mut mappings = Vec::new();
    for (index, entry) in raw.mappings.iter().enumerate().filter(|(index, _)| !unparsed.mappings.contains(index)) {
        let path = |key: &str| format!("mappings[{index}].{key}");
        let before = problems.len();
        let to = entry.to.clone().unwrap_or_else(|| entry.from.clone());
        for (key, repository) in [("from", &entry.from), ("to", &to)] {
            if let Err(reason) = validate_repository(repository) {
                problem(problems, path(key), format!("repository {repository:?} {reason}"));
            }
        }
        let source = match entry.source.as_ref().or(defaults.source.as_ref()) {
            Some(source) if known(source) => source.clone(),
            Some(source) => {
                if entry.source.is_some() {
                    problem(problems, path("source"), unknown_registry(source));
                }
                String::new()
            }
            None => {
                problem(problems, path("source"), "no source registry: set it here or in defaults.source".into());
                String::new()
            }
        };
        let targets = match entry.targets.as_ref().or(defaults.targets.as_ref()) {
            None => {
                problem(problems, path("targets"), "no targets: set them here or in defaults.targets".into());
                Vec::new()
            }
            Some(targets) => {
                let reported_at =
                    if entry.targets.is_some() { path("targets") } else { "defaults.targets".to_string() };
                expand_targets(targets, raw, unparsed, &reported_at, problems, &unknown_registry)
            }
        };
        let prefixed: BTreeMap<String, String> = targets
            .iter()
            .filter_map(|name| registries.get(name))
            .filter(|registry| registry.prefix.is_some())
            .map(|registry| (registry.name.clone(), registry.target_repository(&to)))
            .collect();
        for (target, repository) in prefixed.iter().filter(|_| validate_repository(&to).is_ok()) {
            if let Err(reason) = validate_repository(repository) {
                problem(problems, path("to"), format!("repository {repository:?} at `{target}` {reason}"));
            }
        }
        let at_source = prefixed.get(&source).unwrap_or(&to);
        if targets.contains(&source) && entry.from == *at_source {
            problem(problems, path("targets"), format!("`{source}` is both source and target of {at_source}"));
        }
        let tags = merge_tags(&default_tags, entry.tags.as_ref());
        if entry.tags.is_some()
            && let Err(error) = check_tags(&tags)
        {
            problem(problems, path(&format!("tags.{}", error.field)), error.message);
        }
        let (artifacts, platforms) = super::artifacts::resolve(&defaults, entry, index, problems);
        let own_verify = super::verify::check(&path("verify"), entry.verify.as_ref(), problems);
        let verify_at = if entry.verify.is_some() { path("verify") } else { "defaults.verify".to_string() };
        let verify = super::verify::merge(&default_verify, own_verify, &verify_at, problems).map(std::sync::Arc::new);
        if problems.len() == before {
            let (from, tags) = (entry.from.clone(), to_filter(&tags));
            mappings.push(Mapping { index, source, from, to, targets, prefixed, tags, artifacts, platforms, verify });
        }
    }
    mappings
}

/// Group names expand to their members; registry names stand for themselves.
fn expand_targets(
    targets: &OneOrMany,
    raw: &RawConfig,
    unparsed: &Unparsed,
    path: &str,
    problems: &mut Vec<Problem>,
    unknown_registry: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let names: Vec<&String> = match targets {
        OneOrMany::One(name) => vec![name],
        OneOrMany::Many(names) => names.iter().collect(),
    };
    let mut resolved: Vec<String> = Vec::new();
    let mut skipped = false;
    for name in names {
        let members: Vec<String> = match raw.target_groups.get(name) {
            Some(group) => group.clone(),
            None if raw.registries.contains_key(name) => vec![name.clone()],
            None if unparsed.names(name) => {
                skipped = true;
                continue;
            }
            None => {
                let candidates = raw.registries.keys().chain(raw.target_groups.keys()).map(String::as_str);
                let message = match closest(name, candidates) {
                    Some(hint) => {
                        format!("unknown target group or registry `{name}`; did you mean `{hint}`?")
                    }
                    None => unknown_registry(name).replace("unknown registry", "unknown target group or registry"),
                };
                problems.push(Problem { path: path.to_string(), line: None, message });
                continue;
            }
        };
        for member in members {
            if !resolved.contains(&member) {
                resolved.push(member);
            }
        }
    }
    if resolved.is_empty() && !skipped && !problems.iter().any(|p| p.path == path) {
        problems.push(Problem { path: path.to_string(), line: None, message: "names no target registry".into() });
    }
    resolved
}

/// Field by field: a mapping's `tags` keys replace the same keys of `defaults.tags`.
fn merge_tags(defaults: &RawTags, mapping: Option<&RawTags>) -> RawTags {
    let Some(mapping) = mapping else {
        return defaults.clone();
    };
    RawTags {
        glob: mapping.glob.clone().or_else(|| defaults.glob.clone()),
        semver: mapping.semver.clone().or_else(|| defaults.semver.clone()),
        exclude: mapping.exclude.clone().or_else(|| defaults.exclude.clone()),
        sort: mapping.sort.clone().or_else(|| defaults.sort.clone()),
        latest: mapping.latest.or(defaults.latest),
        min_tags: mapping.min_tags.or(defaults.min_tags),
        include_prereleases: mapping.include_prereleases.or(defaults.include_prereleases),
    }
}

/// Problems a tag filter has beyond what [`TagFilter::compile`] checks.
fn check_sort(tags: &RawTags) -> Option<filter::Error> {
    match tags.sort.as_deref() {
        None | Some("semver" | "alpha") => None,
        Some(other) => Some(filter::Error {
            field: "sort",
            message: format!("unknown sort `{other}`, expected `semver` or `alpha`"),
        }),
    }
}

/// Checks a tag block: the sort name, then patterns and the range.
fn check_tags(tags: &RawTags) -> Result<(), filter::Error> {
    match check_sort(tags) {
        Some(error) => Err(error),
        None => to_filter(tags).compile().map(drop),
    }
}

fn to_filter(tags: &RawTags) -> TagFilter {
    let list = |value: &Option<OneOrMany>| match value {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one.clone()],
        Some(OneOrMany::Many(many)) => many.clone(),
    };
    TagFilter {
        globs: list(&tags.glob),
        semver: tags.semver.clone(),
        exclude: list(&tags.exclude),
        sort: match tags.sort.as_deref() {
            Some("alpha") => Some(Sort::Alpha),
            Some(_) => Some(Sort::Semver),
            None => None,
        },
        latest: tags.latest,
        min_tags: tags.min_tags,
        include_prereleases: tags.include_prereleases.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Error};
    use crate::filter::Sort;

    const REGISTRIES: &str = "registries:\n  src: { url: cgr.dev }\n  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com }\n  gar: { url: us-docker.pkg.dev }\n";

    fn parse(rest: &str) -> Result<Config, Error> {
        Config::parse(&format!("{REGISTRIES}{rest}"), "test.yaml", |_| None)
    }

    fn problems(rest: &str) -> Vec<String> {
        match parse(rest) {
            Err(Error::Invalid { problems, .. }) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn groups_expand_and_to_defaults_to_from() {
        let config = parse(
            "target_groups:\n  all: [ecr, gar]\ndefaults:\n  source: src\n  targets: all\nmappings:\n  - from: chainguard/nginx\n  - from: chainguard/static\n    targets: [gar, ecr, gar]\n",
        )
        .unwrap();
        assert_eq!(config.mappings[0].targets, ["ecr", "gar"]);
        assert_eq!(config.mappings[0].to, "chainguard/nginx");
        assert_eq!(config.mappings[1].targets, ["gar", "ecr"], "repeats are dropped");
        assert_eq!(config.mappings[0].key(), "chainguard/nginx -> chainguard/nginx");
    }

    #[test]
    fn mapping_tags_override_defaults_field_by_field() {
        let config = parse(
            "defaults:\n  source: src\n  targets: ecr\n  tags: { glob: \"*\", sort: semver, latest: 20 }\nmappings:\n  - from: a\n    tags: { latest: 5 }\n  - from: b\n",
        )
        .unwrap();
        let (a, b) = (&config.mappings[0].tags, &config.mappings[1].tags);
        assert_eq!((a.globs.as_slice(), a.sort, a.latest), (["*".to_string()].as_slice(), Some(Sort::Semver), Some(5)));
        assert_eq!(b.latest, Some(20));
    }

    #[test]
    fn every_mapping_problem_is_reported_with_its_path() {
        let found = problems(
            "target_groups:\n  eu: [ecr, gcr]\ndefaults:\n  targets: eu\nmappings:\n  - from: a\n    source: srcs\n  - from: b\n  - from: Bad/Repo\n    source: src\n    targets: [nowhere]\n    tags: { latest: 0, semver: \">=x\" }\n  - from: c\n    source: src\n    tags: { sort: newest }\n",
        );
        let expected = [
            "target_groups.eu[1] (line 6): unknown registry `gcr`",
            "mappings[0].source (line 11): unknown registry `srcs`; did you mean `src`?",
            "mappings[1].source (line 12): no source registry: set it here or in defaults.source",
            "mappings[2].from (line 13): repository \"Bad/Repo\" must be lowercase",
            "mappings[2].targets (line 15): unknown target group or registry `nowhere`",
            "mappings[2].tags.semver (line 16): invalid range \">=x\"",
            "mappings[3].tags.sort (line 19): unknown sort `newest`, expected `semver` or `alpha`",
        ];
        for want in expected {
            assert!(found.iter().any(|p| p.starts_with(want)), "missing {want:?} in {found:#?}");
        }
    }

    #[test]
    fn a_wrongly_typed_value_is_reported_with_path_and_line() {
        let found = problems("mappings:\n  - from: c\n    source: src\n    targets: ecr\n    tags: { latest: many }\n");
        assert!(found[0].starts_with("mappings[0].tags.latest (line 9): invalid type"), "{found:?}");
    }

    #[test]
    fn a_target_prefix_puts_every_mapping_under_it_at_that_registry_only() {
        let config = Config::parse(
            &format!(
                "{}  mas: {{ url: registry.corp, prefix: mas-images/250731 }}\ndefaults:\n  source: src\n  targets: [ecr, mas]\nmappings:\n  - from: chainguard/nginx\n    to: nginx\n  - from: chainguard/static\n",
                REGISTRIES.replace("amazonaws.com }", "amazonaws.com, prefix: mirror }")
            ),
            "test.yaml",
            |_| None,
        )
        .unwrap();
        let (nginx, static_) = (&config.mappings[0], &config.mappings[1]);
        assert_eq!(nginx.repository_at("ecr"), "mirror/nginx");
        assert_eq!(nginx.repository_at("mas"), "mas-images/250731/nginx");
        assert_eq!(static_.repository_at("mas"), "mas-images/250731/chainguard/static");
        assert_eq!(nginx.to, "nginx", "`to` itself is unchanged");
        assert_eq!(nginx.key(), "chainguard/nginx -> nginx");
    }

    #[test]
    fn an_invalid_prefix_is_reported_with_its_path() {
        let found = problems(
            "  bad: { url: bad.io, prefix: Mirror/ }\n  slash: { url: slash.io, prefix: /mirror }\n  long: { url: long.io, prefix: x }\n",
        );
        let expected = [
            "registries.bad.prefix (line 5): \"Mirror/\" is not a repository path: it must be lowercase",
            "registries.slash.prefix (line 6): \"/mirror\" is not a repository path: it has an empty path component",
        ];
        for want in expected {
            assert!(found.iter().any(|p| p.starts_with(want)), "missing {want:?} in {found:#?}");
        }
        assert_eq!(found.len(), 2, "{found:#?}");
    }

    #[test]
    fn a_prefix_that_makes_the_repository_too_long_is_reported_at_the_mapping() {
        let long = "a".repeat(250);
        let found = problems(&format!(
            "  long: {{ url: long.io, prefix: {long} }}\nmappings:\n  - from: nginx\n    source: src\n    targets: long\n"
        ));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("mappings[0].to (line 7): repository \"aaaa"), "{found:#?}");
        assert!(found[0].ends_with("at `long` is longer than 255 characters"), "{found:#?}");
    }

    #[test]
    fn a_prefix_on_the_source_registry_makes_a_self_mapping_legal() {
        let config = parse(
            "  self: { url: self.io, prefix: copy }\nmappings:\n  - from: app\n    source: self\n    targets: self\n",
        )
        .unwrap();
        assert_eq!(config.mappings[0].repository_at("self"), "copy/app");
    }

    #[test]
    fn a_mapping_onto_itself_is_refused() {
        let found = problems("mappings:\n  - from: a\n    source: src\n    targets: [src]\n");
        assert_eq!(found, ["mappings[0].targets (line 8): `src` is both source and target of a"]);
    }
}
