//! What each Lambda function needs: the one place that says it. `Config::for_function` loads only
//! these settings (a setting a function does not use may be absent), `app::lambda` builds only
//! these clients, template.yaml gives each function exactly this environment, these secrets and
//! these resources in its role, and each function crate enables the matching `shared` features.
//! tests/tests/end_to_end/template.rs keeps all of them in step.

/// A setting read from the environment or, for secrets, from the function's Secrets Manager
/// secrets.
pub type SettingName = &'static str;

/// Settings that are secrets: held in Secrets Manager, one secret each, never in the environment.
pub const SECRET_SETTINGS: &[SettingName] = &[
    "META_APP_SECRET",
    "META_VERIFY_TOKEN",
    "LIVECHAT_CLIENT_SECRET",
    "LIVECHAT_WEBHOOK_SECRET",
    "LIVECHAT_APP_WEBHOOK_TOKEN",
    "TOKEN_ENCRYPTION_KEY",
];

/// Plain settings without a default: a function that uses one cannot start without it.
pub const REQUIRED_PLAIN_SETTINGS: &[SettingName] =
    &["PUBLIC_BASE_URL", "META_APP_ID", "LIVECHAT_CLIENT_ID"];

/// An AWS resource a function reaches, and the setting that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// The DynamoDB table (`TABLE_NAME`).
    Table,
    /// The to-livechat FIFO queue.
    ToLivechatQueue,
    /// Its dead-letter queue.
    ToLivechatDlq,
    /// The to-instagram FIFO queue.
    ToInstagramQueue,
    /// Its dead-letter queue.
    ToInstagramDlq,
    /// The EventBridge bus for lifecycle events.
    EventBus,
}

impl Resource {
    /// The setting naming it.
    pub fn setting(self) -> SettingName {
        match self {
            Resource::Table => "TABLE_NAME",
            Resource::ToLivechatQueue => "TO_LIVECHAT_QUEUE_URL",
            Resource::ToLivechatDlq => "TO_LIVECHAT_DLQ_URL",
            Resource::ToInstagramQueue => "TO_INSTAGRAM_QUEUE_URL",
            Resource::ToInstagramDlq => "TO_INSTAGRAM_DLQ_URL",
            Resource::EventBus => "EVENT_BUS_NAME",
        }
    }

    /// Whether it is one of the four queues.
    pub fn is_queue(self) -> bool {
        !matches!(self, Resource::Table | Resource::EventBus)
    }
}

/// A Lambda function of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// `/install` and the OAuth callbacks.
    OauthInstall,
    /// Meta's webhook: verify, split, enqueue.
    InstagramWebhook,
    /// LiveChat's chat webhook: verify, enqueue.
    LivechatWebhook,
    /// LiveChat's app webhook and Meta's deauthorize and data-deletion callbacks.
    Uninstall,
    /// The to-livechat queue worker.
    InstagramToLivechat,
    /// The to-instagram queue worker.
    LivechatToInstagram,
    /// The scheduled purge.
    DeletionSweeper,
    /// The scheduled health check, and the replays its repairs (and the status page) ask for.
    ConnectionHealth,
}

/// What one function needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Secret settings it holds (its `APP_SECRET_IDS`).
    pub secrets: &'static [SettingName],
    /// Plain settings it requires (no default).
    pub settings: &'static [SettingName],
    /// Plain settings with a default it may be given (the platforms' base URLs, API version).
    pub optional: &'static [SettingName],
    /// The AWS resources it reaches.
    pub resources: &'static [Resource],
}

/// Graph and LiveChat endpoints: whoever calls both.
const PLATFORMS: &[SettingName] = &[
    "GRAPH_API_VERSION",
    "GRAPH_API_BASE_URL",
    "LIVECHAT_API_BASE_URL",
    "LIVECHAT_ACCOUNTS_BASE_URL",
];

impl Function {
    /// Every function.
    pub const ALL: [Function; 8] = [
        Function::OauthInstall,
        Function::InstagramWebhook,
        Function::LivechatWebhook,
        Function::Uninstall,
        Function::InstagramToLivechat,
        Function::LivechatToInstagram,
        Function::DeletionSweeper,
        Function::ConnectionHealth,
    ];

    /// Its crate (and binary) name under `functions/`.
    pub fn crate_name(self) -> &'static str {
        match self {
            Function::OauthInstall => "oauth-install",
            Function::InstagramWebhook => "instagram-webhook",
            Function::LivechatWebhook => "livechat-webhook",
            Function::Uninstall => "uninstall",
            Function::InstagramToLivechat => "instagram-to-livechat",
            Function::LivechatToInstagram => "livechat-to-instagram",
            Function::DeletionSweeper => "deletion-sweeper",
            Function::ConnectionHealth => "connection-health",
        }
    }

    /// The function named `name` (its crate name).
    pub fn from_crate_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.crate_name() == name)
    }

    /// What it needs. The webhooks hold only their verification secrets and the token key (jobs
    /// are sealed under the organization's data key, which it wraps); the token key is held
    /// only where tokens or jobs are sealed or opened.
    pub fn needs(self) -> Needs {
        match self {
            Function::OauthInstall => needs_of::OAUTH_INSTALL,
            Function::InstagramWebhook => needs_of::INSTAGRAM_WEBHOOK,
            Function::LivechatWebhook => needs_of::LIVECHAT_WEBHOOK,
            Function::Uninstall => needs_of::UNINSTALL,
            Function::InstagramToLivechat => needs_of::INSTAGRAM_TO_LIVECHAT,
            Function::LivechatToInstagram => needs_of::LIVECHAT_TO_INSTAGRAM,
            Function::ConnectionHealth => needs_of::CONNECTION_HEALTH,
            Function::DeletionSweeper => needs_of::DELETION_SWEEPER,
        }
    }

    /// Every setting it may read: secrets, required and optional settings, resources.
    pub fn settings(self) -> impl Iterator<Item = SettingName> {
        let n = self.needs();
        n.secrets
            .iter()
            .chain(n.settings)
            .chain(n.optional)
            .copied()
            .chain(n.resources.iter().map(|r| r.setting()))
    }

    /// Whether it reaches `resource`.
    pub fn uses(self, resource: Resource) -> bool {
        self.needs().resources.contains(&resource)
    }
}

