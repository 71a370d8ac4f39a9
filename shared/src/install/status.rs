//! The LiveChat admin's status page. `GET /status` signs in through LiveChat (the same
//! tab-bound flow as the install, so nothing is kept in the browser but this tab's secret in
//! `sessionStorage`, and no cookie); LiveChat's answer renders the page for that organization,
//! and only for its owner or an administrator. The page's buttons post a sealed session (the
//! organization, 15 minutes, bound to the tab) to `POST /status`: replay the parked messages,
//! reconnect an Instagram account (on to Facebook Login, as an install would), disconnect one.
//! A reload after the session ends signs in again, silently while the LiveChat session lasts.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

use super::state::{FlowState, is_binding};
use super::{Install, StepError, field, nonce, pages};
use crate::connection::records::{
    Activity, Backlog, ConnectionHealth, SubscriptionState, TokenState,
};
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::html::{esc, page};
use crate::livechat::Organization;
use crate::routes;
use crate::store::{StoreError, keys};

/// How long a status session lasts.
pub const SESSION_SECS: i64 = 15 * 60;

/// `GET /status`: the page that starts this tab's sign-in at once; `GET /status?b=<binding>`: on
/// to LiveChat's authorization with a state bound to the tab.
pub async fn start(
    State(app): State<Arc<Install>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(binding) = q.get("b").filter(|b| is_binding(b)) else {
        return begin();
    };
    let state = FlowState {
        step: OAuthStep::StatusSignIn,
        flow: nonce(),
        binding: binding.clone(),
        expires_at: app.deps.clock.now().timestamp() + OAUTH_STATE_TTL_SECS,
        organization: None,
        facebook_user_id: None,
        pages: vec![],
    };
    Redirect::to(&app.livechat_authorize(&app.sealer.seal(&state))).into_response()
}

/// `GET /status/widget`: LiveChat shows an app's settings in a frame of its Agent App, where
/// LiveChat's own sign-in cannot run; this page (the one page that may be framed, and only by
/// LiveChat) opens the status page in a tab of its own.
pub async fn widget() -> Response {
    let mut res = page(
        StatusCode::OK,
        "igbridge status",
        &format!(
            "<div class=\"card\"><p>See whether each connected Instagram account is working, replay parked messages, \
reconnect or disconnect an account.</p><p><a class=\"button\" href=\"{}\" target=\"_blank\" rel=\"noopener\">Open the status page</a></p></div>",
            routes::STATUS
        ),
    );
    let headers = res.headers_mut();
    headers.remove(axum::http::header::X_FRAME_OPTIONS);
    if let Some(csp) = headers.get(axum::http::header::CONTENT_SECURITY_POLICY) {
        let framed = csp.to_str().unwrap_or_default().replace(
            "frame-ancestors 'none'",
            "frame-ancestors https://my.livechatinc.com https://*.livechatinc.com https://*.livechat.com",
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&framed) {
            headers.insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
        }
    }
    res
}

fn begin() -> Response {
    page(
        StatusCode::OK,
        "Signing in",
        "<div class=\"card\"><p>igbridge signs you in through LiveChat to show the status of your Instagram connections.</p>\
<p><button type=\"button\" id=\"begin\" data-next=\"/status\" data-now>Sign in with LiveChat</button></p></div>\
<noscript><div class=\"card error\"><p>The status page needs JavaScript: it ties your sign-in to this browser tab \
without cookies.</p></div></noscript>",
    )
}

fn refused(status: StatusCode, title: &str, what: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<div class=\"card error\" role=\"alert\"><p>{}</p></div><p><a class=\"button\" href=\"{}\">Sign in again</a></p>",
            esc(what),
            routes::STATUS
        ),
    )
}

/// LiveChat's answer to the sign-in (posted back by the tab): the page, for an owner or
/// administrator of an organization that has igbridge installed.
pub async fn signed_in(
    app: &Install,
    form: &HashMap<String, String>,
    state: FlowState,
) -> Response {
    if !state.bound_to(field(form, "browser")) {
        return StepError::OtherBrowser.into_response();
    }
    let set = match app
        .deps
        .livechat
        .exchange_code(
            field(form, "code"),
            &app.redirect_uri(routes::LIVECHAT_CALLBACK),
        )
        .await
    {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!(error = %e, "status sign-in: code refused");
            return refused(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                "LiveChat did not accept the sign-in (it may have expired). Please sign in again.",
            );
        }
    };
    match admit(app, &set).await {
        Ok(org) => {
            let session = FlowState {
                step: OAuthStep::Status,
                flow: nonce(),
                expires_at: app.deps.clock.now().timestamp() + SESSION_SECS,
                organization: Some(org),
                ..state
            };
            render(app, &session, None).await
        }
        Err(page) => page,
    }
}

