//! The install pages: server-rendered HTML with the one small script of `super::html` (it ties
//! the flow to the browser tab), no external resources, no cookies; readable on a phone, with
//! headings, labels and sufficient contrast.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{esc, page};
use crate::domain::OAuthStep;
use crate::install::{Install, NotEligible, Offer};
use crate::livechat::Organization;
use crate::routes;

/// `?b=`: the SHA-256 of the tab's flow secret (`GET /install`, `GET /status`).
#[derive(Deserialize)]
pub struct Start {
    b: Option<String>,
}

/// `GET /install` and `GET /status`: `begin`, the page that creates the tab's flow secret; with
/// `?b=<its hash>`, on to LiveChat with a state for `step` bound to the tab.
pub fn to_livechat(
    app: &Install,
    start: Start,
    step: OAuthStep,
    begin: fn() -> Response,
) -> Response {
    match start.b.map(|b| app.sign_in_with_livechat(&b, step)) {
        Some(Some(Ok(url))) => Redirect::to(&url).into_response(),
        Some(Some(Err(e))) => e.into_response(),
        Some(None) | None => begin(),
    }
}

/// Something failed; says what and offers a retry.
pub fn error(status: StatusCode, title: &str, what: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<div class=\"card error\" role=\"alert\"><p>{}</p></div><p><a class=\"button\" href=\"/install\">Start the installation again</a></p>",
            esc(what)
        ),
    )
}

/// The start: the script creates this tab's flow secret and goes on to LiveChat.
pub fn begin() -> Response {
    page(
        StatusCode::OK,
        "Connecting Instagram to LiveChat",
        &format!(
            "<div class=\"card\"><p>igbridge answers your Instagram Direct messages from LiveChat. First you authorize it \
in LiveChat, then you log in with Facebook and choose the Page of your Instagram professional account; before \
anything is connected you see both and confirm.</p></div>\
<p><button type=\"button\" id=\"begin\" data-next=\"{}\">Continue to LiveChat</button></p>\
<noscript><div class=\"card error\"><p>The installation needs JavaScript: it ties every step to this browser tab, so a \
link forwarded to someone else cannot connect their Instagram account to your LiveChat.</p></div></noscript>",
            routes::INSTALL
        ),
    )
}

/// A platform's redirect, posted back with this tab's flow secret (the script submits it).
pub fn post_back(action: &str, fields: &[(&str, &str)]) -> Response {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Continuing the installation",
        &format!(
            "<form method=\"post\" action=\"{}\" data-auto class=\"card\">{hidden}\
<input type=\"hidden\" name=\"browser\" value=\"\"><p>One moment…</p>\
<noscript><p><button type=\"submit\">Continue</button></p></noscript></form>",
            esc(action)
        ),
    )
}

/// On to another site (the Facebook dialog) after a posted step: a link the script follows at
/// once (a redirect answering a form post would be blocked by `form-action 'self'`).
pub fn go_on(title: &str, to: &str, label: &str) -> Response {
    page(
        StatusCode::OK,
        title,
        &format!(
            "<p><a class=\"button\" data-go href=\"{}\">{}</a></p>",
            esc(to),
            esc(label)
        ),
    )
}

/// A step of a flow that another browser (or tab) started: refused, nothing stored.
pub fn other_browser() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Start the installation in your own browser",
        "<div class=\"card error\" role=\"alert\"><p>This installation was started in a different browser or tab. \
igbridge only continues an installation in the browser tab that started it, so a forwarded link cannot connect your \
Instagram account to someone else's LiveChat. Nothing was connected.</p><p>If you want to connect Instagram to \
your own LiveChat, start from the LiveChat Marketplace or the button below.</p></div>\
<p><a class=\"button\" href=\"/install\">Start the installation</a></p>",
    )
}

/// What a confirmation page shows about the LiveChat organization.
fn organization_card(org: &Organization) -> String {
    format!(
        "<dl><dt>LiveChat organization</dt><dd>{}</dd><dt>Owner</dt><dd>{}</dd><dt>Organization ID</dt><dd><code>{}</code></dd></dl>",
        esc(&org.name),
        esc(org.owner_email.as_deref().unwrap_or("unknown")),
        esc(&org.organization_id)
    )
}

fn not_eligible_list(rest: &[NotEligible]) -> String {
    if rest.is_empty() {
        return String::new();
    }
    let items: String = rest
        .iter()
        .map(|p| {
            format!(
                "<li><strong>{}</strong>: {}</li>",
                esc(&p.page_name),
                esc(p.reason)
            )
        })
        .collect();
    format!("<h2>Pages that cannot be connected</h2><ul class=\"muted\">{items}</ul>")
}

