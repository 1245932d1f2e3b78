//! The worker's tunables and the environment variables that set them. A variable that is set
//! but unreadable stops the function at start, naming the variable, rather than being ignored.

use std::time::Duration;

/// How an invocation paces itself against its deadline and when it continues a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// No new transfer starts once the remaining time is below this (at most a third of the
    /// invocation's time).
    pub deadline_margin: Duration,
    /// Transfers still in flight when the remaining time is below this (at most a tenth of the
    /// invocation's time) are abandoned, so the function answers before it is killed and the
    /// records that did finish are not redelivered.
    pub finish_margin: Duration,
    /// SQS records synced at once.
    pub records_at_once: usize,
    /// Bytes of blobs landed at a target that count as progress for a record whose images did
    /// not complete, so the mapping is continued rather than redelivered.
    pub continuation_min_bytes: u64,
    /// Continuations per chain; a record that arrives with this many is not continued again.
    pub max_continuations: u32,
}

/// 1 MiB: a single small layer landing is progress, while an invocation that moved only
/// manifests or HEADs (a stalled source) is not.
pub const CONTINUATION_MIN_BYTES: u64 = 1024 * 1024;

/// 100 invocations of the longest timeout are 25 hours of work for one mapping: beyond any
/// sane first sync, short of a chain that never ends.
pub const MAX_CONTINUATIONS: u32 = 100;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            deadline_margin: Duration::from_secs(30),
            finish_margin: Duration::from_secs(3),
            records_at_once: 4,
            continuation_min_bytes: CONTINUATION_MIN_BYTES,
            max_continuations: MAX_CONTINUATIONS,
        }
    }
}

/// An environment variable that is set to something unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable} is `{value}`, expected {expected}")]
pub struct Error {
    /// The variable.
    pub variable: &'static str,
    /// What it holds.
    pub value: String,
    /// What it should hold.
    pub expected: &'static str,
}

impl Settings {
    /// The defaults, overridden by `OCYNC_DEADLINE_MARGIN_SECONDS`, `OCYNC_FINISH_MARGIN_SECONDS`,
    /// `OCYNC_RECORD_CONCURRENCY`, `OCYNC_CONTINUATION_MIN_BYTES` and `OCYNC_MAX_CONTINUATIONS`
    /// as `lookup` finds them (empty counts as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let read = |variable: &'static str| lookup(variable).filter(|v| !v.trim().is_empty()).map(|v| (variable, v));
        let mut settings = Settings::default();
        if let Some((variable, value)) = read("OCYNC_DEADLINE_MARGIN_SECONDS") {
            settings.deadline_margin = Duration::from_secs(number(variable, value, "whole seconds")?);
        }
        if let Some((variable, value)) = read("OCYNC_FINISH_MARGIN_SECONDS") {
            settings.finish_margin = Duration::from_secs(number(variable, value, "whole seconds")?);
        }
        if let Some((variable, value)) = read("OCYNC_RECORD_CONCURRENCY") {
            settings.records_at_once = number(variable, value, "a number of records")?;
        }
        if let Some((variable, value)) = read("OCYNC_CONTINUATION_MIN_BYTES") {
            settings.continuation_min_bytes = number(variable, value, "a number of bytes")?;
        }
        if let Some((variable, value)) = read("OCYNC_MAX_CONTINUATIONS") {
            settings.max_continuations = number(variable, value, "a number of continuations")?;
        }
        Ok(settings)
    }
}

fn number<T: std::str::FromStr>(variable: &'static str, value: String, expected: &'static str) -> Result<T, Error> {
    value.trim().parse().map_err(|_| Error { variable, value, expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        Settings::from_lookup(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let settings = from(&[("OCYNC_MAX_CONTINUATIONS", "")]).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!((settings.continuation_min_bytes, settings.max_continuations), (1024 * 1024, 100));
    }

    #[test]
    fn every_variable_sets_its_setting() {
        let settings = from(&[
            ("OCYNC_DEADLINE_MARGIN_SECONDS", "60"),
            ("OCYNC_FINISH_MARGIN_SECONDS", "5"),
            ("OCYNC_RECORD_CONCURRENCY", "2"),
            ("OCYNC_CONTINUATION_MIN_BYTES", "1"),
            ("OCYNC_MAX_CONTINUATIONS", "7"),
        ])
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                deadline_margin: Duration::from_secs(60),
                finish_margin: Duration::from_secs(5),
                records_at_once: 2,
                continuation_min_bytes: 1,
                max_continuations: 7,
            }
        );
    }

    #[test]
    fn an_unreadable_value_names_its_variable() {
        let error = from(&[("OCYNC_MAX_CONTINUATIONS", "lots")]).unwrap_err();
        assert_eq!(error.to_string(), "OCYNC_MAX_CONTINUATIONS is `lots`, expected a number of continuations");
        let error = from(&[("OCYNC_CONTINUATION_MIN_BYTES", "1MiB")]).unwrap_err();
        assert_eq!(error.variable, "OCYNC_CONTINUATION_MIN_BYTES");
    }
}
