//! What the services act with: the table, the token cipher, the clock, the lifecycle event
//! publisher and the two platform clients. `app.rs` builds one per start; each service (the two
//! workers, the health check, the lifecycle, the install flow) holds a copy, and so does the
//! customer toolkit they share.

use std::sync::Arc;

use crate::cipher::TokenCipher;
use crate::clock::Clock;
use crate::events::EventPublisher;
use crate::instagram::graph::GraphClient;
use crate::livechat::LivechatClient;
use crate::store::Repo;

/// The services' shared dependencies (each cheap to clone).
#[derive(Clone)]
pub struct Deps {
    /// The table.
    pub repo: Repo,
    /// Tokens at rest.
    pub cipher: TokenCipher,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Lifecycle events (ops' audit trail, repairs, refused grants).
    pub events: Arc<dyn EventPublisher>,
    /// The Graph API.
    pub graph: GraphClient,
    /// LiveChat.
    pub livechat: LivechatClient,
}