/// Each function's needs, one constant per function (`Function::needs`).
mod needs_of {
    use super::*;
    use Resource::*;

    const TOKEN: SettingName = "TOKEN_ENCRYPTION_KEY";

    pub(super) const OAUTH_INSTALL: Needs = Needs {
        secrets: &["META_APP_SECRET", "LIVECHAT_CLIENT_SECRET", TOKEN],
        settings: &["PUBLIC_BASE_URL", "META_APP_ID", "LIVECHAT_CLIENT_ID"],
        optional: &[
            "GRAPH_API_VERSION",
            "GRAPH_API_BASE_URL",
            "LIVECHAT_API_BASE_URL",
            "LIVECHAT_ACCOUNTS_BASE_URL",
            "FACEBOOK_DIALOG_BASE_URL",
        ],
        resources: &[Table, EventBus],
    };

    pub(super) const INSTAGRAM_WEBHOOK: Needs = Needs {
        secrets: &["META_APP_SECRET", "META_VERIFY_TOKEN", TOKEN],
        settings: &[],
        optional: &[],
        resources: &[Table, ToLivechatQueue, ToLivechatDlq],
    };

    pub(super) const LIVECHAT_WEBHOOK: Needs = Needs {
        secrets: &["LIVECHAT_WEBHOOK_SECRET", TOKEN],
        settings: &[],
        optional: &[],
        resources: &[Table, ToInstagramQueue, ToInstagramDlq],
    };

    /// App webhook token, signed_request, revocations (LiveChat's take the token itself),
    /// and the notices a deauthorize posts into the chats (which may refresh the agent
    /// token); the deletion answer links the status page.
    pub(super) const UNINSTALL: Needs = Needs {
        secrets: &[
            "META_APP_SECRET",
            "LIVECHAT_APP_WEBHOOK_TOKEN",
            "LIVECHAT_CLIENT_SECRET",
            TOKEN,
        ],
        settings: &["PUBLIC_BASE_URL", "META_APP_ID", "LIVECHAT_CLIENT_ID"],
        optional: PLATFORMS,
        resources: &[Table, EventBus],
    };

    /// appsecret_proof, customer tokens and agent-token refresh, tokens; the status
    /// page's link in the broken-connection notice; the events of a refused grant.
    pub(super) const INSTAGRAM_TO_LIVECHAT: Needs = Needs {
        secrets: &["META_APP_SECRET", "LIVECHAT_CLIENT_SECRET", TOKEN],
        settings: &["LIVECHAT_CLIENT_ID", "PUBLIC_BASE_URL"],
        optional: PLATFORMS,
        resources: &[Table, ToLivechatQueue, ToLivechatDlq, EventBus],
    };

    /// As inbound, and the event of a refused Page token.
    pub(super) const LIVECHAT_TO_INSTAGRAM: Needs = Needs {
        secrets: &["META_APP_SECRET", "LIVECHAT_CLIENT_SECRET", TOKEN],
        settings: &["LIVECHAT_CLIENT_ID", "PUBLIC_BASE_URL"],
        optional: PLATFORMS,
        resources: &[Table, ToInstagramQueue, ToInstagramDlq, EventBus],
    };

    /// debug_token with the app token, subscribed_apps with Page tokens, the LiveChat
    /// refresh; replays move parked jobs from both dead-letter queues to their queues.
    pub(super) const CONNECTION_HEALTH: Needs = Needs {
        secrets: &["META_APP_SECRET", "LIVECHAT_CLIENT_SECRET", TOKEN],
        settings: &["META_APP_ID", "LIVECHAT_CLIENT_ID", "PUBLIC_BASE_URL"],
        optional: PLATFORMS,
        resources: &[
            Table,
            ToLivechatQueue,
            ToLivechatDlq,
            ToInstagramQueue,
            ToInstagramDlq,
            EventBus,
        ],
    };

    /// Deferred revocations: the app token for Facebook grants, sealed tokens.
    pub(super) const DELETION_SWEEPER: Needs = Needs {
        secrets: &["META_APP_SECRET", TOKEN],
        settings: &["META_APP_ID", "LIVECHAT_CLIENT_ID"],
        optional: PLATFORMS,
        resources: &[Table, EventBus],
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_secrets_are_known() {
        for f in Function::ALL {
            assert_eq!(Function::from_crate_name(f.crate_name()), Some(f));
            let n = f.needs();
            assert!(
                n.secrets.iter().all(|s| SECRET_SETTINGS.contains(s)),
                "{f:?}"
            );
            assert!(
                n.settings
                    .iter()
                    .all(|s| REQUIRED_PLAIN_SETTINGS.contains(s)),
                "{f:?}"
            );
            assert!(f.uses(Resource::Table), "{f:?} reads the table");
        }
        assert_eq!(Function::from_crate_name("igbridge"), None);
    }
}
