//! Mirror configuration for the clients that pull from the mirror, generated from a config's
//! mappings (pure): every mapping says that `<source host>/<from>` is found at
//! `<target host>[/<prefix>]/<to>` on each of its targets. [`mirror_sets`] computes those
//! pairs; [`render`] writes them in the formats OpenShift, containers-registries.conf and
//! containerd read.

mod render;

use std::collections::BTreeMap;

pub use render::{Format, Options, Rendered, Unrepresentable, render};

use crate::config::{Config, Mapping, RegistryConfig};
use crate::oci::{DOCKER_HUB, is_docker_hub};

/// One upstream location and where the mirror holds its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSet {
    /// `host/path` clients ask for (`quay.io/argoproj/argocd`, `docker.io/library/nginx`).
    pub source: String,
    /// The mirror locations, in target order.
    pub mirrors: Vec<Mirror>,
    /// What produced it, for messages about it.
    pub origin: Origin,
    /// The upstream itself is served over plain HTTP (its `url: http://…`; extra sources are
    /// taken to be HTTPS).
    pub plain_http: bool,
}

/// One mirror location of a [`MirrorSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[/prefix]/repository`.
    pub location: String,
    /// The target registry's host (`127.0.0.1:5000`).
    pub host: String,
    /// The registry's path under the host where the source path lands (`<prefix>/<to>` for a
    /// mapping, `<prefix>` for an extra source).
    pub path: String,
    /// The target is reached over plain HTTP (`url: http://…`).
    pub plain_http: bool,
}

/// Where a [`MirrorSet`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// From these mappings (positions in `mappings`).
    Mappings {
        /// The source's repository path at its host (`argoproj/argocd`, `library/nginx`).
        source_path: String,
        /// The mappings' indexes.
        indexes: Vec<usize>,
    },
    /// From `--extra-source`: mirrored to the root (prefix) of every target.
    Extra,
}

/// `docker.io` for Docker Hub's spellings, otherwise the host as written.
fn client_host(host: &str) -> &str {
    if is_docker_hub(host) { DOCKER_HUB } else { host }
}

/// The repository path clients name: Docker Hub's single-component names live under `library/`.
fn client_path(host: &str, repository: &str) -> String {
    if host == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    }
}

fn mirror(target: &RegistryConfig, path: Option<String>) -> Mirror {
    let host = client_host(&target.host).to_string();
    let path = path.or_else(|| target.prefix.clone()).unwrap_or_default();
    let location = if path.is_empty() { host.clone() } else { format!("{host}/{path}") };
    Mirror { location, host, path, plain_http: target.plain_http }
}