/// The organization of a signed-in owner or administrator whose organization has igbridge
/// installed. The sign-in's tokens become the installation's when they are the installer's own
/// (or when the installation needs re-authorization: this is it); others are revoked at once.
async fn admit(app: &Install, set: &crate::livechat::TokenSet) -> Result<Organization, Response> {
    let org = signed_in_admin(app, set).await?;
    let inst = app
        .deps
        .repo
        .get::<Installation>(&Installation::key_for(&org.organization_id))
        .await
        .map_err(|e| StepError::Store(e).into_response())?;
    let Some(inst) = inst.filter(|i| i.status != InstallationStatus::Uninstalled) else {
        revoke(app, set).await;
        return Err(page(
            StatusCode::NOT_FOUND,
            "igbridge is not installed",
            "<div class=\"card\"><p>igbridge is not installed in this LiveChat organization.</p></div>\
<p><a class=\"button\" href=\"/install\">Install igbridge</a></p>",
        ));
    };
    keep_or_revoke(app, set, &inst).await?;
    Ok(org)
}

/// Keeps the sign-in's tokens as the installation's when they are the installer's own with every
/// required scope (or the installation needs re-authorization); revokes them otherwise.
async fn keep_or_revoke(
    app: &Install,
    set: &crate::livechat::TokenSet,
    inst: &Installation,
) -> Result<(), Response> {
    let granted: Vec<&str> = set
        .scope
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let complete = crate::livechat::REQUIRED_SCOPES
        .iter()
        .all(|s| granted.contains(s));
    let adopt = complete
        && (inst.status == InstallationStatus::ReauthRequired
            || set.account_id.as_deref() == Some(inst.account_id.as_str()));
    if !adopt {
        revoke(app, set).await;
        return Ok(());
    }
    match app
        .save_installation(set, &inst.organization_id, false)
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => {
            revoke(app, set).await;
            Err(refused(
                StatusCode::CONFLICT,
                "Changed meanwhile",
                "The installation changed while you signed in (it may have been uninstalled). Please sign in again.",
            ))
        }
        Err(e) => Err(StepError::Store(e).into_response()),
    }
}

/// The organization the sign-in is for, when the person is one of its owners or administrators
/// (else the sign-in's tokens are revoked and the answer says why).
async fn signed_in_admin(
    app: &Install,
    set: &crate::livechat::TokenSet,
) -> Result<Organization, Response> {
    let agents = match app.deps.livechat.agents(&set.access_token).await {
        Ok(agents) => agents,
        Err(e) => {
            tracing::warn!(error = %e, "status sign-in: list_agents refused");
            revoke(app, set).await;
            return Err(refused(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "LiveChat did not let igbridge check your role. Only an owner or administrator of the organization can see this page.",
            ));
        }
    };
    let me = agents
        .iter()
        .find(|a| a.account_id.is_some() && a.account_id == set.account_id);
    if !me.is_some_and(|a| a.is_admin()) {
        revoke(app, set).await;
        return Err(refused(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only an owner or administrator of this LiveChat organization can see igbridge's status page.",
        ));
    }
    let org = app.deps.livechat.organization(&set.access_token).await;
    let org = match (org, set.organization_id.as_deref()) {
        (Ok(o), Some(id)) if o.organization_id == id => o,
        _ => {
            revoke(app, set).await;
            return Err(refused(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                "LiveChat did not say which organization you signed in to. Please sign in again.",
            ));
        }
    };
    Ok(org)
}

/// Revokes a sign-in's tokens that the installation does not keep (best effort): LiveChat keeps
/// at most 25 per user, and an unused one should not linger.
async fn revoke(app: &Install, set: &crate::livechat::TokenSet) {
    if let Err(e) = app.deps.livechat.revoke(&set.access_token).await {
        tracing::warn!(error = %e, "could not revoke a status sign-in's token");
    }
}

