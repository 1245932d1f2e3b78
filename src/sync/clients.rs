//! Registry clients by config name: built for one run ([`Clients::connect`]), or kept across
//! the runs of a long-lived process ([`ClientCache`]: watch cycles, warm Lambda invocations).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Mapping, RegistryConfig};
use crate::plan::Failure;
use crate::registry::pacing::Throttling;
use crate::registry::{HttpRegistry, Registry};

/// Registry clients by config name; a client that could not be built holds its failure
/// (classified: a credentials problem is an authentication failure).
pub struct Clients<R> {
    by_name: HashMap<String, Result<Arc<R>, Failure>>,
    /// Throttling the clients had seen when this run took them (cached clients carry counts
    /// from earlier runs), so the report counts this run's alone.
    throttled_before: Vec<Throttling>,
}

impl<R: Registry> Clients<R> {
    /// Clients from ready values (tests, the in-memory benchmark).
    pub fn new(clients: impl IntoIterator<Item = (String, Result<Arc<R>, Failure>)>) -> Self {
        Self::from_map(clients.into_iter().collect())
    }

    fn from_map(by_name: HashMap<String, Result<Arc<R>, Failure>>) -> Self {
        let mut clients = Clients { by_name, throttled_before: Vec::new() };
        clients.throttled_before = clients.throttling_total();
        clients
    }

    fn throttling_total(&self) -> Vec<Throttling> {
        self.all().flat_map(|(_, client)| client.throttling()).collect()
    }

    /// Throttling since these clients were taken for the run, per registry and pacing group.
    pub fn throttling(&self) -> Vec<Throttling> {
        let mut since: Vec<Throttling> = self
            .throttling_total()
            .iter()
            .map(|now| {
                let before = self.throttled_before.iter().find(|b| b.registry == now.registry && b.group == now.group);
                now.since(before)
            })
            .filter(|t| t.throttled > 0 || t.waited_ms > 0)
            .collect();
        since.sort_by(|a, b| (&a.registry, &a.group).cmp(&(&b.registry, &b.group)));
        since
    }

    /// Every client that could be built, by registry name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &R)> {
        self.by_name.iter().filter_map(|(name, client)| client.as_ref().ok().map(|c| (name.as_str(), c.as_ref())))
    }

    /// The client for a registry name.
    pub fn get(&self, name: &str) -> Result<&R, Failure> {
        match self.by_name.get(name) {
            Some(Ok(client)) => Ok(client),
            Some(Err(failure)) => Err(failure.clone()),
            None => Err(Failure::new(format!("registry `{name}` is not configured"))),
        }
    }
}

impl Clients<HttpRegistry> {
    /// HTTP clients for every registry the given mappings use.
    pub async fn connect(config: &Config, mappings: &[&Mapping]) -> Self {
        let mut by_name = HashMap::new();
        for name in used_registries(mappings) {
            by_name.insert(name.to_string(), open(config, name).await);
        }
        Clients::from_map(by_name)
    }
}

/// The registries `mappings` use, as sources or targets, each once.
fn used_registries<'m>(mappings: &[&'m Mapping]) -> Vec<&'m str> {
    let mut names: Vec<&str> =
        mappings.iter().flat_map(|m| std::iter::once(&m.source).chain(&m.targets)).map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names
}

async fn open(config: &Config, name: &str) -> Result<Arc<HttpRegistry>, Failure> {
    let client = crate::connect::open_entry(&config.registries[name], config).await;
    client.map(Arc::new).map_err(|e| Failure::from(&e))
}

/// What a client is built from: its own config entry (credentials are chosen per entry, never
/// by host across entries), and the global timeouts. A client is reused while this is unchanged (compared by value, so a rotated
/// password also rebuilds it, though `Debug` hides passwords).
#[derive(PartialEq, Eq)]
struct BuiltFrom {
    entry: Option<RegistryConfig>,
    timeout: Duration,
    idle_timeout: Duration,
    throttle_budget: Duration,
}

impl BuiltFrom {
    fn new(config: &Config, name: &str) -> Self {
        BuiltFrom {
            entry: config.registries.get(name).cloned(),
            timeout: config.global.timeout,
            idle_timeout: config.global.idle_timeout,
            throttle_budget: config.global.throttle_budget,
        }
    }
}

/// Registry clients kept across runs, so tokens, connection pools and pacing windows survive
/// from one watch cycle or warm Lambda invocation to the next.
///
/// Each registry's client is kept per config entry: a run that needs a registry with no client
/// yet (a new mapping using a registry no mapping used before) gets one built then; a client
/// whose entry changed is rebuilt; one whose registry left the config is dropped. A client
/// that could not be built (a flaky credential helper, a CA file not there yet) is reported to
/// that run and not kept, so the next run tries again.
#[derive(Default)]
pub struct ClientCache {
    built: tokio::sync::Mutex<HashMap<String, (BuiltFrom, Arc<HttpRegistry>)>>,
}

