//! The system tests, one module per subject, linked into one test binary: the function binaries
//! under the Lambda Runtime API emulator, the HTTP API front built from template.yaml, SQS
//! event-source mappings on moto, and the pages in headless Chromium. Run one subject with a
//! filter: `cargo test -p igbridge-system-tests --test end_to_end journeys::`.

mod faults;
mod install_browser;
mod journeys;
mod sample_events;
mod status_browser;
mod template;
