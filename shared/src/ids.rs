//! The platforms' ids, each its own type, so a chat id cannot be passed where a thread id is
//! expected and a swapped argument does not compile. Each is serialized as its bare string
//! (`#[serde(transparent)]`), so stored items, queued jobs and platform bodies are unchanged.
//! An id reads as a `&str` wherever one is wanted (`Deref`), and compares with strings.

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                $name(s.clone())
            }
        }

        impl From<&$name> for $name {
            fn from(id: &$name) -> Self {
                id.clone()
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<&$name> for $name {
            fn eq(&self, other: &&$name) -> bool {
                self.0 == other.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id!(
    /// A LiveChat organization (`organization_id`): the tenant.
    OrgId
);
id!(
    /// A LiveChat account (a person: the installer, an agent).
    AccountId
);
id!(
    /// A Facebook user (app-scoped), who logged in and granted the Page.
    FacebookUserId
);
id!(
    /// A Facebook Page.
    PageId
);
id!(
    /// An Instagram professional account (the business).
    IgAccountId
);
id!(
    /// An Instagram-scoped user id: the customer, as one Instagram account sees them.
    Igsid
);
id!(
    /// An Instagram message (`mid`).
    Mid
);
id!(
    /// A LiveChat chat.
    ChatId
);
id!(
    /// A LiveChat thread (one conversation episode of a chat).
    ThreadId
);
id!(
    /// A LiveChat event.
    EventId
);

id!(
    /// One platform event as its job names it (`{ig account}:{event}` for Instagram, the chat
    /// and event for LiveChat): the key of its claim, within its [`Stream`].
    ClaimedEventId
);
id!(
    /// An install flow: its sealed states carry it, its confirmation spends it once.
    FlowId
);
id!(
    /// A data-deletion request's confirmation code (alphanumeric, given to Meta).
    DeletionCode
);
id!(
    /// A pending revocation, unique within its organization.
    RevocationId
);

/// Which platform's stream an event id belongs to (ids are unique only within one stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Instagram webhook events.
    Instagram,
    /// LiveChat events.
    Livechat,
}

impl Stream {
    /// As stored in keys and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Instagram => "instagram",
            Stream::Livechat => "livechat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_stored_and_read_as_its_bare_string() {
        let org = OrgId::from("ORG-1");
        assert_eq!(serde_json::to_string(&org).unwrap(), "\"ORG-1\"");
        let back: OrgId = serde_json::from_str("\"ORG-1\"").unwrap();
        assert_eq!(back, org);
        assert_eq!(org, "ORG-1");
        assert_eq!(&*org, "ORG-1");
        assert_eq!(org.to_string(), "ORG-1");
    }

    #[test]
    fn a_stream_is_stored_as_it_always_was() {
        for s in [Stream::Instagram, Stream::Livechat] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
