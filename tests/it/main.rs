//! Integration tests: one binary, modules by subject. Real registries, real tools.

#[path = "../support/mod.rs"]
mod support;

mod acr;
mod auth;
mod chart;
mod copy;
mod ecr;
mod faults;
mod gar;
mod harness;
mod image;
mod lambda;
mod mirror;
mod origins;
mod pull_secret;
mod referrers;
mod sync;
mod template;
mod watch;
