//! Shared harness for the bridge tests: services in memory, the test kit's strict fakes of
//! LiveChat and the Graph API (they refuse what the platforms refuse), and helpers to post signed
//! webhooks and run the workers.

use std::sync::Arc;
use std::time::Duration;

use crate::livechat::FakeLivechat;
use crate::meta::{FakeMeta, FbPage};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::app::Services;
use shared::cipher::TokenContext;
use shared::clock::{Clock, ManualClock};
use shared::config::{Config, Settings};
use shared::domain::*;
use shared::instagram::webhook::sign;
use shared::jobs::Envelope;
use shared::queue::Queue;
use shared::store::{Condition, MemoryStore, Repo, Store};
use shared::worker::{JobHandler, QueuedJob, process_batch};
use tower::ServiceExt;
use wiremock::Request as WireRequest;

pub const ORG: &str = "00000000-0000-4000-8000-00000000a001";
pub const IG: &str = "17841400000000001";
pub const IGSID: &str = "IGSID_1001";
pub const APP_SECRET: &str = "meta-app-secret";

pub fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

pub struct Harness {
    pub services: Services,
    pub clock: ManualClock,
    pub livechat: FakeLivechat,
    pub graph: FakeMeta,
}

pub const CLIENT_ID: &str = "CLIENT_ID_0001";
pub const CLIENT_SECRET: &str = "lc-client-secret";

pub fn config(livechat: &str, graph: &str) -> Config {
    config_with(livechat, graph, &[])
}

/// The harness's configuration with some settings replaced (a browser test serves on loopback:
/// its `PUBLIC_BASE_URL` and Facebook dialog are local).
pub fn config_with(livechat: &str, graph: &str, extra: &[(&str, String)]) -> Config {
    let mut pairs = vec![
        ("PUBLIC_BASE_URL", "https://bridge.example.com".to_string()),
        ("META_APP_ID", "1234".into()),
        ("META_APP_SECRET", APP_SECRET.into()),
        ("META_VERIFY_TOKEN", "verify-me".into()),
        ("LIVECHAT_CLIENT_ID", "CLIENT_ID_0001".into()),
        ("LIVECHAT_CLIENT_SECRET", "lc-client-secret".into()),
        ("LIVECHAT_WEBHOOK_SECRET", "lc-webhook-secret".into()),
        ("LIVECHAT_APP_WEBHOOK_TOKEN", "lc-app-token".into()),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
        ("GRAPH_API_BASE_URL", graph.to_string()),
        ("LIVECHAT_API_BASE_URL", livechat.to_string()),
        ("LIVECHAT_ACCOUNTS_BASE_URL", livechat.to_string()),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k, v.clone()));
    }
    Config::from_settings(&Settings::from_pairs(pairs)).unwrap()
}

