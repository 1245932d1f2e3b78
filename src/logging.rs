//! The log filter shared by the `ocync` command and the Lambda function: what the user asks
//! for (`RUST_LOG`, `-v`), intersected with caps on the dependencies whose detailed levels
//! print secrets. The caps are a second filter, not extra directives, so no directive can lift
//! them: not `RUST_LOG=trace`, not a more specific target (`aws_sigv4::http_request=trace`),
//! not a span or field filter.
//!
//! The default levels depend on what stderr shows ([`Chatter`]): under a live view the
//! per-image success lines wait for `-v`, and a plan on a terminal prints only the plan.

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::registry::LookupSpan;

/// Targets (matched as prefixes, the longest winning) and the most detailed level each may
/// log at, with what its finer levels would print.
const SECRET_CAPS: &[(&str, LevelFilter)] = &[
    // Every AWS SDK crate. The orchestrator traces whole requests (Authorization,
    // x-amz-security-token) and responses (ECR GetAuthorizationToken's body is a registry
    // password); aws_runtime traces the values of the variables it reads.
    ("aws_", LevelFilter::DEBUG),
    // SigV4 traces the canonical request and string to sign, session token included.
    ("aws_sigv4", LevelFilter::INFO),
    // Credential providers: credential_process command lines at debug, token caches at trace.
    ("aws_config", LevelFilter::INFO),
    // The HTTP stack: headers at trace, redirect URLs with presigned query strings at debug.
    ("hyper", LevelFilter::DEBUG),
    ("h2", LevelFilter::INFO),
    ("reqwest", LevelFilter::INFO),
    ("rustls", LevelFilter::DEBUG),
    ("tower_http", LevelFilter::INFO),
    // The Kubernetes client (`pull-secret`) traces response headers and bodies.
    ("kube_client", LevelFilter::DEBUG),
];

/// How much the default level says, by what stderr shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chatter {
    /// No terminal, or a command without a view: info for ocync, warnings for the rest.
    Full,
    /// A live view is drawn: as [`Chatter::Full`], but a successful image waits for `-v`
    /// (the view counts it); warnings and errors stay.
    UnderLiveView,
    /// A plan on a terminal: the plan itself, and warnings and errors only.
    PlanOnly,
}

/// The directives (`RUST_LOG` syntax) used when `RUST_LOG` is not set: `-v` debug, `-vv` trace.
pub fn default_directives(verbose: u8, chatter: Chatter) -> String {
    match (verbose, chatter) {
        (0, Chatter::Full) => "ocync=info,warn".into(),
        (0, Chatter::UnderLiveView) => format!("ocync=info,{}=warn,warn", crate::engine::IMAGE_OUTCOMES),
        (0, Chatter::PlanOnly) => "ocync=warn,warn".into(),
        (1, _) => "ocync=debug,info".into(),
        _ => "trace".into(),
    }
}

/// Every target at every level, except the [`SECRET_CAPS`] targets above their cap.
pub fn secret_caps() -> Targets {
    Targets::new().with_default(LevelFilter::TRACE).with_targets(SECRET_CAPS.iter().copied())
}

/// The filter for a log layer: `directives` (`RUST_LOG` syntax) when given and valid, else
/// `default`, and in either case [`secret_caps`].
pub fn filter<S>(directives: Option<&str>, default: &str) -> impl Filter<S> + Send + Sync + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let wanted = directives
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    wanted.and(secret_caps())
}

