//! `ocync watch`: sync in a loop with health and metrics endpoints.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Exit;
use crate::cancel::Cancel;
use crate::config::ConfigLocation;
use crate::watch::{self, WatchOptions};

/// Arguments of `ocync watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The config: a file path or `s3://bucket/key`, read again every cycle.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: String,
    /// Seconds between the end of one cycle and the start of the next.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    interval: u64,
    /// Address of the health and metrics server (`::` for IPv6).
    #[arg(long, default_value = "0.0.0.0")]
    health_bind: IpAddr,
    /// Port of the health and metrics server.
    #[arg(long, default_value_t = 8080)]
    health_port: u16,
    /// After SIGTERM, how long transfers in flight may take to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    grace_period: u64,
    /// A cycle running longer than this fails the liveness check.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    stuck_after: u64,
}

/// Runs until SIGTERM or SIGINT; exit 0 then.
pub async fn run(args: WatchArgs) -> Exit {
    let config = match ConfigLocation::parse(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Config;
        }
    };
    let options = WatchOptions {
        config,
        interval: Duration::from_secs(args.interval),
        health: SocketAddr::new(args.health_bind, args.health_port),
        grace: Duration::from_secs(args.grace_period),
        stuck_after: Duration::from_secs(args.stuck_after),
    };
    let cancel = Cancel::default();
    cancel.on_signals();
    match watch::run(options, cancel).await {
        Ok(()) => Exit::Success,
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Failed
        }
    }
}
