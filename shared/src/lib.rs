//! igbridge core: configuration, domain records, job envelopes, and the ports (store, queue,
//! clock, token cipher) with their AWS and in-memory adapters. The Lambda binaries and the
//! `igbridge` tool only wire these together.

pub mod app;
pub mod aws;
pub mod cipher;
pub mod clock;
pub mod config;
pub mod connection;
pub(crate) mod customer;
pub mod datakey;
pub mod deps;
pub mod domain;
pub mod events;
pub mod function;
pub mod health;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod instagram;
pub mod install;
pub mod jobs;
pub mod lifecycle;
pub mod livechat;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod provision;
pub mod queue;
pub mod relay;
pub mod retry;
pub mod routes;
pub mod store;
pub mod web;
pub mod worker;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Compares two secrets in constant time over their raw bytes. Both sides are hashed first so
/// neither the content nor the length of the expected value leaks through timing.
pub fn secret_eq(expected: &str, candidate: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(candidate.as_bytes());
    bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_eq_compares_exactly() {
        assert!(super::secret_eq("s3cret", "s3cret"));
        assert!(!super::secret_eq("s3cret", "s3creT"));
        assert!(!super::secret_eq("s3cret", "s3cret "));
        assert!(!super::secret_eq("s3cret", ""));
    }
}