/// [`filter`] with the directives of `RUST_LOG`.
pub fn filter_from_env<S>(default: &str) -> impl Filter<S> + Send + Sync + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    filter(std::env::var("RUST_LOG").ok().as_deref(), default)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn the_caps_stop_secret_printing_levels_and_nothing_else() {
        let caps = secret_caps();
        for (target, level) in [
            ("aws_sigv4::http_request::sign", Level::TRACE),
            ("aws_sigv4::http_request::sign", Level::DEBUG),
            ("aws_smithy_runtime::client::orchestrator", Level::TRACE),
            ("aws_smithy_runtime_api::client::interceptors", Level::TRACE),
            ("aws_runtime::env_config", Level::TRACE),
            ("aws_config::credential_process", Level::DEBUG),
            ("aws_sdk_ecr::operation", Level::TRACE),
            ("hyper_util::client::legacy", Level::TRACE),
            ("h2::codec", Level::DEBUG),
            ("reqwest::redirect", Level::DEBUG),
            ("kube_client::client", Level::TRACE),
        ] {
            assert!(!caps.would_enable(target, &level), "{target} at {level}");
        }
        for (target, level) in [
            ("ocync::registry::http", Level::TRACE),
            ("aws_smithy_runtime::client::retries", Level::DEBUG),
            ("aws_config::meta::credentials", Level::INFO),
            ("aws_sigv4::http_request", Level::WARN),
            ("hyper_util::client::legacy::connect", Level::DEBUG),
            ("lambda_runtime", Level::TRACE),
        ] {
            assert!(caps.would_enable(target, &level), "{target} at {level}");
        }
    }

    /// Collects what a fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_with(directives: Option<&str>, default: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(layer, filter(directives, default)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_sigv4::http_request::sign", canonical_request = "x-amz-security-token:SESSION-1", "calculated signing parameters");
            tracing::debug!(target: "aws_sigv4::http_request::sign", "string to sign SESSION-2");
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator::http", response = "{\"authorizationToken\":\"ECR-TOKEN\"}", "read HTTP response body");
            tracing::trace!(target: "hyper_util::client::legacy::client", "authorization: Basic BASIC-PASSWORD");
            tracing::info!(target: "aws_config::meta::credentials::chain", "loaded credentials from environment");
            tracing::trace!(target: "ocync::registry", "ocync's own trace line");
            tracing::info!(target: "ocync::registry", "ocync's own info line");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn no_directive_lifts_the_caps() {
        for directives in [
            "trace",
            "aws_sigv4=trace,aws_smithy_runtime=trace,hyper_util=trace,trace",
            "aws_sigv4::http_request::sign=trace,aws_smithy_runtime::client::orchestrator=trace,trace",
            "[{canonical_request}]=trace,trace",
        ] {
            let logged = logged_with(Some(directives), "off");
            for secret in ["SESSION-1", "SESSION-2", "ECR-TOKEN", "BASIC-PASSWORD"] {
                assert!(!logged.contains(secret), "{directives}: {secret} logged:\n{logged}");
            }
            assert!(
                logged.contains("ocync's own trace line"),
                "{directives}: the filter still lets trace through:\n{logged}"
            );
            assert!(logged.contains("loaded credentials from environment"), "{directives}:\n{logged}");
        }
    }

    #[test]
    fn under_a_live_view_a_successful_image_waits_for_v_and_problems_stay() {
        let image_logs = |directives: &str| {
            let captured = Captured::default();
            let writer = captured.clone();
            let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::Layer::with_filter(layer, filter(None, directives)));
            let report = crate::engine::ImageReport {
                source: "src.test/team/api:1.0".into(),
                digest: None,
                target_digest: None,
                warnings: vec!["the index was rebuilt".into()],
                signer: None,
                targets: [
                    crate::engine::Outcome::Synced,
                    crate::engine::Outcome::Failed { error: "manifest unknown".into(), auth: false },
                ]
                .into_iter()
                .map(|outcome| crate::engine::TargetReport {
                    target: "dst.test/team/api:1.0".into(),
                    outcome,
                    stats: crate::engine::StatsSnapshot::default(),
                    duration_ms: 0,
                })
                .collect(),
            };
            tracing::subscriber::with_default(subscriber, || report.log());
            String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
        };
        let live = image_logs(&default_directives(0, Chatter::UnderLiveView));
        assert!(!live.contains("image copied"), "{live}");
        assert!(live.contains("image failed") && live.contains("copied with a change"), "{live}");
        let full = image_logs(&default_directives(0, Chatter::Full));
        assert!(full.contains("image copied") && full.contains("image failed"), "{full}");
        let verbose = image_logs(&default_directives(1, Chatter::UnderLiveView));
        assert!(verbose.contains("image copied"), "{verbose}");
        let plan = image_logs(&default_directives(0, Chatter::PlanOnly));
        assert!(!plan.contains("image copied") && plan.contains("image failed"), "{plan}");
    }

    #[test]
    fn invalid_or_empty_directives_fall_back_to_the_default() {
        for directives in [Some("ocync=[=bad"), Some("  "), None] {
            let logged = logged_with(directives, "ocync=info");
            assert!(logged.contains("ocync's own info line"), "{directives:?}:\n{logged}");
            assert!(!logged.contains("ocync's own trace line"), "{directives:?}:\n{logged}");
        }
    }
}