pub fn seal(cfg: &Config, value: &str, context: TokenContext) -> shared::cipher::EncryptedToken {
    cfg.cipher
        .seal(&SecretString::from(value.to_string()), &context)
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_store(Arc::new(MemoryStore::new())).await
    }

    pub async fn with_store(store: Arc<dyn Store>) -> Self {
        Self::with_settings(store, &[]).await
    }

    /// The harness with some settings replaced ([`config_with`]).
    pub async fn with_settings(store: Arc<dyn Store>, extra: &[(&str, String)]) -> Self {
        let livechat = FakeLivechat::start(CLIENT_ID, CLIENT_SECRET).await;
        let graph = FakeMeta::start("1234", APP_SECRET).await;
        let clock = ManualClock::new(start());
        let mut services = Services::memory(
            config_with(&livechat.uri(), &graph.uri(), extra),
            Arc::new(clock.clone()),
        );
        services.repo = Repo::new(store);
        let h = Self {
            services,
            clock,
            livechat,
            graph,
        };
        h.install(ORG, IG, "dal:AGENT-A", "PAGE-TOKEN-A").await;
        h.graph.add_profile(
            IGSID,
            json!({"name": "Example Customer", "username": "example_customer", "profile_pic": "https://cdn.example.com/p.jpg"}),
        );
        h
    }

    /// An installation of `org` whose Instagram account `ig` was connected by Facebook user
    /// `fbuser` (the harness's own organization) or `fbuser-{ig}` (any other).
    pub async fn install(&self, org: &str, ig: &str, agent: &str, page: &str) {
        let user = if org == ORG {
            "fbuser".to_string()
        } else {
            format!("fbuser-{ig}")
        };
        self.install_as(org, ig, agent, page, &user).await;
    }

    /// An installation whose connection Facebook user `fbuser` made (as the install flow stores
    /// it: connection, route and the user's link).
    pub async fn install_as(&self, org: &str, ig: &str, agent: &str, page: &str, fbuser: &str) {
        self.livechat
            .add_agent(org, agent, &format!("refresh-{agent}"));
        let fb_page = FbPage {
            token: page.to_string(),
            ..FbPage::new(&format!("PAGE-{ig}"), "Shop Page", Some((ig, "shop")))
        };
        self.graph
            .add_user(fbuser, &format!("code-{org}"), vec![fb_page]);
        self.graph.subscribe(
            &format!("PAGE-{ig}"),
            shared::instagram::graph::SUBSCRIBED_FIELDS,
        );
        let cfg = &self.services.config;
        let repo = &self.services.repo;
        repo.put(
            &Installation {
                organization_id: org.into(),
                account_id: "acc".into(),
                access_token: Some(seal(cfg, agent, TokenContext::AgentAccess { org })),
                refresh_token: Some(seal(
                    cfg,
                    &format!("refresh-{agent}"),
                    TokenContext::AgentRefresh { org },
                )),
                access_token_expires_at: Some(start() + chrono::Duration::hours(8)),
                scopes: vec!["customers:own".into()],
                status: InstallationStatus::Active,
                installed_at: start(),
                updated_at: start(),
                expires_at: None,
                version: 0,
                purge_due_at: None,
                revoke_token: None,
                refresh_lease_until: None,
            },
            Condition::Always,
        )
        .await
        .unwrap();
        repo.put(
            &InstagramConnection {
                organization_id: org.into(),
                ig_account_id: ig.into(),
                ig_username: Some("shop".into()),
                page_id: format!("PAGE-{ig}").into(),
                page_name: None,
                page_token: Some(seal(cfg, page, TokenContext::Page { org, ig })),
                facebook_user_id: fbuser.into(),
                status: ConnectionStatus::Connected,
                connected_at: self.clock.now(),
                updated_at: self.clock.now(),
                expires_at: None,
            },
            Condition::Always,
        )
        .await
        .unwrap();
        repo.put(
            &AccountRoute {
                ig_account_id: ig.into(),
                organization_id: org.into(),
                expires_at: None,
            },
            Condition::Always,
        )
        .await
        .unwrap();
        repo.put(
            &FacebookUserLink {
                facebook_user_id: fbuser.into(),
                organization_id: org.into(),
                ig_account_id: ig.into(),
                expires_at: None,
            },
            Condition::Always,
        )
        .await
        .unwrap();
        // As the install flow does: listed for the health check, and a live data key.
        repo.put(
            &shared::connection::records::InstallationEntry {
                organization_id: org.into(),
                expires_at: None,
            },
            Condition::Always,
        )
        .await
        .unwrap();
        self.services.data_keys().renew(&org.into()).await.unwrap();
    }

    pub async fn post_webhook(
        &self,
        body: &str,
        signature: Option<String>,
    ) -> (StatusCode, String) {
        let router = shared::web::instagram_webhook::router(self.services.instagram_ingest());
        let mut req =
            Request::post("/webhooks/instagram").header("content-type", "application/json");
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let res = router
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).to_string())
    }

    pub async fn deliver(&self, body: &Value) -> StatusCode {
        let text = body.to_string();
        self.post_webhook(&text, Some(sign(APP_SECRET.as_bytes(), text.as_bytes())))
            .await
            .0
    }

    /// Runs the instagram-to-livechat worker over everything queued.
    pub async fn work(&self) -> Vec<String> {
        let inbound = self.services.inbound();
        self.work_queue(
            &inbound,
            self.services.to_livechat.as_ref(),
            self.services.to_livechat_dlq.as_ref(),
        )
        .await
    }

    /// Runs the livechat-to-instagram worker over everything queued.
    pub async fn work_outbound(&self) -> Vec<String> {
        let outbound = self.services.outbound();
        self.work_queue(
            &outbound,
            self.services.to_instagram.as_ref(),
            self.services.to_instagram_dlq.as_ref(),
        )
        .await
    }

    /// Runs a worker like the Lambda event source would, until the queue is empty or a batch
    /// reports failures (returned).
    pub async fn work_queue(
        &self,
        handler: &dyn JobHandler,
        queue: &dyn Queue,
        dlq: &dyn Queue,
    ) -> Vec<String> {
        loop {
            let got = queue.receive(10, Duration::from_millis(50)).await.unwrap();
            if got.is_empty() {
                return Vec::new();
            }
            let ids: Vec<_> = got
                .iter()
                .map(|m| (m.message_id.clone(), m.receipt.clone()))
                .collect();
            let failed = process_batch(
                handler,
                queue,
                dlq,
                self.clock.now(),
                got.into_iter().map(QueuedJob::from).collect(),
            )
            .await;
            for (id, receipt) in ids {
                if !failed.contains(&id) {
                    queue.delete(&receipt).await.unwrap();
                }
            }
            if !failed.is_empty() {
                return failed;
            }
        }
    }

    /// Posts a LiveChat chat webhook through the livechat-webhook router.
    pub async fn post_livechat(&self, body: &Value) -> StatusCode {
        let router = shared::web::livechat_webhook::router(self.services.livechat_ingest());
        let req = Request::post("/webhooks/livechat").header("content-type", "application/json");
        let res = router
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        res.status()
    }

    /// A contact with a chat, whose customer last wrote `ago` before now.
    pub async fn seed_contact(
        &self,
        org: &str,
        ig: &str,
        igsid: &str,
        chat: &str,
        ago: Option<chrono::Duration>,
    ) {
        let cfg = &self.services.config;
        let now = self.clock.now();
        let contact = Contact {
            organization_id: org.into(),
            ig_account_id: ig.into(),
            igsid: igsid.into(),
            customer_id: format!("customer-{igsid}"),
            chat_id: Some(chat.into()),
            thread_id: Some("THREAD0001".into()),
            thread_active: Some(true),
            customer_token: Some(seal(
                cfg,
                &customer_token(igsid),
                TokenContext::Customer { org, ig, igsid },
            )),
            customer_token_expires_at: Some(now + chrono::Duration::hours(8)),
            last_customer_message_at: ago.map(|a| now - a),
            profile_synced_at: Some(now),
            updated_at: now,
            expires_at: None,
            version: 0,
        };
        self.services
            .repo
            .put(&contact, Condition::Always)
            .await
            .unwrap();
        self.livechat
            .add_customer(org, &contact.customer_id, &customer_token(igsid));
        self.livechat
            .add_chat(org, &contact.customer_id, chat, "THREAD0001", true);
        let route = ChatRoute {
            organization_id: org.into(),
            chat_id: chat.into(),
            ig_account_id: ig.into(),
            igsid: igsid.into(),
            expires_at: None,
        };
        self.services
            .repo
            .put(&route, Condition::Always)
            .await
            .unwrap();
    }

    /// Requests the Graph fake received on a path suffix, as JSON bodies.
    pub async fn graph_calls(&self, suffix: &str) -> Vec<(WireRequest, Value)> {
        self.graph
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with(suffix))
            .map(|r| {
                let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (r, v)
            })
            .collect()
    }

    pub async fn calls(&self, action: &str) -> Vec<Value> {
        self.livechat
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path().ends_with(action))
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    pub async fn requests(&self, suffix: &str) -> Vec<WireRequest> {
        self.livechat
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path().ends_with(suffix))
            .collect()
    }

    pub async fn dlq(&self) -> Vec<Envelope> {
        let got = self
            .services
            .to_livechat_dlq
            .receive(10, Duration::from_millis(50))
            .await
            .unwrap();
        let mut out = Vec::new();
        for m in &got {
            out.push(self.open(&m.body).await);
        }
        out
    }

    /// The next job waiting for the instagram-to-livechat worker, opened (taken off the queue
    /// for a test that runs the handler itself).
    pub async fn next_inbound_job(&self) -> Envelope {
        let got = self
            .services
            .to_livechat
            .receive(1, Duration::from_millis(50))
            .await
            .unwrap();
        self.open(&got[0].body).await
    }

    /// A queue body as the workers see it: opened with its organization's data key if sealed.
    pub async fn open(&self, body: &str) -> Envelope {
        match shared::jobs::Wire::decode(body).unwrap() {
            shared::jobs::Wire::Plain(env) => env,
            shared::jobs::Wire::Sealed(sealed) => {
                let keys = self.services.data_keys();
                let key = keys.to_open(&sealed.organization_id).await.unwrap();
                sealed.open(&key.expect("the data key exists")).unwrap()
            }
        }
    }

    /// The installation record of `org` (which must exist).
    pub async fn installation(&self, org: &str) -> Installation {
        self.services
            .repo
            .get(&Installation::key_for(&org.into()))
            .await
            .unwrap()
            .expect("the installation exists")
    }

    pub async fn contact(&self) -> Option<Contact> {
        self.services
            .repo
            .get(&Contact::key_for(&ORG.into(), &IG.into(), &IGSID.into()))
            .await
            .unwrap()
    }
}

