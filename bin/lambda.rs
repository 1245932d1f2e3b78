//! The ocync Lambda function (`bootstrap`): builds the handler once per container, then serves
//! invocations through the Lambda runtime. Build: `cargo lambda build --release --arm64
//! --features lambda --bin bootstrap`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use ocync::lambda::Handler;
use serde_json::Value;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The same filter as the CLI: the function's RUST_LOG cannot turn on the AWS SDK's
    // signing or credential traces (the role's session token) or response dumps (ECR tokens).
    let filter = ocync::logging::filter_from_env("ocync=info,bootstrap=info,warn");
    let layer = tracing_subscriber::fmt::layer().json().with_current_span(false).without_time();
    tracing_subscriber::registry().with(layer.with_filter(filter)).init();
    // A `fips` build refuses to start outside FIPS mode, as the CLI does.
    ocync::fips::enforce()?;
    let started = Instant::now();
    let handler = Handler::from_environment().await?;
    tracing::info!(init_ms = started.elapsed().as_millis() as u64, "handler ready");
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = instant_of(event.context.deadline);
        // `lambda::Error` becomes the runtime's diagnostic, its kind the `errorType`.
        handler.handle(event.payload, deadline).await
    }))
    .await
}

/// The invocation deadline (milliseconds since the epoch) as an `Instant`. A deadline already
/// past (some local emulators send none) means Lambda's longest timeout, 15 minutes.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let remaining = match deadline_ms.checked_sub(now_ms) {
        Some(left) if left > 0 => Duration::from_millis(left),
        _ => {
            tracing::warn!(deadline_ms, now_ms, "the invocation has no usable deadline; assuming 15 minutes");
            Duration::from_secs(15 * 60)
        }
    };
    Instant::now() + remaining
}
