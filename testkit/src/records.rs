//! One record of every kind the table holds, for suites that must cover them all (the store
//! contract, the purge's coverage).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use shared::cipher::{TokenCipher, TokenContext};
use shared::domain::*;
use shared::store::{Item, Repo};

/// One record of every kind for `org`, each with whether it always carries `expires_at`.
/// Tokens in it are sealed placeholders whose plaintext starts with `PLAINTEXT` or `dal:PLAINTEXT`.
pub fn every_kind(org: &str, cipher: &TokenCipher, now: DateTime<Utc>) -> Vec<(Item, bool)> {
    let t =
        |s: &str, ctx: TokenContext| Some(cipher.seal(&SecretString::from(s.to_string()), &ctx));
    let exp = now.timestamp() + 100;
    vec![
        (
            Repo::to_item(&Installation {
                organization_id: org.into(),
                account_id: "acc".into(),
                access_token: t("dal:PLAINTEXT-ACCESS", TokenContext::AgentAccess { org }),
                refresh_token: t("PLAINTEXT-REFRESH", TokenContext::AgentRefresh { org }),
                access_token_expires_at: Some(now),
                scopes: vec!["customers:own".into()],
                status: InstallationStatus::Active,
                installed_at: now,
                updated_at: now,
                expires_at: None,
                version: 3,
                purge_due_at: None,
                revoke_token: None,
                refresh_lease_until: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&InstagramConnection {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                ig_username: Some("shop".into()),
                page_id: "100000000000001".into(),
                page_name: Some("Shop".into()),
                page_token: t("EAAPLAINTEXT-PAGE", TokenContext::Page { org, ig: "IG" }),
                facebook_user_id: "fbuser".into(),
                status: ConnectionStatus::Connected,
                connected_at: now,
                updated_at: now,
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&AccountRoute {
                ig_account_id: "17841400000000001".into(),
                organization_id: org.into(),
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&Contact {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                igsid: "IGSID_1001".into(),
                customer_id: "cust".into(),
                chat_id: Some("CHAT1".into()),
                thread_id: Some("TH1".into()),
                thread_active: Some(true),
                customer_token: t(
                    "dal:PLAINTEXT-CUSTOMER",
                    TokenContext::Customer {
                        org,
                        ig: "IG",
                        igsid: "S",
                    },
                ),
                customer_token_expires_at: Some(now),
                last_customer_message_at: Some(now),
                profile_synced_at: None,
                updated_at: now,
                expires_at: None,
                version: 2,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&ChatRoute {
                organization_id: org.into(),
                chat_id: "CHAT1".into(),
                ig_account_id: "17841400000000001".into(),
                igsid: "IGSID_1001".into(),
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&MessageLink {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                mid: "MID_TEXT_0001".into(),
                chat_id: "CHAT1".into(),
                thread_id: Some("TH1".into()),
                event_ids: vec!["EV1".into()],
                event_threads: vec![],
                direction: Direction::Inbound,
                created_at: now,
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&EventLink {
                organization_id: org.into(),
                chat_id: "CHAT1".into(),
                event_id: "EV1".into(),
                mid: "MID_TEXT_0001".into(),
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&IdempotencyRecord {
                organization_id: org.into(),
                scope: shared::ids::Stream::Instagram,
                event_id: "MID_TEXT_0001".into(),
                state: IdempotencyState::InProgress,
                claimed_at: now,
                completed_at: None,
                parts_done: 0,
                delay_told: false,
                unsent: false,
                version: 0,
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&OAuthState {
                nonce: "nonce".into(),
                step: OAuthStep::Livechat,
                organization_id: None,
                created_at: now,
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&DeletionRequest {
                confirmation_code: "code".into(),
                facebook_user_id: Some("fbuser".into()),
                status: DeletionStatus::Pending,
                requested_at: now,
                completed_at: None,
                expires_at: Some(exp),
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&PurgeEntry {
                subject: PurgeSubject::Organization(org.into()),
                due_at: exp,
                scheduled_at: now,
                deletion_code: None,
                marked: false,
                mark_cursor: Some("cursor".into()),
                accounts: Some(vec![DisconnectedAccount {
                    organization_id: org.into(),
                    ig_account_id: "17841400000000001".into(),
                }]),
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&FacebookUserLink {
                facebook_user_id: "fbuser".into(),
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&PendingRevocation {
                organization_id: org.into(),
                id: "livechat".into(),
                revocation: Revocation::Livechat {
                    token: t("PLAINTEXT-REVOKE", TokenContext::LivechatRevoke { org }).unwrap(),
                },
                attempts: 1,
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&PendingSend {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                igsid: "IGSID_1001".into(),
                livechat_event_id: "EV2".into(),
                started_at: now,
                fingerprint: "f".repeat(64),
                attempts: 1,
                mid: None,
                expires_at: exp,
                version: 1,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&SendPause {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                until: now,
                reason: "Instagram's rate limit (Meta error 613)".into(),
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&shared::connection::records::Backlog {
                organization_id: org.into(),
                parked: 2,
                parked_blocked: 1,
                last_parked_at: Some(now),
                last_reason: Some("the Instagram connection is broken".into()),
                version: 1,
                ..Default::default()
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&shared::connection::records::ConnectionHealth {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                token: shared::connection::records::TokenState::Valid,
                subscription: shared::connection::records::SubscriptionState::Subscribed,
                checked_at: Some(now),
                ..Default::default()
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&shared::connection::records::Activity {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                direction: Direction::Inbound,
                last_at: now,
                days: vec![now.date_naive()],
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&shared::connection::records::BrokenNotice {
                organization_id: org.into(),
                ig_account_id: "17841400000000001".into(),
                since: now.timestamp(),
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&shared::connection::records::InstallationEntry {
                organization_id: org.into(),
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
        (
            Repo::to_item(&shared::connection::records::ReplayLease {
                holder: "0123456789abcdef".into(),
                until: now,
                expires_at: exp,
            })
            .unwrap(),
            true,
        ),
        (
            Repo::to_item(&OrganizationKey {
                organization_id: org.into(),
                key: t("PLAINTEXT-DATAKEY", TokenContext::DataKey { org }),
                created_at: now,
                destroyed_at: None,
                expires_at: None,
            })
            .unwrap(),
            false,
        ),
    ]
}