pub const CHAT: &str = "CHAT000001";
pub const SEND: &str = "/v25.0/PAGE-17841400000000001/messages";

/// A LiveChat `incoming_event` webhook for an agent event in the seeded chat.
pub fn agent_event(id: &str, event: Value) -> Value {
    agent_event_in(CHAT, "THREAD0002", id, event)
}

/// A LiveChat `incoming_event` webhook for an agent event in `chat`'s `thread`.
pub fn agent_event_in(chat: &str, thread: &str, id: &str, event: Value) -> Value {
    let mut e = event;
    e["id"] = json!(id);
    if e.get("author_id").is_none() {
        e["author_id"] = json!("agent1@example.com");
    }
    if e.get("visibility").is_none() {
        e["visibility"] = json!("all");
    }
    json!({"webhook_id": "WEBHOOK_ID_0001", "secret_key": "lc-webhook-secret", "action": "incoming_event",
           "organization_id": ORG, "payload": {"chat_id": chat, "thread_id": thread, "event": e}, "additional_data": {}})
}

/// An agent's text message in the seeded chat.
pub fn text_event(id: &str, text: &str) -> Value {
    agent_event(
        id,
        json!({"type": "message", "text": text, "created_at": "2026-03-01T12:00:00.000000Z"}),
    )
}

