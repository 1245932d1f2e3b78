//! The planning benchmark: a config of many mappings with many tags each, planned against the
//! in-memory registry, to show that planning time and memory grow linearly with the tag count.
//! Run by `ocync-testdata plan-scale` (infra/bench); not a test.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Mapping};
use crate::registry::memory::MemoryRegistry;
use crate::sync::{self, Clients};
use crate::testdata::{self, Built};

/// One measured planning run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanScale {
    /// Mappings in the config.
    pub mappings: usize,
    /// Tags per source repository.
    pub tags_per_mapping: usize,
    /// Tags planned in all.
    pub tags: usize,
    /// Time to parse the config and plan every mapping.
    pub seconds: f64,
    /// Peak resident memory of the process so far, in MiB (Linux `VmHWM`).
    pub peak_rss_mib: f64,
}

/// Plans `mappings` × `tags` against in-memory registries and measures it.
pub async fn plan_scale(mappings: usize, tags: usize) -> PlanScale {
    let source = Arc::new(MemoryRegistry::new("source.test"));
    let target = Arc::new(MemoryRegistry::new("target.test"));
    // Every tag points at one small image: the benchmark measures planning, not storage.
    let image = Built::Image(testdata::image(&[(1, 64)], ("linux", "amd64"), false));
    for mapping in 0..mappings {
        for tag in 0..tags {
            source.insert(&format!("team/app-{mapping}"), &format!("1.{tag}.0"), &image);
        }
    }
    let mut yaml = String::from(
        "registries:\n  src: { url: source.test }\n  dst: { url: target.test }\ndefaults:\n  source: src\n  targets: dst\n  tags: { sort: semver, latest: 1000 }\nmappings:\n",
    );
    for mapping in 0..mappings {
        yaml += &format!("  - from: team/app-{mapping}\n    to: mirror/app-{mapping}\n");
    }
    let clients = Clients::new([("src".to_string(), Ok(source)), ("dst".to_string(), Ok(target))]);
    let started = Instant::now();
    let config = Config::parse(&yaml, "plan-scale.yaml", |_| None).expect("the generated config is valid");
    let selected: Vec<&Mapping> = config.mappings.iter().collect();
    let plan = sync::plan(&selected, &clients, false).await;
    let seconds = started.elapsed().as_secs_f64();
    let planned: usize = plan.mappings.iter().map(|m| m.images.len()).sum();
    assert_eq!(planned, mappings * tags, "every tag is planned");
    PlanScale { mappings, tags_per_mapping: tags, tags: planned, seconds, peak_rss_mib: peak_rss_mib() }
}

/// Linux's high-water mark of resident memory, in MiB; 0 elsewhere.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
