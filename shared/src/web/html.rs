//! What the app serves to browsers and plain clients: one page layout with one stylesheet and
//! one small inline script, and the security headers every answer carries. The Content Security
//! Policy allows exactly that stylesheet and script (by hash), nothing from anywhere else, no
//! framing, and forms that post only to this origin.

use std::sync::LazyLock;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

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
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}\
.muted{color:#4a525c}.error{border-color:#b3261e}code{background:#eef0f3;padding:.1rem .3rem;border-radius:4px}\
.ok{color:#146c2e;font-weight:600}.bad{color:#b3261e;font-weight:600}form.inline{display:inline-block;margin:.5rem .5rem 0 0}";

/// The install flow's browser side. On the start page, a click on `#begin` (a click, so a link
/// from elsewhere cannot start a flow by itself; the status page's sign-in, which only shows an
/// admin their own organization, clicks it itself: `data-now`) creates the flow's secret, keeps it in this
/// tab's `sessionStorage` (never a cookie) and goes on with its SHA-256; on
/// every later page it copies the secret into the forms' `browser` fields and submits a form
/// marked `data-auto` (the platforms' redirects arrive as GETs and are posted back this way) or
/// follows a link marked `data-go` (leaving a posted page by a redirect to another origin would
/// break `form-action 'self'`).
/// A tab that did not start the flow has no secret, so the server refuses its posts.
pub const SCRIPT: &str = "(function(){var K='igbridge.install';\
function b64(a){var s='';for(var i=0;i<a.length;i++){s+=String.fromCharCode(a[i]);}\
return btoa(s).replace(/\\+/g,'-').replace(/\\//g,'_').replace(/=+$/,'');}\
var begin=document.getElementById('begin');\
if(begin){begin.addEventListener('click',function(){\
var r=new Uint8Array(32);crypto.getRandomValues(r);var s=b64(r);sessionStorage.setItem(K,s);\
crypto.subtle.digest('SHA-256',new TextEncoder().encode(s)).then(function(h){\
location.assign(begin.getAttribute('data-next')+'?b='+b64(new Uint8Array(h)));});});\
if(begin.hasAttribute('data-now')){begin.click();}return;}\
var v=sessionStorage.getItem(K)||'';\
document.querySelectorAll('input[name=browser]').forEach(function(e){e.value=v;});\
var f=document.querySelector('form[data-auto]');if(f){f.submit();return;}\
var go=document.querySelector('a[data-go]');if(go){location.replace(go.href);}})();";

fn sha256_source(s: &str) -> String {
    format!("'sha256-{}'", STANDARD.encode(Sha256::digest(s.as_bytes())))
}

static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src {}; style-src {}; img-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'",
        sha256_source(SCRIPT),
        sha256_source(STYLE)
    ))
    .expect("the policy is ASCII")
});

/// The headers of every answer: no sniffing, no referrer, never cached, never framed.
fn security_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

/// A whole page.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">\
<title>{} · igbridge</title><style>{STYLE}</style></head><body><main>\
<p class=\"muted\">igbridge · Instagram Direct for LiveChat</p><h1>{}</h1>{body}</main>\
<script>{SCRIPT}</script></body></html>",
        esc(title),
        esc(title)
    );
    (
        status,
        security_headers(),
        [(header::CONTENT_SECURITY_POLICY, CSP.clone())],
        Html(html),
    )
        .into_response()
}

/// A plain-text answer (webhooks, the handshake echo), never sniffed as HTML.
pub fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        security_headers(),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body.into(),
    )
        .into_response()
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

    #[test]
    fn every_page_carries_the_policy_and_the_policy_allows_only_its_own_script_and_style() {
        let r = page(StatusCode::OK, "T", "<p>x</p>");
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains(&sha256_source(SCRIPT)) && csp.contains(&sha256_source(STYLE)));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(
            plain(StatusCode::OK, "x").headers()["x-content-type-options"],
            "nosniff"
        );
    }
}
