//! Several `ocync sync` processes (as several Lambda workers) writing into one registry whose
//! manifest PUTs share a per-account quota: throttling is waited out, not failed, and the
//! workers back off together without talking, so few requests are wasted.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::copy::{describe, seed};
use crate::support::TestRegistry;
use crate::support::proxy::FaultProxy;
use crate::support::quota::ManifestPutQuota;
use crate::support::tools::TempConfig;
use ocync::registry::Registry;
use ocync::testdata::{self, Built};

const WORKERS: usize = 3;
const REPOSITORIES_PER_WORKER: usize = 3;
const TAGS: [&str; 2] = ["v1", "v2"];
/// Manifest PUTs per second the whole "account" may make.
const QUOTA: f64 = 5.0;

#[tokio::test]
async fn workers_sharing_a_manifest_put_quota_all_finish_without_wasting_the_quota() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let quota = Arc::new(ManifestPutQuota::new(QUOTA, Duration::from_secs(1)));
    let rule = quota.clone();
    let proxy = FaultProxy::start(&target.host, move |request| rule.rule(request));

    let mut expected: Vec<(String, &str, Built)> = Vec::new();
    let mut configs = Vec::new();
    for worker in 0..WORKERS {
        let mut mappings = String::new();
        for r in 0..REPOSITORIES_PER_WORKER {
            let repository = format!("team/w{worker}r{r}");
            for (t, tag) in TAGS.iter().enumerate() {
                // A two-platform index: three manifest PUTs per tag, like the corpus.
                let seed_value = 1000 + (worker * 100 + r * 10 + t) as u64 * 7;
                let built = testdata::index(seed_value, &[(0, 4096)], &[("linux", "amd64"), ("linux", "arm64")], false);
                seed(&source, &repository, tag, &built).await;
                expected.push((repository.clone(), tag, built));
            }
            mappings.push_str(&format!("  - from: {repository}\n"));
        }
        configs.push(TempConfig::new(&format!(
            "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\n\
             defaults: {{ source: up, targets: down }}\nmappings:\n{mappings}",
            source.host, proxy.host
        )));
    }

    let started = Instant::now();
    let workers: Vec<_> = configs
        .iter()
        .map(|config| {
            Command::new(env!("CARGO_BIN_EXE_ocync"))
                .args(["sync", "--json", "--config", &config.path])
                .env("RUST_LOG", "ocync=info")
                .env_remove("DOCKER_CONFIG")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start ocync")
        })
        .collect();
    let outputs: Vec<_> = workers.into_iter().map(|w| w.wait_with_output().expect("wait for ocync")).collect();
    let wall = started.elapsed();

    let mut reported_throttles = 0;
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "no worker fails for throttling: {}", describe(output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
        assert_eq!(report["totals"]["failed"], 0, "{report}");
        for entry in report["throttling"].as_array().expect("throttling is a list") {
            assert_eq!(entry["registry"], proxy.host.as_str(), "{entry}");
            reported_throttles += entry["throttled"].as_u64().unwrap();
        }
    }
    let client = target.anonymous_client();
    for (repository, tag, built) in &expected {
        let head = client.head_manifest(repository, tag).await.unwrap();
        assert_eq!(head.map(|h| h.digest), Some(built.digest().clone()), "{repository}:{tag} landed bit for bit");
    }

    let (accepted, throttled) = (quota.accepted(), quota.throttled());
    let puts = (expected.len() * 3) as u64;
    assert!(accepted >= puts, "every manifest went through the quota: {accepted} < {puts}");
    assert_eq!(reported_throttles, throttled, "the reports count every 429 the quota answered");
    // Today's count-bounded, in-step retries wasted ~6 throttles per accepted PUT.
    assert!(throttled * 2 <= accepted, "{throttled} throttled for {accepted} accepted PUTs in {wall:?}");
    let ideal = Duration::from_secs_f64(accepted as f64 / QUOTA);
    println!("workers={WORKERS} accepted={accepted} throttled={throttled} wall={wall:?} ideal={ideal:?}");
}