/// `POST /status`: a button of the page, with the session it carries.
pub async fn act(
    State(app): State<Arc<Install>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let now = app.deps.clock.now().timestamp();
    let Some(session) = app
        .sealer
        .open(field(&form, "state"), OAuthStep::Status, now)
    else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your status session has ended (it lasts 15 minutes). Sign in again to continue.",
        );
    };
    if !session.bound_to(field(&form, "browser")) {
        return StepError::OtherBrowser.into_response();
    }
    let Some(org) = session.organization.clone() else {
        return StepError::BadState.into_response();
    };
    // Uninstalled during the session: nothing may be done for it any more.
    let installed = app
        .deps
        .repo
        .get::<Installation>(&Installation::key_for(&org.organization_id))
        .await;
    match installed {
        Ok(Some(i)) if i.status != InstallationStatus::Uninstalled => {}
        Ok(_) => {
            return refused(
                StatusCode::NOT_FOUND,
                "igbridge is not installed",
                "igbridge is no longer installed in this LiveChat organization.",
            );
        }
        Err(e) => return StepError::Store(e).into_response(),
    }
    let ig = field(&form, "ig");
    let done = match field(&form, "action") {
        "replay" => replay(&app, &org.organization_id).await,
        "reconnect" => return reconnect(&app, &session),
        "disconnect" if !ig.is_empty() => disconnect(&app, &org.organization_id, ig).await,
        _ => Ok(None),
    };
    match done {
        Ok(message) => render(&app, &session, message.as_deref()).await,
        Err(e) => StepError::Store(e).into_response(),
    }
}

/// The Replay button: accepted once (nothing parked, a request pending, or one accepted under a
/// minute ago is answered in words instead), and only an accepted request publishes the event
/// that starts a replay.
async fn replay(app: &Install, org: &str) -> Result<Option<String>, StoreError> {
    use crate::health::ReplayAsked;
    let now = app.deps.clock.now();
    let answer = match crate::health::ask_replay(&app.deps.repo, org, now).await? {
        ReplayAsked::Accepted => {
            publish_logged(
                app.deps.events.as_ref(),
                &[LifecycleEvent::new(LifecycleKind::ReplayRequested, now).org(org)],
            )
            .await;
            "Replay requested: the parked messages are being sent again, in order. Reload in a minute to see the count go down.".to_string()
        }
        ReplayAsked::NothingParked => "No message is parked, so there is nothing to replay.".into(),
        ReplayAsked::AlreadyPending(at) => format!(
            "A replay is already pending (requested {}); it runs within the hour at the latest. Reload later to see the count go down.",
            when(Some(at))
        ),
        ReplayAsked::TooSoon(from) => format!(
            "A replay was requested less than a minute ago. You can ask again from {}.",
            from.format("%H:%M:%S UTC")
        ),
    };
    Ok(Some(answer))
}

fn reconnect(app: &Install, session: &FlowState) -> Response {
    let next = FlowState {
        step: OAuthStep::Facebook,
        flow: nonce(),
        expires_at: app.deps.clock.now().timestamp() + OAUTH_STATE_TTL_SECS,
        ..session.clone()
    };
    pages::go_on(
        "Reconnect Instagram",
        &app.facebook_dialog(&app.sealer.seal(&next)),
        "Continue with Facebook",
    )
}

async fn disconnect(app: &Install, org: &str, ig: &str) -> Result<Option<String>, StoreError> {
    let done = app.lifecycle.disconnect_account(org, ig).await?;
    Ok(Some(if done {
        "The Instagram account was disconnected. Its data is deleted within 7 days; connect it again at any time with Reconnect or from the install page.".into()
    } else {
        "That Instagram account was not connected.".into()
    }))
}

/// One connection as the page shows it.
struct ConnectionView {
    conn: InstagramConnection,
    health: Option<ConnectionHealth>,
    last_in: Option<DateTime<Utc>>,
    last_out: Option<DateTime<Utc>>,
}

async fn gather(
    app: &Install,
    org: &str,
) -> Result<(Option<Installation>, Backlog, Vec<ConnectionView>), StoreError> {
    let repo = &app.deps.repo;
    let inst = repo
        .get::<Installation>(&Installation::key_for(org))
        .await?;
    let backlog = repo
        .get::<Backlog>(&keys::backlog(org))
        .await?
        .unwrap_or_else(|| Backlog::new(org));
    let conns: Vec<InstagramConnection> = repo
        .query_prefix(&keys::organization(org), keys::CONNECTION_PREFIX)
        .await?;
    let mut views = Vec::new();
    for conn in conns {
        let ig = conn.ig_account_id.clone();
        let (key_in, key_out) = (
            Activity::key_for(org, &ig, Direction::Inbound),
            Activity::key_for(org, &ig, Direction::Outbound),
        );
        views.push(ConnectionView {
            health: repo
                .get::<ConnectionHealth>(&keys::connection_health(org, &ig))
                .await?,
            last_in: repo.get::<Activity>(&key_in).await?.map(|a| a.last_at),
            last_out: repo.get::<Activity>(&key_out).await?.map(|a| a.last_at),
            conn,
        });
    }
    Ok((inst, backlog, views))
}