impl ClientCache {
    /// Clients for every registry `mappings` use, from the cache where their entry is unchanged.
    pub async fn clients(&self, config: &Config, mappings: &[&Mapping]) -> Clients<HttpRegistry> {
        let mut built = self.built.lock().await;
        built.retain(|name, _| config.registries.contains_key(name));
        let mut by_name = HashMap::new();
        for name in used_registries(mappings) {
            let from = BuiltFrom::new(config, name);
            let client = match built.get(name) {
                Some((cached, client)) if *cached == from => Ok(client.clone()),
                _ => {
                    let opened = open(config, name).await;
                    match &opened {
                        Ok(client) => built.insert(name.to_string(), (from, client.clone())),
                        Err(_) => built.remove(name),
                    };
                    opened
                }
            };
            by_name.insert(name.to_string(), client);
        }
        Clients::from_map(by_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::auth::{CredentialSource, Credentials};

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, "test.yaml", |_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn client<'c>(clients: &'c Clients<HttpRegistry>, name: &str) -> &'c HttpRegistry {
        clients.get(name).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    const THREE: &str = "registries:\n  a: { url: \"http://127.0.0.1:9\" }\n  b: { url: \"http://127.0.0.1:10\" }\n  c: { url: \"http://127.0.0.1:11\" }\n";

    #[tokio::test]
    async fn a_registry_first_used_by_a_new_mapping_gets_a_client_and_the_others_are_kept() {
        let cache = ClientCache::default();
        let before = config(&format!("{THREE}mappings:\n  - {{ from: x, source: a, targets: b }}\n"));
        let first = cache.clients(&before, &before.mappings.iter().collect::<Vec<_>>()).await;
        assert!(first.get("c").is_err(), "no mapping uses c yet");

        let after = config(&format!(
            "{THREE}mappings:\n  - {{ from: x, source: a, targets: b }}\n  - {{ from: y, source: c, targets: b }}\n"
        ));
        let second = cache.clients(&after, &after.mappings.iter().collect::<Vec<_>>()).await;
        assert_eq!(client(&second, "c").name(), "127.0.0.1:11");
        for name in ["a", "b"] {
            assert!(std::ptr::eq(client(&first, name), client(&second, name)), "{name} is reused");
        }
    }

    #[tokio::test]
    async fn a_changed_entry_gets_a_new_client() {
        let cache = ClientCache::default();
        let mapping = "mappings:\n  - { from: x, source: a, targets: b }\n";
        let before = config(&format!("{THREE}{mapping}"));
        let first = cache.clients(&before, &before.mappings.iter().collect::<Vec<_>>()).await;
        let after = config(&format!("{}{mapping}", THREE.replace("127.0.0.1:10", "127.0.0.1:12")));
        let second = cache.clients(&after, &after.mappings.iter().collect::<Vec<_>>()).await;
        assert!(std::ptr::eq(client(&first, "a"), client(&second, "a")));
        assert_eq!(client(&second, "b").name(), "127.0.0.1:12");
    }

    #[tokio::test]
    async fn each_entry_gets_its_own_credentials_even_when_two_share_a_host() {
        let config = config(
            "registries:\n  a-secure: { url: \"127.0.0.1:9\", credentials: { username: u, password: p } }\n  b-plain: { url: \"http://127.0.0.1:9\" }\n  c: { url: \"http://127.0.0.1:10\" }\nmappings:\n  - { from: x, source: b-plain, targets: c }\n  - { from: y, source: a-secure, targets: c }\n",
        );
        let mappings: Vec<&Mapping> = config.mappings.iter().collect();
        for clients in
            [Clients::connect(&config, &mappings).await, ClientCache::default().clients(&config, &mappings).await]
        {
            let plain = client(&clients, "b-plain").settings();
            assert!(plain.plain_http);
            assert!(
                matches!(plain.credentials, CredentialSource::Static(Credentials::Anonymous)),
                "{:?}",
                plain.credentials
            );
            let secure = client(&clients, "a-secure").settings();
            assert!(!secure.plain_http);
            assert!(matches!(secure.credentials, CredentialSource::Static(Credentials::Basic { .. })));
        }
    }

    #[tokio::test]
    async fn a_client_that_could_not_be_built_is_tried_again_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let yaml = format!(
            "registries:\n  a: {{ url: \"http://127.0.0.1:9\" }}\n  b: {{ url: \"127.0.0.1:10\", ca_file: \"{}\" }}\nmappings:\n  - {{ from: x, source: a, targets: b }}\n",
            ca_file.display()
        );
        let config = config(&yaml);
        let mappings: Vec<&Mapping> = config.mappings.iter().collect();
        let cache = ClientCache::default();
        let error = cache.clients(&config, &mappings).await.get("b").err().expect("the CA file is missing");
        assert!(error.message.contains("cannot read CA file"), "{error}");

        std::fs::write(&ca_file, "").unwrap();
        let clients = cache.clients(&config, &mappings).await;
        assert_eq!(client(&clients, "b").name(), "127.0.0.1:10", "built once the CA file is there");
    }
}
