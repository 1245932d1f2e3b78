//! Integration tests: one binary, modules by subject. Real registries, real tools.
//! They use `ocync::testing` and `ocync::lambda`: run them with `cargo test --all-features`.

// Tests unwrap what must hold and print what helps diagnose a failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

// Loud rather than a silently smaller suite when a feature is missing.
#[cfg(not(all(feature = "testing", feature = "lambda")))]
compile_error!("the integration tests need the `testing` and `lambda` features: cargo test --all-features");

#[path = "../support/mod.rs"]
mod support;

mod acr;
mod auth;
mod bounds;
mod chart;
mod checks;
mod config_cmds;
mod continuation;
mod copy;
mod ecr;
mod emf;
mod faults;
mod features;
mod fidelity;
mod foreign;
mod gar;
mod harness;
mod image;
mod lambda;
mod mirror;
mod names;
mod origins;
mod pull_secret;
mod quota;
mod referrers;
mod release;
mod rerun;
mod schema;
mod secrets;
mod sync;
mod template;
mod terminal;
mod verify;
mod watch;
