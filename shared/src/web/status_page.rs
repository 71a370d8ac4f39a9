//! The status page as the LiveChat admin sees it (`GET`/`POST /status`, `GET /status/widget`):
//! the sign-in start, the page drawn from `crate::install::status::StatusView`, the answers to
//! its buttons, and the pages that say why a sign-in or a button was refused.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::html::{esc, page};
use super::install_pages::{self, Start, to_livechat};
use crate::connection::records::{Backlog, ConnectionHealth, SubscriptionState, TokenState};
use crate::domain::*;
use crate::health::ReplayAsked;
use crate::install::state::FlowState;
use crate::install::status::{Acted, ConnectionView, StatusAction, StatusView};
use crate::install::{Install, Posted, StepError};
use crate::livechat::Organization;
use crate::routes;

/// A button of the page: the session, the tab's secret, what to do and to which account.
#[derive(Deserialize)]
pub(super) struct ButtonPost {
    #[serde(default)]
    state: String,
    #[serde(default)]
    browser: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    ig: String,
}

impl ButtonPost {
    fn action(&self) -> StatusAction {
        match self.action.as_str() {
            "replay" => StatusAction::Replay,
            "reconnect" => StatusAction::Reconnect,
            "disconnect" => StatusAction::Disconnect(self.ig.as_str().into()),
            _ => StatusAction::Show,
        }
    }
}

/// `GET /status`: the page that starts this tab's sign-in at once; `GET /status?b=<binding>`:
/// on to LiveChat's authorization with a state bound to the tab.
pub(super) async fn start(State(app): State<Arc<Install>>, Query(q): Query<Start>) -> Response {
    to_livechat(&app, q, OAuthStep::StatusSignIn, begin)
}

/// `GET /status/widget`: LiveChat shows an app's settings in a frame of its Agent App, where
/// LiveChat's own sign-in cannot run; this page (the one page that may be framed, and only by
/// LiveChat) opens the status page in a tab of its own.
pub(super) async fn widget() -> Response {
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
    headers.remove(header::X_FRAME_OPTIONS);
    if let Some(csp) = headers.get(header::CONTENT_SECURITY_POLICY) {
        let framed = csp.to_str().unwrap_or_default().replace(
            "frame-ancestors 'none'",
            "frame-ancestors https://my.livechatinc.com https://*.livechatinc.com https://*.livechat.com",
        );
        if let Ok(v) = HeaderValue::from_str(&framed) {
            headers.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    res
}

/// The page that starts the sign-in (the script creates the tab's secret).
pub(super) fn begin() -> Response {
    page(
        StatusCode::OK,
        "Signing in",
        "<div class=\"card\"><p>igbridge signs you in through LiveChat to show the status of your Instagram connections.</p>\
<p><button type=\"button\" id=\"begin\" data-next=\"/status\" data-now>Sign in with LiveChat</button></p></div>\
<noscript><div class=\"card error\"><p>The status page needs JavaScript: it ties your sign-in to this browser tab \
without cookies.</p></div></noscript>",
    )
}

fn sign_in_again(status: StatusCode, title: &str, what: &str) -> Response {
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

/// The page of a status sign-in or button that was refused (the install's refusals are drawn
/// by `super::oauth_install`).
pub(super) fn refused(e: StepError) -> Response {
    let (status, title, what) = match e {
        StepError::SignInRefused(_) => (
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            "LiveChat did not accept the sign-in (it may have expired). Please sign in again.",
        ),
        StepError::RoleUnknown(_) => (
            StatusCode::FORBIDDEN,
            "Not allowed",
            "LiveChat did not let igbridge check your role. Only an owner or administrator of the organization can see this page.",
        ),
        StepError::NotAdmin => (
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only an owner or administrator of this LiveChat organization can see igbridge's status page.",
        ),
        StepError::OrganizationUnknown => (
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            "LiveChat did not say which organization you signed in to. Please sign in again.",
        ),
        StepError::ChangedMeanwhile => (
            StatusCode::CONFLICT,
            "Changed meanwhile",
            "The installation changed while you signed in (it may have been uninstalled). Please sign in again.",
        ),
        StepError::SignedOut => (
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your status session has ended (it lasts 15 minutes). Sign in again to continue.",
        ),
        StepError::NoLongerInstalled => (
            StatusCode::NOT_FOUND,
            "igbridge is not installed",
            "igbridge is no longer installed in this LiveChat organization.",
        ),
        StepError::NotInstalled => return not_installed(),
        // Only the status page's refusals come here (`super::oauth_install` draws the rest).
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Something went wrong",
            "The status page could not be shown. Please sign in again.",
        ),
    };
    sign_in_again(status, title, what)
}

fn not_installed() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "igbridge is not installed",
        "<div class=\"card\"><p>igbridge is not installed in this LiveChat organization.</p></div>\
<p><a class=\"button\" href=\"/install\">Install igbridge</a></p>",
    )
}