/// Every upstream location of the config with its mirrors, sorted by source. Mappings with the
/// same source share one entry; each `extra` (`host/path`) mirrors to every target's root.
pub fn mirror_sets(config: &Config, extra: &[String]) -> Vec<MirrorSet> {
    let mut by_source: BTreeMap<String, MirrorSet> = BTreeMap::new();
    for mapping in &config.mappings {
        let source = &config.registries[&mapping.source];
        let host = client_host(&source.host);
        let source_path = client_path(host, &mapping.from);
        let entry = by_source.entry(format!("{host}/{source_path}")).or_insert_with_key(|key| MirrorSet {
            source: key.clone(),
            mirrors: Vec::new(),
            origin: Origin::Mappings { source_path: source_path.clone(), indexes: Vec::new() },
            plain_http: source.plain_http,
        });
        if let Origin::Mappings { indexes, .. } = &mut entry.origin {
            indexes.push(mapping.index);
        }
        for target in mapping_targets(config, mapping) {
            let at = mirror(target, Some(mapping.repository_at(&target.name).to_string()));
            if !entry.mirrors.contains(&at) {
                entry.mirrors.push(at);
            }
        }
    }
    let mut roots: Vec<Mirror> = Vec::new();
    for target in config.mappings.iter().flat_map(|m| mapping_targets(config, m)) {
        let root = mirror(target, None);
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    for source in extra {
        let (host, path) = source.split_once('/').unwrap_or((source, ""));
        let host = client_host(host);
        let source = if path.is_empty() { host.to_string() } else { format!("{host}/{path}") };
        by_source.insert(
            source.clone(),
            MirrorSet { source, mirrors: roots.clone(), origin: Origin::Extra, plain_http: false },
        );
    }
    by_source.into_values().collect()
}

fn mapping_targets<'a>(config: &'a Config, mapping: &'a Mapping) -> impl Iterator<Item = &'a RegistryConfig> {
    mapping.targets.iter().map(|name| &config.registries[name])
}

/// Checks an `--extra-source` value: `host[:port]/path` or a bare host.
pub fn validate_extra_source(source: &str) -> Result<(), String> {
    let (host, path) = source.split_once('/').unwrap_or((source, ""));
    if host.is_empty() || host.contains(char::is_whitespace) || source.contains("://") {
        return Err(format!("--extra-source {source:?}: expected HOST[/PATH] without a scheme"));
    }
    if !path.is_empty()
        && let Err(reason) = crate::oci::validate_repository(path)
    {
        return Err(format!("--extra-source {source:?}: the path {reason}"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Several sources (one Docker Hub), several targets, prefixes, a shared source.
    pub(crate) const CONFIG: &str = "\
registries:
  hub: { url: registry-1.docker.io }
  quay: { url: quay.io }
  ghcr: { url: ghcr.io }
  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com, prefix: mas-images }
  corp: { url: \"http://registry.corp:5000\" }
target_groups:
  all: [ecr, corp]
defaults:
  targets: all
mappings:
  - from: nginx
    source: hub
  - from: bitnami/redis
    source: hub
    to: cache/redis
    targets: corp
  - from: alpine
    source: hub
    to: library/alpine
    targets: corp
  - from: argoproj/argocd
    source: quay
    to: argo/argocd
  - from: argoproj/argocd
    source: quay
    to: argo/argocd
    tags: { glob: \"v3*\" }
  - from: org/tool
    source: ghcr
    targets: ecr
";

    pub(crate) fn config() -> Config {
        Config::parse(CONFIG, "mirror.yaml", |_| None).unwrap()
    }

    fn locations(set: &MirrorSet) -> Vec<&str> {
        set.mirrors.iter().map(|m| m.location.as_str()).collect()
    }

    #[test]
    fn every_source_maps_to_each_target_under_its_prefix_with_docker_hub_normalised() {
        let sets = mirror_sets(&config(), &[]);
        let sources: Vec<&str> = sets.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(
            sources,
            [
                "docker.io/bitnami/redis",
                "docker.io/library/alpine",
                "docker.io/library/nginx",
                "ghcr.io/org/tool",
                "quay.io/argoproj/argocd"
            ]
        );
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(locations(&sets[0]), ["registry.corp:5000/cache/redis"]);
        assert_eq!(locations(&sets[1]), ["registry.corp:5000/library/alpine"]);
        assert_eq!(locations(&sets[2]), [format!("{ecr}/mas-images/nginx").as_str(), "registry.corp:5000/nginx"]);
        assert_eq!(locations(&sets[3]), [format!("{ecr}/mas-images/org/tool")]);
        assert_eq!(
            locations(&sets[4]),
            [format!("{ecr}/mas-images/argo/argocd").as_str(), "registry.corp:5000/argo/argocd"],
            "two mappings of one source share an entry without repeats"
        );
        assert_eq!(sets[4].origin, Origin::Mappings { source_path: "argoproj/argocd".into(), indexes: vec![3, 4] });
        assert!(sets[0].mirrors[0].plain_http && !sets[2].mirrors[0].plain_http);
    }

    #[test]
    fn an_extra_source_mirrors_to_the_root_of_every_target() {
        let sets = mirror_sets(&config(), &["cp.icr.io/cp".to_string(), "index.docker.io/team".to_string()]);
        let extra: Vec<&MirrorSet> = sets.iter().filter(|s| s.origin == Origin::Extra).collect();
        assert_eq!(extra[0].source, "cp.icr.io/cp");
        assert_eq!(extra[1].source, "docker.io/team");
        assert_eq!(
            locations(extra[0]),
            ["123456789012.dkr.ecr.us-east-1.amazonaws.com/mas-images", "registry.corp:5000"]
        );
    }

    #[test]
    fn extra_sources_are_checked() {
        assert!(validate_extra_source("cp.icr.io/cp/mas").is_ok());
        assert!(validate_extra_source("quay.io").is_ok());
        assert!(validate_extra_source("https://quay.io/x").unwrap_err().contains("without a scheme"));
        assert!(validate_extra_source("quay.io/Upper").unwrap_err().contains("must be lowercase"));
    }
}
