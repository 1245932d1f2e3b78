//! Integration tests: one binary, modules by subject. Real registries, real tools.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod copy;
mod faults;
mod harness;
mod sync;
