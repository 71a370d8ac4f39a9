//! igbridge test kit: one set of strict fakes of the platforms for every test in the repository.
//!
//! [`meta::FakeMeta`] plays the Graph API (OAuth code exchange, `/me/accounts` paging, Page
//! subscriptions, the Send API, profiles, permission revocation) and [`livechat::FakeLivechat`]
//! plays LiveChat (accounts: code exchange, refresh, revocation, the agent-token customer grant;
//! the Customer Chat Web API v3.6 with chats, threads and events). Both validate requests the way
//! the platforms do (field names, required parameters, token kinds, `appsecret_proof`, size
//! limits, paging) and answer with the recorded fixtures under `fixtures/`, each of which cites
//! its source. A refused request is recorded, so a test can assert that nothing was refused.
//!
//! Beside the fakes: [`moto`] (the moto server harness every AWS adapter test uses), [`bridge`]
//! (the in-process bridge on memory backends that the workflow suites drive), [`samples`] (the
//! sample events under `events/`), [`store::FaultyStore`] and [`crash`] (faults and kills).
//!
//! Both fakes run on wiremock servers: a test may still mount its own `Mock` with a higher priority
//! (a lower number) to inject a fault the fakes do not model.

pub mod bridge;
pub mod calls;
pub mod crash;
pub mod fixtures;
pub mod journey;
pub mod lambda;
pub mod livechat;
pub mod meta;
pub mod moto;
pub mod records;
pub mod samples;
pub mod store;

pub use fixtures::{Fixture, fixture};

/// Asserts that neither platform refused a request the code under test made.
pub fn assert_nothing_refused(graph: &meta::FakeMeta, livechat: &livechat::FakeLivechat) {
    assert_eq!(graph.refusals(), Vec::<String>::new(), "Graph refused");
    assert_eq!(
        livechat.refusals(),
        Vec::<String>::new(),
        "LiveChat refused"
    );
}
