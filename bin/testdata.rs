//! `ocync-testdata`: test data for the demo and the benchmark, generated locally (no image has
//! to come from the internet), and the planning benchmark.
//!
//! ```text
//! ocync-testdata push http://127.0.0.1:5000/repo:tag index --platforms 2 --base-mib 8 --seed 1
//! ocync-testdata corpus http://127.0.0.1:5000 --repositories 16 --tags 3 --base-mib 20 [--changed 2 --generation 1]
//! ocync-testdata plan-scale --mappings 2000 --tags 50
//! ```

// A command-line tool: its results go to stdout, its errors to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ocync::oci::Reference;
use ocync::registry::{HttpRegistry, RegistrySettings};
use ocync::testing::testdata;

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// A multi-platform OCI index.
    Index,
    /// A Docker manifest list.
    DockerList,
    /// A single-platform OCI image.
    Image,
    /// A Helm chart artifact.
    Helm,
}

/// Generates test images and runs the planning benchmark.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push one generated image.
    Push {
        /// Where: `[http://]host[:port]/repository:tag`.
        reference: String,
        /// What to build.
        #[arg(value_enum, default_value = "index")]
        kind: Kind,
        /// Seed for the image's own layers (same seed, same digests).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Platforms in an index.
        #[arg(long, default_value_t = 2)]
        platforms: usize,
        /// Size of the shared base layer in MiB (seed 0, shared by all images).
        #[arg(long, default_value_t = 1)]
        base_mib: u64,
        /// Size of an extra large layer in MiB, unique to this seed (0 for none).
        #[arg(long, default_value_t = 0)]
        big_mib: u64,
    },
    /// Push the benchmark corpus: repositories × tags of 2-platform indexes sharing base layers.
    Corpus {
        /// The registry: `[http://]host[:port]`.
        registry: String,
        /// Repositories (`bench/repo-NN`).
        #[arg(long, default_value_t = 16)]
        repositories: u64,
        /// Tags per repository (`1.0.T`).
        #[arg(long, default_value_t = 3)]
        tags: u64,
        /// Size of the first shared base layer in MiB (the second is half of it).
        #[arg(long, default_value_t = 20)]
        base_mib: u64,
        /// Re-push only the first N tags, with new top layers.
        #[arg(long)]
        changed: Option<u64>,
        /// Generation of the re-pushed top layers.
        #[arg(long, default_value_t = 1)]
        generation: u64,
    },
    /// Plan mappings × tags against the in-memory registry; prints time and memory as JSON.
    PlanScale {
        /// Mappings in the config.
        #[arg(long, default_value_t = 2000)]
        mappings: usize,
        /// Tags per mapping.
        #[arg(long, default_value_t = 50)]
        tags: usize,
    },
}

const PLATFORMS: [(&str, &str); 4] = [("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le"), ("linux", "s390x")];

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Args::parse().command {
        Command::Push { reference, kind, seed, platforms, base_mib, big_mib } => {
            push(&reference, kind, seed, platforms, base_mib, big_mib).await
        }
        Command::Corpus { registry, repositories, tags, base_mib, changed, generation } => {
            let plain_http = registry.starts_with("http://");
            let host = registry.trim_start_matches("http://").trim_start_matches("https://");
            let mut settings = RegistrySettings::new(host);
            settings.plain_http = plain_http;
            async {
                let client = HttpRegistry::new(settings)?;
                let changed = changed.map(|count| (count, generation));
                testdata::push_corpus(&client, repositories, tags, base_mib << 20, changed).await
            }
            .await
            .map(|pushed| println!("{pushed} images pushed to {registry}"))
            .map_err(|e| e.to_string())
        }
        Command::PlanScale { mappings, tags } => ocync::testing::bench::plan_scale(mappings, tags)
            .await
            .map(|measured| println!("{}", serde_json::to_string(&measured).expect("measurements serialise")))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn push(
    reference: &str,
    kind: Kind,
    seed: u64,
    platforms: usize,
    base_mib: u64,
    big_mib: u64,
) -> Result<(), String> {
    let reference: Reference = reference.parse().map_err(|e: ocync::oci::ReferenceError| e.to_string())?;
    let mut base = vec![(0, base_mib << 20)];
    if big_mib > 0 {
        base.push((seed.wrapping_add(1 << 40), big_mib << 20));
    }
    let platforms = &PLATFORMS[..platforms.clamp(1, PLATFORMS.len())];
    let built = match kind {
        Kind::Index => testdata::index(seed, &base, platforms, false),
        Kind::DockerList => testdata::index(seed, &base, platforms, true),
        Kind::Image => testdata::Built::Image(testdata::image(&base, platforms[0], false)),
        Kind::Helm => testdata::Built::Image(testdata::helm_chart("demo", &format!("0.{seed}.0"))),
    };
    let mut settings = RegistrySettings::new(&reference.registry);
    settings.plain_http = reference.plain_http;
    let registry = HttpRegistry::new(settings).map_err(|e| e.to_string())?;
    testdata::push(&registry, &reference.repository, &reference.manifest_reference(), &built)
        .await
        .map_err(|e| e.to_string())?;
    println!("{reference} {}", built.digest());
    Ok(())
}