/// No Page that can be connected; lists the Pages seen and why each cannot be.
pub fn no_pages(rest: &[NotEligible]) -> Response {
    page(
        StatusCode::OK,
        "No Instagram account found",
        &format!(
            "<div class=\"card\"><p>None of the Facebook Pages you manage can be connected: a Page needs a linked Instagram \
professional account, and your Facebook user needs to be able to manage its messages.</p>{}<ol><li>Open Meta Business \
Suite and link your Instagram professional account to a Facebook Page (Settings → Linked accounts → Instagram).</li>\
<li>Make sure your Facebook user has full control of that Page, or the Messages task.</li><li>Start again and allow \
igbridge access to that Page.</li></ol></div><p><a class=\"button\" href=\"/install\">Start the installation again</a></p>",
            not_eligible_list(rest)
        ),
    )
}

/// The confirmation: which LiveChat organization (name, owner) and which Page and Instagram
/// account, with an explicit POST; the Pages that cannot be connected are listed below it.
pub fn confirm(offer: &Offer) -> Response {
    let (org, rest) = (&offer.organization, &offer.not_eligible);
    let mut options = String::new();
    for (i, c) in offer.pages.iter().enumerate() {
        let ig = c
            .ig_username
            .as_deref()
            .map(|u| format!(" — Instagram @{}", esc(u)))
            .unwrap_or_default();
        options.push_str(&format!(
            "<label for=\"page-{i}\"><input type=\"radio\" id=\"page-{i}\" name=\"page_id\" value=\"{}\"{}> Facebook Page {}{}</label>",
            esc(&c.page_id),
            if i == 0 { " checked" } else { "" },
            esc(&c.page_name),
            ig
        ));
    }
    page(
        StatusCode::OK,
        "Confirm the connection",
        &format!(
            "<div class=\"card\"><p>Instagram Direct messages will be answered from this LiveChat organization:</p>{}\
<p class=\"muted\">Continue only if this is your organization. If someone sent you a link to get here, close this page: \
nothing has been connected.</p></div>\
<form method=\"post\" action=\"{}\" class=\"card\"><fieldset>\
<legend>Which Instagram account should LiveChat answer?</legend>{options}</fieldset>\
<input type=\"hidden\" name=\"state\" value=\"{}\"><input type=\"hidden\" name=\"browser\" value=\"\">\
<p><button type=\"submit\">Connect to {}</button></p></form>{}",
            organization_card(org),
            routes::FACEBOOK_SELECT,
            esc(&offer.state),
            esc(&org.name),
            not_eligible_list(rest)
        ),
    )
}

/// Connected.
pub fn success(ig_username: Option<&str>, page_name: &str) -> Response {
    let who = ig_username
        .map(|u| format!("@{}", esc(u)))
        .unwrap_or_else(|| "your Instagram account".into());
    page(
        StatusCode::OK,
        "Instagram is connected",
        &format!(
            "<div class=\"card\"><p><strong>{who}</strong> (Facebook Page {}) is now connected to LiveChat.</p>\
<h2>What happens next</h2><ul><li>New Instagram Direct messages appear as chats in LiveChat.</li>\
<li>Agents answer from LiveChat; replies reach the customer on Instagram.</li>\
<li>Replies are possible within Instagram's messaging window (24 hours, or 7 days for human agents).</li></ul>\
<h2>Check on it</h2><p>The <a href=\"/status\">status page</a> shows whether each connected account is working, and lets you replay held messages, reconnect or disconnect an account.</p>\
<h2>To disconnect</h2><p>Disconnect one account on the status page, or uninstall igbridge from the LiveChat Marketplace: tokens are revoked at once and all data is deleted within 7 days.</p></div>",
            esc(page_name)
        ),
    )
}

/// The Instagram account belongs to another live installation.
pub fn already_connected(ig_username: Option<&str>) -> Response {
    let who = ig_username
        .map(|u| format!("@{}", esc(u)))
        .unwrap_or_else(|| "This Instagram account".into());
    page(
        StatusCode::CONFLICT,
        "Already connected elsewhere",
        &format!(
            "<div class=\"card error\" role=\"alert\"><p>{who} is already connected to another LiveChat account. \
Uninstall igbridge there first, then try again.</p></div><p><a class=\"button\" href=\"/install\">Start the installation again</a></p>"
        ),
    )
}
