//! Integration tests: one binary, modules by subject. Real registries, real tools.

#[path = "../support/mod.rs"]
mod support;

mod acr;
mod auth;
mod bounds;
mod chart;
mod config_cmds;
mod copy;
mod ecr;
mod faults;
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
mod secrets;
mod sync;
mod template;
mod terminal;
mod watch;