/// The page: the installation, the backlog and each connection, with the session's buttons.
async fn render(app: &Install, session: &FlowState, message: Option<&str>) -> Response {
    let Some(org) = session.organization.as_ref() else {
        return StepError::BadState.into_response();
    };
    let (inst, backlog, views) = match gather(app, &org.organization_id).await {
        Ok(v) => v,
        Err(e) => return StepError::Store(e).into_response(),
    };
    let token = app.sealer.seal(session);
    let mut body = String::new();
    if let Some(m) = message {
        body.push_str(&format!(
            "<div class=\"card\" role=\"status\"><p>{}</p></div>",
            esc(m)
        ));
    }
    body.push_str(&installation_card(org, inst.as_ref()));
    body.push_str(&backlog_card(&backlog, &token, app.deps.clock.now()));
    if views
        .iter()
        .all(|v| v.conn.status == ConnectionStatus::Disconnected)
    {
        body.push_str("<div class=\"card\"><p>No Instagram account is connected.</p></div>");
    }
    for v in &views {
        body.push_str(&connection_card(v, &token));
    }
    body.push_str(&button(
        &token,
        "reconnect",
        "",
        "Connect another Instagram account",
    ));
    body.push_str(&format!(
        "<p class=\"muted\">Signed in through LiveChat as an administrator of {}. Nothing is stored in your browser; \
this page's buttons work for 15 minutes, then <a href=\"{}\">sign in again</a>.</p>",
        esc(&org.name),
        routes::STATUS
    ));
    page(StatusCode::OK, "Instagram connections", &body)
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or("never".into(), |t| {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    })
}

fn button(token: &str, action: &str, ig: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"state\" value=\"{}\">\
<input type=\"hidden\" name=\"browser\" value=\"\"><input type=\"hidden\" name=\"action\" value=\"{}\">\
<input type=\"hidden\" name=\"ig\" value=\"{}\"><button type=\"submit\">{}</button></form>",
        routes::STATUS,
        esc(token),
        esc(action),
        esc(ig),
        esc(label)
    )
}

fn installation_card(org: &Organization, inst: Option<&Installation>) -> String {
    let state = match inst.map(|i| i.status) {
        Some(InstallationStatus::Active) => "<span class=\"ok\">✔ Working</span>".to_string(),
        Some(InstallationStatus::ReauthRequired) => "<span class=\"bad\">✖ Needs re-authorization</span>: LiveChat \
refused igbridge's access. Signing in here as an administrator renewed it if you see this after signing in; \
otherwise <a href=\"/install\">install igbridge again</a>.".to_string(),
        _ => "<span class=\"bad\">✖ Not installed</span>".to_string(),
    };
    format!(
        "<div class=\"card\"><h2>LiveChat</h2><dl><dt>Organization</dt><dd>{}</dd><dt>igbridge</dt><dd>{state}</dd></dl></div>",
        esc(&org.name)
    )
}

fn backlog_card(b: &Backlog, token: &str, now: DateTime<Utc>) -> String {
    let (parked, parked_blocked) = b.parked_at(now);
    let mut out = format!(
        "<div class=\"card\"><h2>Messages</h2><dl><dt>Parked</dt><dd>{}</dd>",
        if parked == 0 {
            "<span class=\"ok\">✔ none parked</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">{} message(s)</span>, {} of them waiting for a repair (sent automatically once repaired)",
                parked, parked_blocked
            )
        }
    );
    if let Some(reason) = &b.last_reason {
        out.push_str(&format!(
            "<dt>Last parked</dt><dd>{}: {}</dd>",
            when(b.last_parked_at),
            esc(reason)
        ));
    }
    if let Some(reason) = &b.delayed_reason {
        out.push_str(&format!(
            "<dt>Last delay</dt><dd>{}: {}</dd>",
            when(b.delayed_at),
            esc(reason)
        ));
    }
    if b.replayed_at.is_some() {
        out.push_str(&format!(
            "<dt>Last replay</dt><dd>{}: {} message(s) sent again</dd>",
            when(b.replayed_at),
            b.replayed
        ));
    }
    if let Some(at) = b.replay_requested_at {
        out.push_str(&format!(
            "<dt>Replay</dt><dd>already pending (requested {}): it runs within the hour at the latest</dd>",
            when(Some(at))
        ));
    }
    out.push_str("</dl>");
    if parked > 0 && b.replay_requested_at.is_none() {
        out.push_str(&button(token, "replay", "", "Replay parked messages"));
    }
    out.push_str("</div>");
    out
}

