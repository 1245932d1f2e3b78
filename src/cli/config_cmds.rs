//! `ocync validate [--config] FILE`, `ocync expand [--config] FILE` (a file or `s3://bucket/key`) and `ocync tags REPO`: checking a config and a
//! tag filter before a real run.

use serde_norway::Value;

use super::{ConfigArg, Exit};
use crate::config::{Source, interpolate, looks_secret};
use crate::filter::{Sort, TagFilter};
use crate::oci::Reference;
use crate::registry::Registry;

/// Where `validate` and `expand` read the config: `--config FILE` as `sync` takes it, or the
/// same positionally; a file path or `s3://bucket/key`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ConfigFile {
    /// The config: a file path or `s3://bucket/key`.
    #[arg(value_name = "FILE")]
    file: Option<String>,
    /// The config, as `sync --config` takes it (instead of the positional FILE).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<String>,
}

impl ConfigFile {
    /// The location given (clap requires exactly one of the two forms).
    fn location(&self) -> &str {
        self.config.as_deref().or(self.file.as_deref()).unwrap_or_default()
    }

    /// The source at that location; a malformed `s3://` location is printed (exit 3).
    async fn open(&self) -> Result<Source, Exit> {
        Source::open(self.location()).await.map_err(|error| {
            eprintln!("error: {error}");
            Exit::Config
        })
    }
}

/// Arguments of `ocync validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    config: ConfigFile,
}

/// Exit 0 with a one-line summary, or 3 with every problem.
pub async fn validate(args: ValidateArgs) -> Exit {
    let source = match args.config.open().await {
        Ok(source) => source,
        Err(exit) => return exit,
    };
    match source.load().await {
        Ok(loaded) => {
            println!(
                "{}: valid ({} registries, {} mappings)",
                source.location(),
                loaded.config.registries.len(),
                loaded.config.mappings.len()
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
    #[command(flatten)]
    config: ConfigFile,
    /// Print secrets too: `credentials`, `token` and `password` values and variables whose names
    /// look secret (TOKEN, PASSWORD, KEY, …). The text is then printed exactly as expanded.
    #[arg(long)]
    show_secrets: bool,
}

/// What a masked value is printed as.
const HIDDEN: &str = "<hidden>";

/// Fields whose values are secrets wherever they appear: a registry's `credentials` (all but
/// its `username`) and `token`, and any `password`.
const SECRET_FIELDS: &[&str] = &["credentials", "token", "password"];

/// Prints the config with variables expanded. Unless `--show-secrets`, the values of secret
/// fields are masked whatever variable (or literal) fills them, and so are secret-looking
/// variables anywhere else; the masked document is printed as parsed (comments dropped).
pub async fn expand(args: ExpandArgs) -> Exit {
    let source = match args.config.open().await {
        Ok(source) => source,
        Err(exit) => return exit,
    };
    let location = source.location();
    let text = match source.text().await {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Config;
        }
    };
    let show_secrets = args.show_secrets;
    let lookup = |name: &str| {
        let value = std::env::var(name).ok()?;
        Some(if looks_secret(name) && !show_secrets && !value.is_empty() { format!("<{name} hidden>") } else { value })
    };
    let expanded = match interpolate(&text, lookup) {
        Ok(expanded) => expanded,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {location}: {error}");
            }
            return Exit::Config;
        }
    };
    if show_secrets {
        print!("{expanded}");
        return Exit::Success;
    }
    match masked(&expanded) {
        Ok(document) => {
            print!("{document}");
            Exit::Success
        }
        Err(problem) => {
            eprintln!("error: {location}: {problem}");
            Exit::Config
        }
    }
}

/// The expanded document with every [`SECRET_FIELDS`] value replaced by [`HIDDEN`].
fn masked(expanded: &str) -> Result<String, crate::config::Problem> {
    let mut document: Value = serde_norway::from_str(expanded).map_err(|e| crate::config::problem_from_serde(&e))?;
    mask(&mut document);
    Ok(serde_norway::to_string(&document).expect("a parsed YAML value serialises"))
}

fn mask(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping.iter_mut() {
                match key.as_str() {
                    Some("credentials") if child.is_mapping() => mask_credentials(child),
                    Some(field) if SECRET_FIELDS.contains(&field) => *child = Value::String(HIDDEN.into()),
                    _ => mask(child),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(mask),
        Value::Tagged(tagged) => mask(&mut tagged.value),
        _ => {}
    }
}

/// `credentials: { username, password }`: the user name is shown (it tells which account),
/// everything else hidden, keys a mistyped entry adds included.
fn mask_credentials(credentials: &mut Value) {
    if let Value::Mapping(mapping) = credentials {
        for (key, child) in mapping.iter_mut() {
            if key.as_str() != Some("username") {
                *child = Value::String(HIDDEN.into());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_masked_wherever_they_are_and_whatever_fills_them() {
        let document = "registries:\n  corp: { url: c.io, credentials: { username: bot, password: literal-pass } }\n  \
                        tok: { url: t.io, token: opaque-value }\n  odd: { url: o.io, credentials: mistyped-secret }\n\
                        future: [ { nested: { password: deep-secret } } ]\n";
        let printed = masked(document).unwrap();
        for secret in ["literal-pass", "opaque-value", "mistyped-secret", "deep-secret"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        let value: Value = serde_norway::from_str(&printed).unwrap();
        assert_eq!(value["registries"]["corp"]["credentials"]["username"], Value::from("bot"));
        assert_eq!(value["registries"]["corp"]["credentials"]["password"], Value::from(HIDDEN));
        assert_eq!(value["registries"]["corp"]["url"], Value::from("c.io"));
        assert_eq!(value["future"][0]["nested"]["password"], Value::from(HIDDEN));
    }
}
