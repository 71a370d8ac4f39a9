//! A strict fake of LiveChat: the accounts service (`/v2/token` code exchange, refresh and
//! revocation; `/v2/customer/token`, the agent-token customer grant) and the Customer Chat Web API
//! v3.6 (`/v3.6/customer/action/<action>?organization_id=…`). It keeps chats, threads and events,
//! so a test sees what an agent would see, and refuses what LiveChat refuses (see
//! `fixtures/livechat`):
//!
//! - customer actions need `organization_id` in the query and a *customer* token of that
//!   organization (an agent token is refused), and only documented actions exist;
//! - required fields per action; events of known types, message text ≤ 16 KB, file events only
//!   with LiveChat CDN URLs, rich messages with a known template and ≤ 10 elements;
//! - chat state: `send_event` on a chat without an active thread is `chat_inactive` (unless
//!   `attach_to_last_thread`), `resume_chat` on an active chat and a second `start_chat` for the
//!   same customer are refused, unknown chats and events are `not_found`;
//! - the customer grant needs an agent token with `customers:own` and this app's client id.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fixtures::{Faults, Fixture, fixture};

/// Customer Chat API v3.6 actions (platform.text.com, messaging/customer-chat-api).
const CUSTOMER_ACTIONS: &[&str] = &[
    "list_chats",
    "list_threads",
    "get_chat",
    "start_chat",
    "resume_chat",
    "deactivate_chat",
    "send_event",
    "delete_event",
    "upload_file",
    "send_rich_message_postback",
    "send_sneak_peek",
    "update_chat_properties",
    "delete_chat_properties",
    "update_thread_properties",
    "delete_thread_properties",
    "update_event_properties",
    "delete_event_properties",
    "list_license_properties",
    "list_group_properties",
    "update_customer",
    "set_customer_session_fields",
    "get_customer",
    "list_group_statuses",
    "check_goals",
    "get_form",
    "get_predicted_agent",
    "get_url_info",
    "mark_events_as_seen",
    "accept_greeting",
    "cancel_greeting",
    "request_email_verification",
];

/// Largest message text LiveChat takes (16 KB raw).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Where LiveChat's own files live; file events must point there.
pub const CDN_PREFIX: &str = "https://cdn.livechat-files.com/";

/// A thread of a chat.
#[derive(Debug, Clone)]
pub struct Thread {
    /// Thread id.
    pub id: String,
    /// Whether it is the active thread.
    pub active: bool,
    /// Its events, as LiveChat returns them (with `id`, `created_at`, `author_id`).
    pub events: Vec<Value>,
}

/// A chat and its threads.
#[derive(Debug, Clone)]
pub struct Chat {
    /// Chat id.
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// The customer in it.
    pub customer_id: String,
    /// Threads, oldest first.
    pub threads: Vec<Thread>,
    /// Events deleted with `delete_event` (thread id, event).
    pub deleted: Vec<Value>,
}

impl Chat {
    /// Every event of every thread, in order.
    pub fn events(&self) -> Vec<Value> {
        self.threads.iter().flat_map(|t| t.events.clone()).collect()
    }

