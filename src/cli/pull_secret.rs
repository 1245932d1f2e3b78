//! `ocync pull-secret`: fresh ECR tokens into a Kubernetes pull secret (or stdout).

use super::{Exit, load_config};
use crate::pull_secret::{self, Error, SecretRef, dockerconfig, kubernetes};

/// Arguments of `ocync pull-secret`.
#[derive(Debug, clap::Args)]
pub struct PullSecretArgs {
    /// The Secret to create or merge into: NAMESPACE/NAME (`openshift-config/pull-secret`).
    #[arg(long, value_name = "NAMESPACE/NAME", required_unless_present = "print")]
    secret: Option<String>,
    /// An ECR registry host to write; repeatable. Default: every ECR target in --config.
    #[arg(long = "registry", value_name = "HOST")]
    registries: Vec<String>,
    /// Config (file or `s3://bucket/key`): its ECR targets, and `auth_type`/`aws_profile` by host.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<String>,
    /// Print the dockerconfigjson on stdout instead of writing a Secret.
    #[arg(long)]
    print: bool,
}

/// Exit 0 when written, 3 for bad arguments, 4 when AWS or the Kubernetes API refuses us.
pub async fn run(args: PullSecretArgs) -> Exit {
    match write(args).await {
        Ok(()) => Exit::Success,
        Err(exit) => exit,
    }
}

fn fail(error: &Error) -> Exit {
    eprintln!("error: {error}");
    if error.is_usage() {
        Exit::Config
    } else if error.is_auth() {
        Exit::Auth
    } else {
        Exit::Failed
    }
}

async fn write(args: PullSecretArgs) -> Result<(), Exit> {
    let secret: Option<SecretRef> = args.secret.as_deref().map(str::parse).transpose().map_err(|e| fail(&e))?;
    let config = match &args.config {
        Some(location) => Some(load_config(location).await?),
        None => None,
    };
    let registries = pull_secret::registries(&args.registries, config.as_deref()).map_err(|e| fail(&e))?;
    let entries = pull_secret::entries(&registries).await.map_err(|e| fail(&e))?;
    let hosts: Vec<&str> = entries.iter().map(|(host, _)| host.as_str()).collect();
    match secret {
        Some(secret) if !args.print => {
            let outcome = kubernetes::write(&secret, &entries).await.map_err(|e| fail(&e.into()))?;
            let verb = if outcome == kubernetes::WriteOutcome::Created { "created" } else { "updated" };
            tracing::info!(%secret, registries = hosts.len(), "pull secret {verb}");
            println!("Secret {secret} {verb}: {}", hosts.join(", "));
        }
        _ => println!("{}", dockerconfig::merge(None, &entries).map_err(|_| Exit::Failed)?),
    }
    Ok(())
}