fn token_text(h: Option<&ConnectionHealth>) -> String {
    let Some(h) = h else {
        return "not checked yet".into();
    };
    match h.token {
        TokenState::Valid => "<span class=\"ok\">✔ valid</span>".into(),
        TokenState::Expiring => format!(
            "<span class=\"bad\">⚠ expires {}</span>: reconnect before then",
            when(h.token_expires_at)
        ),
        TokenState::Limited => {
            "<span class=\"bad\">⚠ missing a permission</span>: replies go out (see the problem below)".into()
        }
        TokenState::Invalid => "<span class=\"bad\">✖ refused by Facebook</span>".into(),
        TokenState::Unknown => {
            "unknown (Facebook did not answer; checked again within the hour)".into()
        }
        TokenState::Unchecked => "not checked yet".into(),
    }
}

fn subscription_text(h: Option<&ConnectionHealth>) -> String {
    match h.map(|h| h.subscription) {
        Some(SubscriptionState::Subscribed) => "<span class=\"ok\">✔ subscribed</span>".into(),
        Some(SubscriptionState::Resubscribed) => format!(
            "<span class=\"ok\">✔ restored {}</span> (Facebook had dropped it)",
            when(h.and_then(|h| h.repaired_at))
        ),
        Some(SubscriptionState::Missing) => "<span class=\"bad\">✖ missing</span>".into(),
        Some(SubscriptionState::Unknown) => "unknown (checked once the token works)".into(),
        _ => "not checked yet".into(),
    }
}

fn connection_card(v: &ConnectionView, token: &str) -> String {
    let c = &v.conn;
    let name = c
        .ig_username
        .as_deref()
        .map_or_else(|| c.ig_account_id.clone(), |u| format!("@{u}"));
    let state = match c.status {
        ConnectionStatus::Connected => "<span class=\"ok\">✔ Connected</span>",
        ConnectionStatus::Broken => {
            "<span class=\"bad\">✖ Broken</span>: replies are kept until you reconnect"
        }
        ConnectionStatus::Disconnected => "Disconnected",
    };
    let h = v.health.as_ref();
    let mut out = format!(
        "<section class=\"card\" aria-label=\"{}\"><h2>{}</h2><dl><dt>Facebook Page</dt><dd>{}</dd><dt>Connection</dt><dd>{state}</dd>\
<dt>Page token</dt><dd>{}</dd><dt>Webhook subscription</dt><dd>{}</dd><dt>Last checked</dt><dd>{}</dd>\
<dt>Last message in</dt><dd>{}</dd><dt>Last message out</dt><dd>{}</dd>",
        esc(&name),
        esc(&name),
        esc(c.page_name.as_deref().unwrap_or(&c.page_id)),
        token_text(h),
        subscription_text(h),
        when(h.and_then(|h| h.checked_at)),
        when(v.last_in),
        when(v.last_out),
    );
    if let Some(p) = h.and_then(|h| h.problem.as_deref()) {
        out.push_str(&format!("<dt>Problem</dt><dd>{}</dd>", esc(p)));
    }
    if let Some(at) = h.and_then(|h| h.silence_noted_at) {
        out.push_str(&format!(
            "<dt>Quiet</dt><dd>no message for 48 hours, noticed {}; the subscription was checked</dd>",
            when(Some(at))
        ));
    }
    out.push_str("</dl>");
    if c.status != ConnectionStatus::Disconnected {
        out.push_str(&button(
            token,
            "reconnect",
            &c.ig_account_id,
            &format!("Reconnect {name}"),
        ));
        out.push_str(&button(
            token,
            "disconnect",
            &c.ig_account_id,
            &format!("Disconnect {name}"),
        ));
    }
    out.push_str("</section>");
    out
}
