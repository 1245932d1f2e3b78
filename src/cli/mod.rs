//! The command-line surface: argument parsing, logging setup, exit codes.
//! `bin/ocync.rs` only builds the runtime and calls [`run`].

mod auth;
mod config_cmds;
mod copy;
mod mirror_config;
mod progress;
mod pull_secret;
pub mod schema;
mod sync;
mod version;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::logging::Chatter;
use progress::Screen;

/// Process exit codes, the contract scripts rely on (the README's "Exit codes" table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything synced or already up to date.
    Success = 0,
    /// Some images failed.
    Partial = 1,
    /// All failed, or a run-level error.
    Failed = 2,
    /// Invalid config, arguments or references.
    Config = 3,
    /// Authentication failed.
    Auth = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// ocync mirrors container images, indexes and OCI artifacts between registries, bit for bit.
#[derive(Debug, Parser)]
#[command(name = "ocync", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides. The AWS SDK's signing and
    /// credential internals and the HTTP stack's headers stay out at any level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No live view on a terminal (`sync`, `copy`): log lines only, as without a terminal.
    #[arg(long, global = true)]
    no_progress: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy one image, index or artifact: `ocync copy SRC DST`.
    Copy(copy::CopyArgs),
    /// Mirror every mapping of a config: `ocync sync --config ocync.yaml`.
    Sync(sync::SyncArgs),
    /// Show what `sync` would do, writing nothing (`sync --dry-run`).
    Plan(sync::SyncArgs),
    /// Sync in a loop, with health and metrics endpoints (Kubernetes).
    Watch(watch::WatchArgs),
    /// Check a config: exit 0, or 3 with every problem and its path.
    Validate(config_cmds::ValidateArgs),
    /// Print a config with `${VAR}`s expanded (secret-looking values masked).
    Expand(config_cmds::ExpandArgs),
    /// Show which tags of a repository a filter selects.
    Tags(config_cmds::TagsArgs),
    /// Check credentials: `ocync auth check --config FILE`.
    Auth(auth::AuthArgs),
    /// Generate mirror configuration for clients: OpenShift IDMS/ITMS, registries.conf.d,
    /// containerd hosts.toml, chart values.
    MirrorConfig(mirror_config::MirrorConfigArgs),
    /// Write fresh ECR tokens into a Kubernetes pull secret (create or merge).
    PullSecret(pull_secret::PullSecretArgs),
    /// Print the version, git commit, target, features and FIPS mode.
    Version,
    /// Print the JSON Schema (2020-12) of ocync.yaml, for editors and CI.
    Schema,
}

/// Options shared by commands that read a config.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Config file with registry settings and credentials.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Parses arguments, sets up logging, runs the command and maps the outcome to an exit code.
pub async fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => Exit::Success,
                _ => Exit::Config,
            }
            .into();
        }
    };
    let screen = progress::Screen::detect(cli.no_progress, cli.log_format == LogFormat::Text);
    init_logging(cli.log_format, cli.verbose, screen, chatter(&cli.command, screen));
    // `version` reports a failed FIPS check itself; every other command refuses to start.
    if !matches!(cli.command, Command::Version)
        && let Err(error) = crate::fips::enforce()
    {
        eprintln!("error: {error}");
        return Exit::Failed.into();
    }
    match cli.command {
        Command::Copy(args) => copy::run(args, screen).await.into(),
        Command::Sync(args) => sync::run(args, screen).await.into(),
        Command::Plan(args) => sync::run(sync::SyncArgs { dry_run: true, ..args }, screen).await.into(),
        Command::Watch(args) => watch::run(args).await.into(),
        Command::Validate(args) => config_cmds::validate(args).await.into(),
        Command::Expand(args) => config_cmds::expand(args).await.into(),
        Command::Tags(args) => config_cmds::tags(args).await.into(),
        Command::Auth(args) => auth::run(args).await.into(),
        Command::MirrorConfig(args) => mirror_config::run(args).await.into(),
        Command::PullSecret(args) => pull_secret::run(args).await.into(),
        Command::Version => version::run().into(),
        Command::Schema => schema::run().into(),
    }
}

impl ConfigArg {
    /// The config, if `--config` was given; problems are printed and become exit code 3.
    async fn load(&self) -> Result<Option<std::sync::Arc<crate::config::Config>>, Exit> {
        match &self.config {
            Some(path) => load_config(&path.to_string_lossy()).await.map(Some),
            None => Ok(None),
        }
    }
}

/// Loads and validates a config from a file or `s3://bucket/key` (through
/// [`crate::config::Source`]), printing every problem; `Err` carries the exit code.
pub(crate) async fn load_config(location: &str) -> Result<std::sync::Arc<crate::config::Config>, Exit> {
    let loaded = match crate::config::Source::open(location).await {
        Ok(source) => source.load().await.map(|loaded| loaded.config),
        Err(error) => Err(error),
    };
    loaded.map_err(|error| {
        eprintln!("error: {error}");
        Exit::Config
    })
}

/// How much the default log level says for `command` on `screen`: a command that draws the
/// live view holds back per-image success lines; a plan on a terminal is only the plan.
fn chatter(command: &Command, screen: Screen) -> Chatter {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match command {
        Command::Plan(_) | Command::Sync(sync::SyncArgs { dry_run: true, .. }) if terminal => Chatter::PlanOnly,
        Command::Sync(args) if screen.live && !args.json => Chatter::UnderLiveView,
        Command::Copy(args) if screen.live && !args.wants_json() => Chatter::UnderLiveView,
        _ => Chatter::Full,
    }
}

fn init_logging(format: LogFormat, verbose: u8, screen: Screen, chatter: Chatter) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    // `-vv` can ask for everything: the filter caps the AWS SDK and HTTP internals that would
    // print tokens, whatever the level or RUST_LOG.
    let default = crate::logging::default_directives(verbose, chatter);
    // Lines go above the live view when one is drawn (`LogWriter` lifts it).
    let layer = tracing_subscriber::fmt::layer().with_writer(progress::LogWriter);
    let registry = tracing_subscriber::registry();
    let _ = match format {
        LogFormat::Text => registry
            .with(layer.with_ansi(screen.colour).with_filter(crate::logging::filter_from_env(&default)))
            .try_init(),
        LogFormat::Json => {
            registry.with(layer.json().with_filter(crate::logging::filter_from_env(&default))).try_init()
        }
    };
}