/// `POST /status`: a button of the page, with the session it carries.
pub(super) async fn act(
    State(app): State<Arc<Install>>,
    Form(form): Form<ButtonPost>,
) -> Result<Response, StepError> {
    let posted = Posted {
        state: &form.state,
        browser: &form.browser,
    };
    let (session, acted) = app.act(posted, form.action()).await?;
    let message = match acted {
        Acted::Shown => None,
        Acted::Replay(asked) => Some(replay_answer(asked)),
        Acted::Disconnected(true) => Some("The Instagram account was disconnected. Its data is deleted within 7 days; connect it again at any time with Reconnect or from the install page.".to_string()),
        Acted::Disconnected(false) => Some("That Instagram account was not connected.".to_string()),
        Acted::Reconnect(facebook) => {
            return Ok(install_pages::go_on(
                "Reconnect Instagram",
                &facebook,
                "Continue with Facebook",
            ));
        }
    };
    show(&app, &session, message.as_deref()).await
}

/// What the Replay button did, in words.
fn replay_answer(asked: ReplayAsked) -> String {
    match asked {
        ReplayAsked::Accepted => "Replay requested: the parked messages are being sent again, in order. Reload in a minute to see the count go down.".to_string(),
        ReplayAsked::NothingParked => "No message is parked, so there is nothing to replay.".into(),
        ReplayAsked::AlreadyPending(at) => format!(
            "A replay is already pending (requested {}); it runs within the hour at the latest. Reload later to see the count go down.",
            when(Some(at))
        ),
        ReplayAsked::TooSoon(from) => format!(
            "A replay was requested less than a minute ago. You can ask again from {}.",
            from.format("%H:%M:%S UTC")
        ),
    }
}

/// The page of a session: the installation, the backlog and each connection, with buttons.
pub(super) async fn show(
    app: &Install,
    session: &FlowState,
    message: Option<&str>,
) -> Result<Response, StepError> {
    let view = app.status_view(session).await?;
    Ok(render(&view, message))
}

fn render(view: &StatusView, message: Option<&str>) -> Response {
    let (org, token) = (&view.organization, view.session.as_str());
    let mut body = String::new();
    if let Some(m) = message {
        body.push_str(&format!(
            "<div class=\"card\" role=\"status\"><p>{}</p></div>",
            esc(m)
        ));
    }
    body.push_str(&installation_card(org, view.installation.as_ref()));
    body.push_str(&backlog_card(&view.backlog, token, view.now));
    if view
        .connections
        .iter()
        .all(|v| v.conn.status == ConnectionStatus::Disconnected)
    {
        body.push_str("<div class=\"card\"><p>No Instagram account is connected.</p></div>");
    }
    for v in &view.connections {
        body.push_str(&connection_card(v, token));
    }
    body.push_str(&button(
        token,
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

/// "1 message", "2 messages".
fn messages(n: impl Into<u64>) -> String {
    match n.into() {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    }
}

fn backlog_card(b: &Backlog, token: &str, now: DateTime<Utc>) -> String {
    let (parked, parked_blocked) = b.parked_at(now);
    let mut out = format!(
        "<div class=\"card\"><h2>Messages</h2><dl><dt>Parked</dt><dd>{}</dd>",
        if parked == 0 {
            "<span class=\"ok\">✔ none parked</span>".to_string()
        } else {
            let waiting = match parked_blocked {
                0 => "none".to_string(),
                n => n.to_string(),
            };
            format!(
                "<span class=\"bad\">{}</span>, {waiting} of them waiting for a repair (sent automatically once repaired)",
                messages(parked)
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
            "<dt>Last replay</dt><dd>{}: {} sent again</dd>",
            when(b.replayed_at),
            messages(b.replayed)
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
        .map_or_else(|| c.ig_account_id.to_string(), |u| format!("@{u}"));
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
