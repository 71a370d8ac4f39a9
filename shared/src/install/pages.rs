//! The install pages: server-rendered HTML, no scripts, no external fonts, no cookies; readable
//! on a phone, with headings, labels and sufficient contrast.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24;line-height:1.5}\
main{max-width:36rem;margin:0 auto;padding:2rem 1.25rem}h1{font-size:1.6rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin:1.25rem 0 .5rem}\
.card{background:#fff;border:1px solid #d4d8de;border-radius:10px;padding:1.25rem;margin:1rem 0}\
.button,button{display:inline-block;background:#0b57d0;color:#fff;border:0;border-radius:8px;padding:.75rem 1.25rem;font-size:1rem;text-decoration:none;cursor:pointer}\
.button:focus,button:focus,input:focus{outline:3px solid #f5a623;outline-offset:2px}\
fieldset{border:0;padding:0;margin:0}label{display:block;padding:.75rem;border:1px solid #d4d8de;border-radius:8px;margin:.5rem 0;background:#fff}\
.muted{color:#4a525c}.error{border-color:#b3261e}code{background:#eef0f3;padding:.1rem .3rem;border-radius:4px}";

/// A whole page.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">\
<title>{} · igbridge</title><style>{STYLE}</style></head><body><main>\
<p class=\"muted\">igbridge · Instagram Direct for LiveChat</p><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    );
    (status, [("cache-control", "no-store")], Html(html)).into_response()
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

/// Before Facebook Login after a Marketplace install without our state: names the LiveChat
/// account, so a forged link cannot silently bind someone's Page to another account.
pub fn confirm(organization_id: &str, account_id: &str, facebook_url: &str) -> Response {
    page(
        StatusCode::OK,
        "Connect Instagram to LiveChat",
        &format!(
            "<div class=\"card\"><p>igbridge is installed for the LiveChat organization <code>{}</code> \
(installed by account <code>{}</code>).</p><p>Next, log in with Facebook and choose the Facebook Page \
linked to your Instagram professional account.</p><p class=\"muted\">If you did not start this installation, \
close this page: nothing will be connected.</p></div>\
<p><a class=\"button\" href=\"{}\">Continue with Facebook</a></p>",
            esc(organization_id),
            esc(account_id),
            esc(facebook_url)
        ),
    )
}

/// A Page the person manages that cannot be connected, and why.
pub struct NotEligible {
    /// Page name.
    pub page_name: String,
    /// Why not.
    pub reason: &'static str,
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

/// A Page offered in the chooser.
pub struct Choice<'a> {
    /// Page id.
    pub page_id: &'a str,
    /// Page name.
    pub page_name: &'a str,
    /// Instagram username.
    pub ig_username: Option<&'a str>,
}

/// The page chooser: a form posting the chosen Page id and the signed state; the Pages that
/// cannot be connected are listed below it with the reason.
pub fn chooser(state: &str, choices: &[Choice<'_>], rest: &[NotEligible]) -> Response {
    let mut options = String::new();
    for (i, c) in choices.iter().enumerate() {
        let ig = c
            .ig_username
            .map(|u| format!(" — Instagram @{}", esc(u)))
            .unwrap_or_default();
        options.push_str(&format!(
            "<label for=\"page-{i}\"><input type=\"radio\" id=\"page-{i}\" name=\"page_id\" value=\"{}\"{}> {}{}</label>",
            esc(c.page_id),
            if i == 0 { " checked" } else { "" },
            esc(c.page_name),
            ig
        ));
    }
    page(
        StatusCode::OK,
        "Choose the Instagram account",
        &format!(
            "<form method=\"post\" action=\"/oauth/facebook/select\" class=\"card\"><fieldset>\
<legend>Which Page's Instagram account should answer customers from LiveChat?</legend>{options}</fieldset>\
<input type=\"hidden\" name=\"state\" value=\"{}\"><p><button type=\"submit\">Connect this account</button></p></form>{}",
            esc(state),
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
<h2>To disconnect</h2><p>Uninstall igbridge from the LiveChat Marketplace. Tokens are revoked at once and all data is deleted within 7 days.</p></div>",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_shown() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