/// The harness with a contact in chat [`CHAT`] whose customer last wrote `ago` before now.
pub async fn ready(ago: Option<chrono::Duration>) -> Harness {
    let h = Harness::new().await;
    h.seed_contact(ORG, IG, IGSID, CHAT, ago).await;
    h
}

/// The customer token a seeded contact holds.
pub fn customer_token(igsid: &str) -> String {
    format!("dal:CUSTOMER-TOKEN-{igsid}")
}

pub fn webhook(items: Vec<Value>) -> Value {
    json!({"object": "instagram", "entry": [{"id": IG, "time": 1569262486134u64, "messaging": items}]})
}

pub fn inbound(kind: &str, body: Value) -> Value {
    json!({"sender": {"id": IGSID}, "recipient": {"id": IG}, "timestamp": 1569262485349u64, kind: body})
}

/// One Instagram messaging item of every documented kind the inbound worker renders (story
/// mention and reply, reel, unsupported, postback, quick reply, ad referral, link referral,
/// view-once media), each with the LiveChat event it becomes (without its `custom_id`).
pub fn every_inbound_kind() -> Vec<(Value, Value)> {
    let cdn = |p: &str| {
        format!("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={p}&signature=EXAMPLE")
    };
    vec![
        (
            inbound(
                "message",
                json!({"mid": "MID_STORY_MENTION_0003", "attachments": [{"type": "story_mention", "payload": {"url": cdn("3")}}]}),
            ),
            json!({"type": "message", "text": format!("📣 Mentioned you in their story:\n{}", cdn("3"))}),
        ),
        (
            inbound(
                "message",
                json!({"mid": "MID_STORY_REPLY_0004", "text": "Is this still in stock?", "reply_to": {"story": {"url": cdn("4"), "id": "18000000000000004"}}}),
            ),
            json!({"type": "message", "text": format!("↩ Replied to your story {}\nIs this still in stock?", cdn("4"))}),
        ),
        (
            inbound(
                "message",
                json!({"mid": "MID_REEL_0011", "attachments": [{"type": "ig_reel", "payload": {"reel_video_id": "1", "title": "Caption #tag", "url": cdn("5")}}]}),
            ),
            json!({"type": "message", "text": format!("[Shared a reel] Caption #tag\n{}", cdn("5"))}),
        ),
        (
            inbound(
                "message",
                json!({"mid": "MID_UNSUPPORTED_0007", "is_unsupported": true}),
            ),
            json!({"type": "message", "text": "[A message Instagram does not let apps show: open Instagram to see it]"}),
        ),
        (
            inbound(
                "postback",
                json!({"mid": "MID_POSTBACK_0008", "title": "Track my order", "payload": "TRACK_ORDER"}),
            ),
            json!({"type": "message", "text": "[Tapped: Track my order]\n[Payload: TRACK_ORDER]"}),
        ),
        (
            inbound(
                "message",
                json!({"mid": "MID_QUICK_REPLY_0009", "text": "Talk to a human", "quick_reply": {"payload": "HANDOFF_HUMAN"}}),
            ),
            json!({"type": "message", "text": "Talk to a human\n[Quick reply: HANDOFF_HUMAN]"}),
        ),
        (
            inbound(
                "message",
                json!({"mid": "MID_AD_0010", "text": "Is this available?", "referral": {"ref": "ad_ref_1", "ad_id": "AD_ID_0001", "source": "ADS", "type": "OPEN_THREAD", "ads_context_data": {"ad_title": "Spring sale"}}}),
            ),
            json!({"type": "message", "text": "Is this available?\n(via ad \u{201c}Spring sale\u{201d}, ref ad_ref_1)"}),
        ),
        (
            inbound(
                "referral",
                json!({"ref": "campaign_spring", "source": "https://ig.me/m/examplebusiness?ref=campaign_spring", "type": "OPEN_THREAD"}),
            ),
            json!({"type": "system_message", "system_message_type": "igbridge.notice", "text": "The customer opened an Instagram link into this conversation (ref campaign_spring)"}),
        ),
        (
            inbound(
                "message",
                json!({"mid": "MID_EPHEMERAL", "attachments": [{"type": "ephemeral"}]}),
            ),
            json!({"type": "message", "text": "[View-once media: open Instagram to see it]"}),
        ),
    ]
}

pub fn text(mid: &str, t: &str) -> Value {
    inbound("message", json!({"mid": mid, "text": t}))
}

impl Harness {
    /// Asserts that neither platform refused a request the bridge made.
    pub fn assert_nothing_refused(&self) {
        crate::assert_nothing_refused(&self.graph, &self.livechat);
    }
}
