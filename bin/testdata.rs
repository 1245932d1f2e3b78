//! `ocync-testdata`: pushes generated test images to a registry, for the demo and the
//! benchmark (no image has to come from the internet).
//!
//! `ocync-testdata http://127.0.0.1:5000/repo:tag index --platforms 2 --base-mib 8 --seed 1`

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ocync::oci::Reference;
use ocync::registry::{HttpRegistry, RegistrySettings};
use ocync::testdata;

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

/// Pushes a generated image to a registry.
#[derive(Parser)]
struct Args {
    /// Where to push: `[http://]host[:port]/repository:tag`.
    reference: String,
    /// What to build.
    #[arg(value_enum, default_value = "index")]
    kind: Kind,
    /// Seed for the image's own layers (same seed, same digests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Platforms in an index (linux/amd64, linux/arm64, …).
    #[arg(long, default_value_t = 2)]
    platforms: usize,
    /// Size of the shared base layer in MiB (seed 0, shared by all images).
    #[arg(long, default_value_t = 1)]
    base_mib: u64,
    /// Size of an extra large layer in MiB, unique to this seed (0 for none).
    #[arg(long, default_value_t = 0)]
    big_mib: u64,
}

const PLATFORMS: [(&str, &str); 4] = [("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le"), ("linux", "s390x")];

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let reference: Reference = match args.reference.parse() {
        Ok(reference) => reference,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(3);
        }
    };
    let mut base = vec![(0, args.base_mib << 20)];
    if args.big_mib > 0 {
        base.push((args.seed.wrapping_add(1 << 40), args.big_mib << 20));
    }
    let platforms = &PLATFORMS[..args.platforms.clamp(1, PLATFORMS.len())];
    let built = match args.kind {
        Kind::Index => testdata::index(args.seed, &base, platforms, false),
        Kind::DockerList => testdata::index(args.seed, &base, platforms, true),
        Kind::Image => testdata::Built::Image(testdata::image(&base, platforms[0], false)),
        Kind::Helm => testdata::Built::Image(testdata::helm_chart("demo", &format!("0.{}.0", args.seed))),
    };
    let mut settings = RegistrySettings::new(&reference.registry);
    settings.plain_http = reference.plain_http;
    let result = async {
        let registry = HttpRegistry::new(settings)?;
        testdata::push(&registry, &reference.repository, &reference.manifest_reference(), &built).await
    }
    .await;
    match result {
        Ok(()) => {
            println!("{reference} {}", built.digest());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