    /// Whether the last thread is active.
    pub fn active(&self) -> bool {
        self.threads.last().is_some_and(|t| t.active)
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/v3.6/customer/action/send_event`.
    pub path: String,
    /// The action for Customer Chat API calls.
    pub action: Option<String>,
    /// JSON body, or form fields as an object.
    pub body: Value,
    /// `Some(message)` when refused.
    pub refused: Option<String>,
    /// When it was answered (latency benchmarks).
    pub at: std::time::Instant,
}

#[derive(Clone)]
struct Grant {
    organization_id: String,
    account_id: String,
    scope: String,
}

/// LiveChat's limit of live access tokens per client per user account.
pub const MAX_TOKENS_PER_USER: usize = 25;

#[derive(Default)]
struct State {
    client_id: String,
    client_secret: String,
    codes: HashMap<String, Grant>,
    agent_tokens: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, Grant>,
    /// Access tokens per user account, oldest first: LiveChat keeps 25 per client per user
    /// account and revokes the oldest when a 26th is issued ("Token limits", LiveChat
    /// Authorization docs; ../shared/reference/livechat-platform.md).
    issued: HashMap<String, std::collections::VecDeque<String>>,
    customers: HashMap<String, String>,
    /// Organization id → (name, owner's e-mail).
    organizations: HashMap<String, (String, String)>,
    /// Organization id → its other agents (account id, e-mail, role), as `list_agents` lists them.
    members: HashMap<String, Vec<(String, String, String)>>,
    customer_tokens: HashMap<String, String>,
    chats: Vec<Chat>,
    calls: Vec<Call>,
    faults: Faults,
    /// Requests carried out but answered late.
    late: Faults<Duration>,
    wire: Option<Arc<crate::crash::Tripwire>>,
    counter: u32,
    revoked: Vec<String>,
    /// Access token ↔ refresh token of each grant (both directions).
    pairs: HashMap<String, String>,
}

/// The fake LiveChat (accounts service and Customer Chat API on one server).
#[derive(Clone)]
pub struct FakeLivechat {
    server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

type Answer = Result<Value, Fixture>;

impl std::ops::Deref for FakeLivechat {
    type Target = MockServer;

    /// The fake is also its wiremock server: `received_requests`, or a test's own `Mock` with a
    /// priority below 50 for a fault the fake does not model.
    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl FakeLivechat {
    /// Starts a fake for the app `client_id` / `client_secret`.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ..State::default()
        }));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(state.clone()))
            .with_priority(50)
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
        }
    }

    /// The base URL (both `LIVECHAT_API_BASE_URL` and `LIVECHAT_ACCOUNTS_BASE_URL`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The wiremock server, to mount a fault the fake does not model (priority < 50 wins).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// An organization's name and its owner's e-mail (what `organizations/my` and `list_agents`
    /// answer); an organization not added is unknown to the accounts service (404).
    pub fn add_organization(&self, org: &str, name: &str, owner: &str) {
        self.with(|s| {
            s.organizations
                .insert(org.into(), (name.into(), owner.into()))
        });
    }

    /// An agent of `org` with `role` (`owner|viceowner|administrator|normal`), listed by
    /// `list_agents` after the recorded ones.
    pub fn add_member(&self, org: &str, account_id: &str, email: &str, role: &str) {
        self.with(|s| {
            s.members.entry(org.into()).or_default().push((
                account_id.into(),
                email.into(),
                role.into(),
            ))
        });
    }

    /// An authorization code that an owner of `org` obtains by approving the app.
    pub fn add_code(&self, code: &str, org: &str, account_id: &str, scope: &str) {
        self.with(|s| {
            s.codes.insert(
                code.into(),
                Grant {
                    organization_id: org.into(),
                    account_id: account_id.into(),
                    scope: scope.into(),
                },
            )
        });
    }

    /// A live agent token (and its refresh token) of an installation made earlier.
    pub fn add_agent(&self, org: &str, access_token: &str, refresh_token: &str) {
        let g = Grant {
            organization_id: org.into(),
            account_id: "00000000-0000-4000-8000-00000000b001".into(),
            scope: "chats--all:rw,customers:own".into(),
        };
        self.with(|s| {
            s.agent_tokens.insert(access_token.into(), g.clone());
            s.refresh_tokens.insert(refresh_token.into(), g);
            s.pairs.insert(access_token.into(), refresh_token.into());
            s.pairs.insert(refresh_token.into(), access_token.into());
        });
    }

    /// The license owner revokes a token (and its pair), as `DELETE /v2/token` does; a later
    /// refresh with it is `invalid_grant`.
    pub fn revoke(&self, token: &str) {
        self.with(|s| {
            let _ = s.revoke(Some(token.to_string()));
        });
    }

    /// Expires an agent access token (its refresh token still works).
    pub fn expire_agent_token(&self, access_token: &str) {
        self.with(|s| s.agent_tokens.remove(access_token));
    }

    /// A customer identity with a live token.
    pub fn add_customer(&self, org: &str, entity_id: &str, token: &str) {
        self.with(|s| {
            s.customers.insert(entity_id.into(), org.into());
            s.customer_tokens.insert(token.into(), entity_id.into());
        });
    }

    /// Expires a customer token.
    pub fn expire_customer_token(&self, token: &str) {
        self.with(|s| s.customer_tokens.remove(token));
    }

    /// A chat made earlier, with one thread (active or not) and no events.
    pub fn add_chat(
        &self,
        org: &str,
        customer: &str,
        chat_id: &str,
        thread_id: &str,
        active: bool,
    ) {
        self.with(|s| {
            s.chats.push(Chat {
                id: chat_id.into(),
                organization_id: org.into(),
                customer_id: customer.into(),
                threads: vec![Thread {
                    id: thread_id.into(),
                    active,
                    events: vec![],
                }],
                deleted: vec![],
            })
        });
    }

    /// A chat by id.
    pub fn chat(&self, chat_id: &str) -> Option<Chat> {
        self.with(|s| s.chats.iter().find(|c| c.id == chat_id).cloned())
    }

    /// Every chat.
    pub fn chats(&self) -> Vec<Chat> {
        self.with(|s| s.chats.clone())
    }

    /// An agent (or the router) closes the active thread, as `deactivate_chat` or idleness does.
    pub fn deactivate(&self, chat_id: &str) {
        self.with(|s| {
            if let Some(t) = s
                .chats
                .iter_mut()
                .find(|c| c.id == chat_id)
                .and_then(|c| c.threads.last_mut())
            {
                t.active = false;
            }
        });
    }

    /// An agent starts a new thread in the chat (Agent API `resume_chat`); returns its id.
    pub fn agent_starts_thread(&self, chat_id: &str) -> String {
        self.with(|s| {
            let id = s.next_thread();
            let chat = s.chats.iter_mut().find(|c| c.id == chat_id).expect("chat");
            chat.threads.iter_mut().for_each(|t| t.active = false);
            chat.threads.push(Thread {
                id: id.clone(),
                active: true,
                events: vec![],
            });
            id
        })
    }

    /// The next `times` requests whose path ends with `suffix` get `fault`.
    pub fn fail_next(&self, suffix: &str, fault: Fixture, times: usize) {
        self.with(|s| s.faults.push("*", suffix, fault, times));
    }

    /// The operator regenerates the app's client secret in the Developer Console: from now on
    /// only `secret` authenticates the app.
    pub fn rotate_client_secret(&self, secret: &str) {
        self.with(|s| s.client_secret = secret.to_string());
    }

    /// The next `times` requests whose path ends with `suffix` are carried out as usual but
    /// answered only after `delay`: a client that gives up first never learns that LiveChat
    /// acted (a chat started, an event posted).
    pub fn answer_late(&self, suffix: &str, delay: Duration, times: usize) {
        self.with(|s| s.late.push("*", suffix, delay, times));
    }

    /// Reports every request to `wire`, which may crash the caller at it
    /// ([`crate::crash::Tripwire`]): before (nothing happens) or after (LiveChat acts).
    pub fn trip(&self, wire: Arc<crate::crash::Tripwire>) {
        self.with(|s| s.wire = Some(wire));
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// Bodies of the accepted calls of one customer action.
    pub fn action_calls(&self, action: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.action.as_deref() == Some(action) && c.refused.is_none())
            .map(|c| c.body)
            .collect()
    }

    /// Messages of refused requests (a faithful bridge has none).
    pub fn refusals(&self) -> Vec<String> {
        self.with(|s| s.calls.iter().filter_map(|c| c.refused.clone()).collect())
    }

    /// Whether a token (access or refresh) is still live.
    /// How many times a refresh token was exchanged.
    pub fn refreshes(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                c.path.ends_with("/token")
                    && c.body.get("grant_type").and_then(Value::as_str) == Some("refresh_token")
            })
            .count()
    }

    pub fn token_live(&self, token: &str) -> bool {
        self.with(|s| s.agent_tokens.contains_key(token) || s.refresh_tokens.contains_key(token))
    }
}

struct Responder(Arc<Mutex<State>>);

fn body_of(req: &Request) -> Value {
    let form = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), json!(v.into_owned())))
            .collect();
        return Value::Object(map);
    }
    serde_json::from_slice(&req.body).unwrap_or(Value::Null)
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let method = req.method.as_str().to_uppercase();
        let path = req.url.path().to_string();
        let query: BTreeMap<String, String> = req
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let bearer = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let multipart = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("multipart/form-data"));
        let body = if multipart {
            json!({"multipart": req.body.len()})
        } else {
            body_of(req)
        };
        let action = path
            .strip_prefix("/v3.6/customer/action/")
            .map(str::to_string);
        let label = format!("livechat {}", action.as_deref().unwrap_or(&path));
        let crash = s.wire.as_ref().and_then(|w| w.step(label));
        if crash == Some(crate::crash::When::Before) {
            return ResponseTemplate::new(504).set_delay(crate::crash::NEVER);
        }
        let answer = s.handle(&method, &path, action.as_deref(), &query, bearer, &body);
        let refused = answer.as_ref().err().map(Fixture::message);
        let late = s.late.take(&method, &path);
        s.calls.push(Call {
            method,
            path,
            action,
            body,
            refused,
            at: std::time::Instant::now(),
        });
        let response = match answer {
            Ok(v) => ResponseTemplate::new(200).set_body_json(v),
            Err(f) => f.response(),
        };
        match (crash, late) {
            (Some(_), _) => response.set_delay(crate::crash::NEVER),
            (None, Some(delay)) => response.set_delay(delay),
            (None, None) => response,
        }
    }
}

fn s(v: &Value, p: &str) -> Option<String> {
    v.pointer(p).and_then(Value::as_str).map(str::to_string)
}

fn validation(message: &str) -> Fixture {
    fixture("livechat/validation").with(&[("message", message)])
}

impl State {
    fn handle(
        &mut self,
        method: &str,
        path: &str,
        action: Option<&str>,
        query: &BTreeMap<String, String>,
        bearer: Option<String>,
        body: &Value,
    ) -> Answer {
        if let Some(fault) = self.faults.take(method, path) {
            return Err(fault);
        }
        match (method, path) {
            ("POST", "/v2/token") => self.token(body),
            ("DELETE", "/v2/token") => self.revoke(bearer.or_else(|| query.get("code").cloned())),
            ("POST", "/v2/customer/token") => self.customer_grant(bearer, body),
            ("GET", "/v2/organizations/my") => self.organization(bearer),
            ("POST", "/v3.6/configuration/action/list_agents") => self.list_agents(bearer),
            ("POST", _) if action.is_some() => {
                let action = action.unwrap_or_default();
                if !CUSTOMER_ACTIONS.contains(&action) {
                    return Err(fixture("livechat/not_found_action"));
                }
                let Some(org) = query.get("organization_id") else {
                    return Err(validation("`organization_id` is required"));
                };
                let customer = self.customer(bearer, org)?;
                self.act(action, org, &customer, body)
            }
            _ => Err(fixture("livechat/not_found_action")),
        }
    }

    /// Thread ids in order of creation: THREAD0001, THREAD0002, …
    fn next_thread(&mut self) -> String {
        let n = self.chats.iter().map(|c| c.threads.len()).sum::<usize>() + 1;
        format!("THREAD{n:04}")
    }

    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    fn issue(&mut self, g: Grant, refresh: Option<String>) -> Value {
        let n = self.next();
        let access = format!("dal:ACCESS-{n}");
        let refresh = refresh.unwrap_or_else(|| format!("REFRESH-{n}"));
        self.agent_tokens.insert(access.clone(), g.clone());
        let user = format!("{}/{}", g.organization_id, g.account_id);
        let issued = self.issued.entry(user).or_default();
        issued.push_back(access.clone());
        if issued.len() > MAX_TOKENS_PER_USER {
            if let Some(oldest) = issued.pop_front() {
                self.agent_tokens.remove(&oldest);
            }
        }
        self.refresh_tokens.insert(refresh.clone(), g.clone());
        // A refresh hands out a new access token for the same (non-rotating) refresh token.
        if let Some(old) = self.pairs.insert(refresh.clone(), access.clone()) {
            self.pairs.remove(&old);
        }
        self.pairs.insert(access.clone(), refresh.clone());
        json!({"access_token": access, "account_id": g.account_id, "expires_in": 28800,
               "organization_id": g.organization_id, "refresh_token": refresh,
               "scope": g.scope, "token_type": "Bearer"})
    }

    fn token(&mut self, body: &Value) -> Answer {
        let client_ok = s(body, "/client_id").as_deref() == Some(self.client_id.as_str())
            && s(body, "/client_secret").as_deref() == Some(self.client_secret.as_str());
        match s(body, "/grant_type").as_deref() {
            Some("authorization_code") => {
                if !client_ok {
                    return Err(fixture("livechat/oauth_unauthorized_client"));
                }
                if s(body, "/redirect_uri").is_none() {
                    return Err(fixture("livechat/oauth_invalid_request"));
                }
                let code = s(body, "/code").unwrap_or_default();
                let Some(g) = self.codes.remove(&code) else {
                    return Err(fixture("livechat/oauth_unauthorized_client"));
                };
                Ok(self.issue(g, None))
            }
            Some("refresh_token") => {
                if !client_ok {
                    return Err(fixture("livechat/oauth_unauthorized_client"));
                }
                let refresh = s(body, "/refresh_token").unwrap_or_default();
                let Some(g) = self.refresh_tokens.get(&refresh).cloned() else {
                    return Err(if self.revoked.contains(&refresh) {
                        fixture("livechat/oauth_invalid_grant")
                    } else {
                        fixture("livechat/oauth_unauthorized_client")
                    });
                };
                // Server-side apps get non-rotating refresh tokens.
                Ok(self.issue(g, Some(refresh)))
            }
            _ => Err(fixture("livechat/oauth_unsupported_grant_type")),
        }
    }

    fn revoke(&mut self, token: Option<String>) -> Answer {
        let token = token.unwrap_or_default();
        let grant = self
            .agent_tokens
            .remove(&token)
            .or_else(|| self.refresh_tokens.remove(&token));
        if grant.is_none() {
            return Err(fixture("livechat/oauth_token_not_found"));
        }
        // Revoking one token of a grant revokes its pair (and only that grant).
        let pair = self.pairs.remove(&token);
        if let Some(p) = &pair {
            self.pairs.remove(p);
            self.agent_tokens.remove(p);
            self.refresh_tokens.remove(p);
        }
        self.revoked.push(token);
        self.revoked.extend(pair);
        Ok(json!({}))
    }

    /// `GET /v2/organizations/my`: any valid agent token, no scope needed.
    fn organization(&self, bearer: Option<String>) -> Answer {
        let Some(agent) = bearer.and_then(|t| self.agent_tokens.get(&t).cloned()) else {
            return Err(fixture("livechat/oauth_invalid_token"));
        };
        let Some((name, _)) = self.organizations.get(&agent.organization_id) else {
            return Err(fixture("livechat/oauth_resource_not_found"));
        };
        Ok(fixture("livechat/organization")
            .with(&[("organization_id", &agent.organization_id), ("name", name)])
            .body)
    }

    /// Configuration API `list_agents`: needs `agents--all:ro`.
    fn list_agents(&self, bearer: Option<String>) -> Answer {
        let Some(agent) = bearer.and_then(|t| self.agent_tokens.get(&t).cloned()) else {
            return Err(fixture("livechat/authentication"));
        };
        if !agent.scope.split(',').any(|s| s == "agents--all:ro") {
            return Err(fixture("livechat/authorization"));
        }
        let owner = self
            .organizations
            .get(&agent.organization_id)
            .map_or("owner@example.com", |(_, owner)| owner.as_str());
        let mut agents = fixture("livechat/list_agents")
            .with(&[("owner", owner)])
            .body;
        let list = agents.as_array_mut().expect("list_agents is an array");
        for (account, email, role) in self
            .members
            .get(&agent.organization_id)
            .into_iter()
            .flatten()
        {
            list.push(
                json!({"id": email, "account_id": account, "name": email, "role": role,
                "login_status": "not accepting chats", "max_chats_count": 6, "summaries": []}),
            );
        }
        Ok(agents)
    }

    fn customer_grant(&mut self, bearer: Option<String>, body: &Value) -> Answer {
        let Some(agent) = bearer.and_then(|t| self.agent_tokens.get(&t).cloned()) else {
            return Err(fixture("livechat/oauth_invalid_token"));
        };
        if !agent.scope.split(',').any(|s| s == "customers:own") {
            return Err(fixture("livechat/oauth_insufficient_scope"));
        }
        if s(body, "/grant_type").as_deref() != Some("agent_token")
            || s(body, "/response_type").as_deref() != Some("token")
            || s(body, "/client_id").as_deref() != Some(self.client_id.as_str())
        {
            return Err(fixture("livechat/oauth_invalid_request"));
        }
        let n = self.next();
        let entity = match s(body, "/entity_id") {
            Some(e) if self.customers.get(&e) == Some(&agent.organization_id) => e,
            Some(_) => return Err(fixture("livechat/oauth_invalid_request")),
            None => {
                let e = format!(
                    "00000000-0000-4000-8000-00000000c{:03}",
                    self.customers.len() + 1
                );
                self.customers
                    .insert(e.clone(), agent.organization_id.clone());
                e
            }
        };
        let token = format!("dal:CUSTOMER-TOKEN-{n}");
        self.customer_tokens.insert(token.clone(), entity.clone());
        Ok(
            json!({"access_token": token, "client_id": self.client_id, "entity_id": entity,
                  "expires_in": 28800, "token_type": "Bearer", "organization_id": agent.organization_id}),
        )
    }

    fn customer(&self, bearer: Option<String>, org: &str) -> Result<String, Fixture> {
        let Some(token) = bearer else {
            return Err(fixture("livechat/authentication"));
        };
        let Some(entity) = self.customer_tokens.get(&token) else {
            // Agent tokens, expired and unknown tokens alike.
            return Err(fixture("livechat/authentication"));
        };
        if self.customers.get(entity).map(String::as_str) != Some(org) {
            return Err(fixture("livechat/authorization"));
        }
        Ok(entity.clone())
    }

    fn chat_mut(&mut self, id: &str, customer: &str) -> Result<&mut Chat, Fixture> {
        self.chats
            .iter_mut()
            .find(|c| c.id == id && c.customer_id == customer)
            .ok_or_else(|| fixture("livechat/not_found_chat"))
    }

    fn act(&mut self, action: &str, org: &str, customer: &str, body: &Value) -> Answer {
        let required = |p: &str| -> Result<String, Fixture> {
            s(body, p).ok_or_else(|| {
                validation(&format!(
                    "`{}` is required",
                    p.trim_start_matches('/').replace('/', ".")
                ))
            })
        };
        match action {
            "start_chat" => {
                if self.chats.iter().any(|c| c.customer_id == customer) {
                    return Err(fixture("livechat/chat_limit_reached"));
                }
                let events = initial_events(body)?;
                let chat_id = format!("CHAT{:06}", self.chats.len() + 1);
                let thread_id = self.next_thread();
                let mut thread = Thread {
                    id: thread_id.clone(),
                    active: true,
                    events: vec![],
                };
                let ids = add_events(&mut thread, customer, events);
                self.chats.push(Chat {
                    id: chat_id.clone(),
                    organization_id: org.into(),
                    customer_id: customer.into(),
                    threads: vec![thread],
                    deleted: vec![],
                });
                Ok(json!({"chat_id": chat_id, "thread_id": thread_id, "event_ids": ids}))
            }
            "resume_chat" => {
                let id = required("/chat/id")?;
                let events = initial_events(body)?;
                let thread_id = self.next_thread();
                let chat = self.chat_mut(&id, customer)?;
                if chat.active() {
                    return Err(fixture("livechat/chat_active"));
                }
                let mut thread = Thread {
                    id: thread_id.clone(),
                    active: true,
                    events: vec![],
                };
                let ids = add_events(&mut thread, customer, events);
                chat.threads.push(thread);
                Ok(json!({"thread_id": thread_id, "event_ids": ids}))
            }
            "send_event" => {
                let id = required("/chat_id")?;
                let Some(event) = body.get("event") else {
                    return Err(validation("`event` is required"));
                };
                check_event(event)?;
                let attach = body.get("attach_to_last_thread") == Some(&json!(true));
                let chat = self.chat_mut(&id, customer)?;
                if !chat.active() && !attach {
                    return Err(fixture("livechat/chat_inactive"));
                }
                let thread = chat.threads.last_mut().expect("a chat has a thread");
                let ids = add_events(thread, customer, vec![event.clone()]);
                Ok(json!({"event_id": ids[0]}))
            }
            "get_chat" => {
                let id = required("/chat_id")?;
                let chat = self.chat_mut(&id, customer)?.clone();
                let thread = match s(body, "/thread_id") {
                    Some(t) => chat
                        .threads
                        .iter()
                        .find(|x| x.id == t)
                        .cloned()
                        .ok_or_else(|| fixture("livechat/not_found_thread"))?,
                    None => chat.threads.last().cloned().expect("a chat has a thread"),
                };
                Ok(
                    json!({"id": chat.id, "thread": {"id": thread.id, "active": thread.active, "events": thread.events},
                          "users": [{"id": customer, "type": "customer"}]}),
                )
            }
            "list_chats" => {
                let summary: Vec<Value> = self
                    .chats
                    .iter()
                    .filter(|c| c.customer_id == customer)
                    .map(|c| json!({"id": c.id, "last_thread_id": c.threads.last().map(|t| t.id.clone()), "active": c.active()}))
                    .collect();
                Ok(json!({"chats_summary": summary, "total_chats": summary.len()}))
            }
            "deactivate_chat" => {
                let id = required("/id")?;
                let chat = self.chat_mut(&id, customer)?;
                if !chat.active() {
                    return Err(fixture("livechat/chat_inactive"));
                }
                chat.threads.last_mut().expect("thread").active = false;
                Ok(json!({}))
            }
            "delete_event" => {
                let chat_id = required("/chat_id")?;
                let thread_id = required("/thread_id")?;
                let event_id = required("/event_id")?;
                let chat = self.chat_mut(&chat_id, customer)?;
                let Some(thread) = chat.threads.iter_mut().find(|t| t.id == thread_id) else {
                    return Err(fixture("livechat/not_found_thread"));
                };
                let Some(i) = thread
                    .events
                    .iter()
                    .position(|e| s(e, "/id").as_deref() == Some(event_id.as_str()))
                else {
                    return Err(fixture("livechat/not_found_event"));
                };
                let ev = thread.events.remove(i);
                chat.deleted.push(ev);
                Ok(json!({}))
            }
            "mark_events_as_seen" => {
                let id = required("/chat_id")?;
                required("/seen_up_to")?;
                self.chat_mut(&id, customer)?;
                Ok(json!({}))
            }
            "update_customer" => {
                let known = [
                    "name",
                    "email",
                    "avatar",
                    "session_fields",
                    "omnichannel",
                    "address",
                ];
                if !body
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| known.contains(&k.as_str())))
                {
                    return Err(validation("At least one optional parameter is required"));
                }
                Ok(json!({}))
            }
            "set_customer_session_fields" => {
                let fields = body.get("session_fields").and_then(Value::as_array);
                match fields {
                    Some(f)
                        if f.len() <= 100
                            && f.iter()
                                .all(|x| x.as_object().is_some_and(|o| o.len() == 1)) =>
                    {
                        Ok(json!({}))
                    }
                    _ => Err(validation("`session_fields` is required")),
                }
            }
            "upload_file" => {
                let n = self.next();
                Ok(json!({"url": format!("{CDN_PREFIX}api/file/lc/att/{n}/upload.bin")}))
            }
            "get_customer" => Ok(json!({"id": customer, "type": "customer"})),
            _ => Ok(json!({})),
        }
    }
}

fn initial_events(body: &Value) -> Result<Vec<Value>, Fixture> {
    let events = body
        .pointer("/chat/thread/events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for e in &events {
        check_event(e)?;
    }
    Ok(events)
}

fn add_events(thread: &mut Thread, customer: &str, events: Vec<Value>) -> Vec<String> {
    let mut ids = Vec::new();
    for mut e in events {
        let id = format!("{}_{}", thread.id, thread.events.len() + 1);
        e["id"] = json!(id);
        e["author_id"] = json!(customer);
        e["created_at"] = json!("2026-03-01T12:00:00.000000Z");
        if e.get("visibility").is_none() {
            e["visibility"] = json!("all");
        }
        thread.events.push(e);
        ids.push(id);
    }
    ids
}

/// LiveChat's validation of a customer event.
fn check_event(e: &Value) -> Result<(), Fixture> {
    let kind = s(e, "/type").unwrap_or_default();
    match kind.as_str() {
        "message" => {
            let text = s(e, "/text").ok_or_else(|| validation("`event.text` is required"))?;
            if text.len() > MAX_TEXT_BYTES {
                return Err(validation("`event.text` is too long"));
            }
        }
        "file" => {
            let url = s(e, "/url").ok_or_else(|| validation("`event.url` is required"))?;
            if !url.starts_with(CDN_PREFIX) {
                return Err(validation("`event.url` must point to the LiveChat CDN"));
            }
        }
        "rich_message" => {
            let template = s(e, "/template_id").unwrap_or_default();
            if !["cards", "sticker", "quick_replies"].contains(&template.as_str()) {
                return Err(validation("`event.template_id` is invalid"));
            }
            let elements = e.get("elements").and_then(Value::as_array);
            let Some(elements) = elements.filter(|x| !x.is_empty() && x.len() <= 10) else {
                return Err(validation("`event.elements` must have 1 to 10 items"));
            };
            for el in elements {
                if el.get("image").is_some() && s(el, "/image/url").is_none() {
                    return Err(validation("`event.elements.image.url` is required"));
                }
                for b in el
                    .get("buttons")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let t = s(b, "/type").unwrap_or_default();
                    if s(b, "/text").is_none()
                        || !["webview", "message", "url", "phone", "cancel"].contains(&t.as_str())
                    {
                        return Err(validation("`event.elements.buttons` is invalid"));
                    }
                }
            }
        }
        "system_message" => {
            s(e, "/system_message_type")
                .ok_or_else(|| validation("`event.system_message_type` is required"))?;
        }
        "custom" | "filled_form" => {}
        _ => return Err(validation("`event.type` is invalid")),
    }
    Ok(())
}
