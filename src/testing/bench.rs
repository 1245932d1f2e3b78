//! The planning benchmark: a config of many mappings with many tags each, planned against the
//! in-memory registry, to show that planning time and memory grow linearly with the tag count.
//! Run by `ocync-testdata plan-scale` (infra/bench); not a test.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Mapping};
use crate::sync::Clients;
use crate::testing::memory::MemoryRegistry;
use crate::testing::testdata::{self, Built};

/// Why a planning benchmark run produced no figure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config the benchmark writes did not parse: a bug in the benchmark, reported rather than panicking.
    #[error("the generated plan-scale config is not valid: {0}")]
    Config(#[from] crate::config::Error),
    /// Fewer (or more) tags were planned than the config asks for, so the timing would measure the wrong work.
    #[error("planned {planned} tags where {mappings} mappings × {tags} tags were expected")]
    Incomplete {
        /// Tags the plan holds.
        planned: usize,
        /// Mappings in the config.
        mappings: usize,
        /// Tags per mapping.
        tags: usize,
    },
}

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
pub async fn plan_scale(mappings: usize, tags: usize) -> Result<PlanScale, Error> {
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
    let config = Config::parse(&yaml, "plan-scale.yaml", |_| None)?;
    let selected: Vec<&Mapping> = config.mappings.iter().collect();
    let plan = crate::plan::discover(&selected, &clients, false).await;
    let seconds = started.elapsed().as_secs_f64();
    let planned: usize = plan.mappings.iter().map(|m| m.images.len()).sum();
    if planned != mappings * tags {
        return Err(Error::Incomplete { planned, mappings, tags });
    }
    Ok(PlanScale { mappings, tags_per_mapping: tags, tags: planned, seconds, peak_rss_mib: peak_rss_mib() })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plan_scale_plans_every_tag_of_every_mapping() {
        let measured = plan_scale(3, 4).await.unwrap();
        assert_eq!((measured.mappings, measured.tags_per_mapping, measured.tags), (3, 4, 12));
    }
}
