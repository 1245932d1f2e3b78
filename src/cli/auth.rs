//! `ocync auth check`: for every registry in a config, obtain real credentials and make one
//! authenticated request with the scope a sync would need (pull at sources, push at targets).

use serde::Serialize;

use super::{Exit, load_config};
use crate::config::Config;
use crate::registry::Registry;

/// Arguments of `ocync auth`.
#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuthCommand {
    /// Check credentials and access for every registry of a config.
    Check {
        /// The config file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: String,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// One registry's result.
#[derive(Debug, Serialize)]
struct Check {
    registry: String,
    host: String,
    /// What was tried: `pull team/app`, `push mirror/app`, `ping`.
    access: String,
    ok: bool,
    detail: String,
}

/// Runs the checks; exit 4 if any fails.
pub async fn run(args: AuthArgs) -> Exit {
    let AuthCommand::Check { config, json } = args.command;
    let config = match load_config(&config).await {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let checks = futures_util::future::join_all(config.registries.keys().map(|name| check(&config, name))).await;
    if json {
        println!("{}", serde_json::to_string(&checks).expect("checks serialise"));
    } else {
        for check in &checks {
            let status = if check.ok { "OK  " } else { "FAIL" };
            println!("{status} {} ({}): {}: {}", check.registry, check.host, check.access, check.detail);
        }
    }
    if checks.iter().all(|c| c.ok) { Exit::Success } else { Exit::Auth }
}

/// The access a sync needs from `name`: push where it is a target, else pull where it is a
/// source, else only a ping of `/v2/`.
async fn check(config: &Config, name: &str) -> Check {
    let entry = &config.registries[name];
    let target_of = config.mappings.iter().find(|m| m.targets.iter().any(|t| t == name));
    let source_of = config.mappings.iter().find(|m| m.source == name);
    let (access, repository, push) = match (target_of, source_of) {
        (Some(mapping), _) => {
            let repository = mapping.repository_at(name);
            (format!("push {repository}"), Some(repository.to_string()), true)
        }
        (None, Some(mapping)) => (format!("pull {}", mapping.from), Some(mapping.from.clone()), false),
        (None, None) => ("ping".to_string(), None, false),
    };
    let result =
        async {
            let registry = crate::connect::open_entry(entry, config).await?;
            match (&repository, push) {
                (Some(repository), true) => registry.check_push(repository).await,
                (Some(repository), false) => match registry.list_tags(repository).await {
                    Ok(tags) => Ok(format!("{} tags visible", tags.len())),
                    Err(error) if error.is_not_found() => {
                        Ok("authenticated, but the repository does not exist".to_string())
                    }
                    Err(error) => Err(error),
                },
                (None, _) => {
                    registry.list_tags("ocync-auth-check").await.map(|_| "authenticated".into()).or_else(|error| {
                        if error.is_not_found() { Ok("authenticated".to_string()) } else { Err(error) }
                    })
                }
            }
        }
        .await;
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(error) => (false, error.to_string()),
    };
    Check { registry: name.to_string(), host: entry.host.clone(), access, ok, detail }
}
