//! The tool's tests, one module per subject, linked into one test binary.

mod e2e;
mod provision;
