//! `ocync validate FILE`, `ocync expand FILE` and `ocync tags REPO`: checking a config and a
//! tag filter before a real run.

use super::{ConfigArg, Exit};
use crate::config::{Config, interpolate, looks_secret};
use crate::filter::{Sort, TagFilter};
use crate::oci::Reference;
use crate::registry::Registry;

/// Arguments of `ocync validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The config file.
    file: std::path::PathBuf,
}

/// Exit 0 with a one-line summary, or 3 with every problem.
pub fn validate(args: ValidateArgs) -> Exit {
    match Config::load(&args.file) {
        Ok(config) => {
            println!(
                "{}: valid ({} registries, {} mappings)",
                args.file.display(),
                config.registries.len(),
                config.mappings.len()
            );
            Exit::Success
        }
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Config
        }
    }
}

/// Arguments of `ocync expand`.
#[derive(Debug, clap::Args)]
pub struct ExpandArgs {
    /// The config file.
    file: std::path::PathBuf,
    /// Print the values of variables whose names look secret (TOKEN, PASSWORD, KEY, …).
    #[arg(long)]
    show_secrets: bool,
}

/// Prints the config with variables expanded; secret-looking ones stay masked unless asked.
pub fn expand(args: ExpandArgs) -> Exit {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read config {}: {error}", args.file.display());
            return Exit::Config;
        }
    };
    let show_secrets = args.show_secrets;
    let lookup = |name: &str| {
        let value = std::env::var(name).ok()?;
        Some(if looks_secret(name) && !show_secrets && !value.is_empty() { format!("<{name} hidden>") } else { value })
    };
    match interpolate(&text, lookup) {
        Ok(expanded) => {
            print!("{expanded}");
            Exit::Success
        }
        Err(errors) => {
            for error in errors {
                eprintln!("error: {}: {error}", args.file.display());
            }
            Exit::Config
        }
    }
}

/// Arguments of `ocync tags`.
#[derive(Debug, clap::Args)]
pub struct TagsArgs {
    /// Repository: `[http://]host[:port]/repository`.
    repository: String,
    /// Glob patterns to keep (repeatable; any match keeps).
    #[arg(long)]
    glob: Vec<String>,
    /// Semver range such as ">=1.25, <2".
    #[arg(long)]
    semver: Option<String>,
    /// Glob patterns to drop (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// `semver` or `alpha`.
    #[arg(long, value_parser = ["semver", "alpha"])]
    sort: Option<String>,
    /// Keep the newest N.
    #[arg(long)]
    latest: Option<usize>,
    /// Let prereleases count.
    #[arg(long)]
    include_prereleases: bool,
    /// Also list dropped tags with the reason.
    #[arg(long)]
    verbose_drops: bool,
    #[command(flatten)]
    config: ConfigArg,
    /// Print the selection as JSON.
    #[arg(long)]
    json: bool,
}

/// Lists a repository's tags and prints what the filter keeps (and, asked, what it drops).
pub async fn tags(args: TagsArgs) -> Exit {
    let reference = match Reference::parse_bare(&args.repository) {
        Ok(reference) => reference,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Config;
        }
    };
    let filter = TagFilter {
        globs: args.glob,
        semver: args.semver,
        exclude: args.exclude,
        sort: args.sort.map(|s| if s == "alpha" { Sort::Alpha } else { Sort::Semver }),
        latest: args.latest,
        min_tags: None,
        include_prereleases: args.include_prereleases,
    };
    let compiled = match filter.compile() {
        Ok(compiled) => compiled,
        Err(error) => {
            eprintln!("error: --{error}");
            return Exit::Config;
        }
    };
    let config = match args.config.load().await {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let listed = async {
        let registry = crate::connect::open(&reference.registry, reference.plain_http, config.as_deref()).await?;
        registry.list_tags(&reference.repository).await
    }
    .await;
    let (listed, invalid_tags) = match listed {
        Ok(tags) => crate::plan::valid_tags(&reference.registry, &reference.repository, tags),
        Err(error) => {
            eprintln!("error: {error}");
            return if error.is_auth() { Exit::Auth } else { Exit::Failed };
        }
    };
    let selection = compiled.select(&listed);
    if args.json {
        println!("{}", serde_json::to_string(&selection).expect("selections serialise"));
    } else {
        for tag in &selection.kept {
            println!("{tag}");
        }
        if args.verbose_drops {
            for dropped in &selection.dropped {
                eprintln!("dropped {}: {}", dropped.tag, dropped.reason);
            }
        }
        eprintln!("{} of {} tags selected", selection.kept.len(), listed.len());
    }
    if invalid_tags > 0 {
        // Like a sync, a source listing names that are not tags does not pass unnoticed.
        eprintln!("warning: the registry listed {invalid_tags} invalid tags; they were dropped");
        return Exit::Partial;
    }
    Exit::Success
}
