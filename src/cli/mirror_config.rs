//! `ocync mirror-config`: the configuration clients need to pull through the mirror
//! (OpenShift mirror sets, registries.conf.d, containerd hosts, chart values), written to
//! stdout or to files under `--out`.

use std::path::{Path, PathBuf};

use super::{Exit, load_config};
use crate::mirror::{self, Format, Options};

/// Arguments of `ocync mirror-config`.
#[derive(Debug, clap::Args)]
pub struct MirrorConfigArgs {
    /// The config: a file path or `s3://bucket/key`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: String,
    /// What to generate.
    #[arg(long, value_enum)]
    format: Format,
    /// Name of the generated objects (`metadata.name`, the drop-in's and values' file names).
    #[arg(long, default_value = "ocync")]
    name: String,
    /// Write files under DIR (containerd: DIR/certs.d/<host>/hosts.toml) instead of stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// idms, itms, helm-values: nodes never fall back to the upstream registry.
    #[arg(long)]
    never_contact_source: bool,
    /// Another upstream location (`cp.icr.io/cp`) whose repositories live under each target's
    /// root (its `prefix`); repeatable.
    #[arg(long = "extra-source", value_name = "HOST/PATH")]
    extra_sources: Vec<String>,
    /// registries-conf, containerd, helm-values: tag pulls use the mirror too, not only digests.
    #[arg(long)]
    tags: bool,
    /// containerd: leave out mappings it cannot express instead of failing.
    #[arg(long)]
    skip_unrepresentable: bool,
}

/// Generates the files; exit 1 when some mapping cannot be expressed (containerd), 3 on bad input.
pub async fn run(args: MirrorConfigArgs) -> Exit {
    if let Err(message) = check(&args) {
        eprintln!("error: {message}");
        return Exit::Config;
    }
    let config = match load_config(&args.config).await {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let sets = mirror::mirror_sets(&config, &args.extra_sources);
    let options = Options { name: args.name.clone(), never_contact_source: args.never_contact_source, tags: args.tags };
    let rendered = mirror::render(&sets, args.format, &options);
    for refused in &rendered.unrepresentable {
        let level = if args.skip_unrepresentable { "warning: skipped" } else { "error: cannot express" };
        let from: Vec<String> = refused.mappings.iter().map(|i| format!("mappings[{i}]")).collect();
        let from = if from.is_empty() { "--extra-source".to_string() } else { from.join(", ") };
        eprintln!("{level} {} -> {} ({from}): {}", refused.source, refused.mirror, refused.reason);
    }
    if !rendered.unrepresentable.is_empty() && !args.skip_unrepresentable {
        eprintln!(
            "error: {} mirror(s) cannot be expressed as {}; nothing written (--skip-unrepresentable leaves them out)",
            rendered.unrepresentable.len(),
            clap::ValueEnum::to_possible_value(&args.format).expect("no format is hidden").get_name()
        );
        return Exit::Partial;
    }
    match &args.out {
        Some(dir) => write_files(dir, &rendered.files),
        None => {
            let several = rendered.files.len() > 1;
            for (path, text) in &rendered.files {
                if several {
                    println!("# ==> {path}");
                }
                print!("{text}");
            }
            Exit::Success
        }
    }
}

/// Flags that do not fit the format, and names Kubernetes would refuse.
fn check(args: &MirrorConfigArgs) -> Result<(), String> {
    let openshift_or_values = matches!(args.format, Format::Idms | Format::Itms | Format::HelmValues);
    if args.never_contact_source && !openshift_or_values {
        return Err("--never-contact-source applies to idms, itms and helm-values".into());
    }
    if args.tags && matches!(args.format, Format::Idms | Format::Itms) {
        return Err("--tags applies to registries-conf, containerd and helm-values (itms is the tag form)".into());
    }
    let name = &args.name;
    let dns_label = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(dns_label) {
        return Err(format!("--name {name:?}: expected a lowercase DNS name such as `ocync` or `mirror.ocync`"));
    }
    args.extra_sources.iter().try_for_each(|source| mirror::validate_extra_source(source))
}

fn write_files(dir: &Path, files: &[(String, String)]) -> Exit {
    for (relative, text) in files {
        let path = dir.join(relative);
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, text));
        if let Err(error) = written {
            eprintln!("error: cannot write {}: {error}", path.display());
            return Exit::Failed;
        }
        eprintln!("wrote {}", path.display());
    }
    Exit::Success
}
