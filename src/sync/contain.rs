//! Containing panics: a task that panics (a bug, or registry data that trips an overflow)
//! fails its own mapping or image in the report, and the run goes on and reports as usual.
//!
//! Without this, a panic inside one mapping's future unwinds through the whole run, so the
//! process dies with exit 101, no report, and the good mappings lost with it. `catch_unwind`
//! at the per-mapping and per-image boundaries turns the panic into a [`Failure`] instead.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::plan::Failure;

/// Runs `task`; a panic inside it becomes a [`Failure`] naming `during` (`discovering tags`)
/// and the panic's message.
///
/// `AssertUnwindSafe` is sound here because nothing the task mutates is trusted afterwards
/// for this task: its result is replaced by the failure, and shared state it may leave
/// half-updated is behind locks that report poisoning (and so fail the next user the same
/// contained way) or is a cache that is only ever added to.
pub async fn contained<T>(during: &str, task: impl Future<Output = T>) -> Result<T, Failure> {
    AssertUnwindSafe(task).catch_unwind().await.map_err(|payload| panic_failure(during, payload.as_ref()))
}

/// The failure a panic while `during` leaves in the report.
fn panic_failure(during: &str, payload: &(dyn Any + Send)) -> Failure {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    // A panic message may quote registry data.
    Failure::new(format!("internal error while {during}: {}", crate::text::sanitize(message)))
}

#[cfg(test)]
mod tests {
    use super::contained;

    #[tokio::test]
    async fn a_panic_becomes_a_failure_with_its_message() {
        let failure = contained("copying", async { panic!("overflow in {}", "\x1b[2Jtoken") }).await.unwrap_err();
        assert_eq!(failure.message, "internal error while copying: overflow in \\x1b[2Jtoken");
        assert!(!failure.auth);
        let failure = contained("copying", async { std::panic::panic_any(7_u8) }).await.unwrap_err();
        assert_eq!(failure.message, "internal error while copying: no message");
    }

    #[tokio::test]
    async fn a_task_that_does_not_panic_gives_its_result() {
        assert_eq!(contained("copying", async { 42 }).await.unwrap(), 42);
    }
}
