//! The core crate's integration tests, one module per subject, linked into one test binary (each
//! test binary links the AWS SDK; one binary instead of sixteen saves most of a clean build's link
//! time). Run one subject with a filter: `cargo test -p igbridge-shared --test suite storms::`.

mod architecture;
mod concurrency;
mod config_secrets;
mod crash_every_step;
mod crypto_shredding;
mod exactly_once;
mod fuzz;
mod health;
mod instagram_to_livechat;
mod install;
mod lifecycle;
mod livechat_to_instagram;
mod log_privacy;
mod purge_at_scale;
mod queue_contract;
mod store_contract;
mod storms;
