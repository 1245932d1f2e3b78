//! The ocync Lambda function (`bootstrap`): builds the handler once per container, then serves
//! invocations through the Lambda runtime. Build: `cargo lambda build --release --arm64
//! --features lambda --bin bootstrap`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use ocync::lambda::Handler;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ocync=info,bootstrap=info,warn".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let started = Instant::now();
    let handler = Handler::from_environment().await?;
    tracing::info!(init_ms = started.elapsed().as_millis() as u64, "handler ready");
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = instant_of(event.context.deadline);
        handler.handle(event.payload, deadline).await.map_err(Error::from)
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
