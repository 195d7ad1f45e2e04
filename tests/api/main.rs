//! Integration tests: the real service, real ceremonies, SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authenticator;
mod dpop;
mod helpers;
mod layers;

mod account;
mod admin;
mod apikeys;
mod backup;
mod base_path;
mod billing;
mod bounds;
mod devices;
mod enrollment;
mod faults;
mod hardening;
mod licenses;
mod openapi;
mod operations;
mod paddle;
mod process;
mod properties;
mod recovery;
mod registration;
mod rekey;
mod release;
mod scale;
mod signin;
mod startup;
mod status;
mod takeover;
mod upgrade;
mod webhooks;
