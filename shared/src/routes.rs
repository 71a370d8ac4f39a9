//! The public HTTP routes, the app's external contract (ARCHITECTURE.md): the routers serve
//! these paths, and template.yaml declares the same set (tests/tests/end_to_end/template.rs keeps them in step).

/// `GET /install`: start an install (the page creates the tab's flow secret); `GET /install?b=`
/// with the secret's hash: on to LiveChat's authorization with a state bound to the tab.
pub const INSTALL: &str = "/install";
/// `GET /oauth/livechat/callback`: LiveChat's redirect (a page that posts the code back with
/// the browser's secret); `POST`: that post.
pub const LIVECHAT_CALLBACK: &str = "/oauth/livechat/callback";
/// `GET /oauth/facebook/callback`: Facebook's redirect (posted back the same way); `POST`.
pub const FACEBOOK_CALLBACK: &str = "/oauth/facebook/callback";
/// `POST /oauth/facebook/select`: the confirmation (the Page chosen, the organization shown).
pub const FACEBOOK_SELECT: &str = "/oauth/facebook/select";
/// `GET` (handshake) and `POST` (events) `/webhooks/instagram`.
pub const INSTAGRAM_WEBHOOK: &str = "/webhooks/instagram";
/// `POST /webhooks/livechat`: LiveChat chat webhooks.
pub const LIVECHAT_WEBHOOK: &str = "/webhooks/livechat";
/// `POST /webhooks/livechat/app`: LiveChat app webhooks.
pub const LIVECHAT_APP_WEBHOOK: &str = "/webhooks/livechat/app";
/// `POST /meta/deauthorize`: Meta's deauthorize callback.
pub const META_DEAUTHORIZE: &str = "/meta/deauthorize";
/// `POST /meta/data-deletion`: Meta's data deletion callback.
pub const META_DATA_DELETION: &str = "/meta/data-deletion";
/// `GET /meta/data-deletion/{code}`: the deletion status page.
pub const META_DELETION_STATUS: &str = "/meta/data-deletion/{code}";

/// `GET /status`: the LiveChat admin's status page (signs in through LiveChat, then shows each
/// connection); `POST`: its buttons (replay, reconnect, disconnect), with the signed session.
pub const STATUS: &str = "/status";
/// `GET /status/widget`: what LiveChat's app settings frame shows: a link that opens the status
/// page in its own tab (LiveChat's sign-in cannot run inside a frame).
pub const STATUS_WIDGET: &str = "/status/widget";

/// The Lambda functions that serve HTTP; `Services::router` builds each one's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpFunction {
    /// `functions/oauth-install`.
    OauthInstall,
    /// `functions/instagram-webhook`.
    InstagramWebhook,
    /// `functions/livechat-webhook`.
    LivechatWebhook,
    /// `functions/uninstall`.
    Uninstall,
}

impl HttpFunction {
    /// All of them.
    pub const ALL: [HttpFunction; 4] = [
        HttpFunction::OauthInstall,
        HttpFunction::InstagramWebhook,
        HttpFunction::LivechatWebhook,
        HttpFunction::Uninstall,
    ];

    /// The function's crate (and binary) name under `functions/`.
    pub fn crate_name(self) -> &'static str {
        match self {
            HttpFunction::OauthInstall => "oauth-install",
            HttpFunction::InstagramWebhook => "instagram-webhook",
            HttpFunction::LivechatWebhook => "livechat-webhook",
            HttpFunction::Uninstall => "uninstall",
        }
    }
}

/// One route: method, path (API Gateway and axum share the `{param}` syntax) and the function
/// that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// The function serving it.
    pub function: HttpFunction,
}

const fn route(method: &'static str, path: &'static str, function: HttpFunction) -> Route {
    Route {
        method,
        path,
        function,
    }
}

/// Every public route.
pub const ROUTES: &[Route] = &[
    route("GET", INSTALL, HttpFunction::OauthInstall),
    route("GET", LIVECHAT_CALLBACK, HttpFunction::OauthInstall),
    route("POST", LIVECHAT_CALLBACK, HttpFunction::OauthInstall),
    route("GET", FACEBOOK_CALLBACK, HttpFunction::OauthInstall),
    route("POST", FACEBOOK_CALLBACK, HttpFunction::OauthInstall),
    route("POST", FACEBOOK_SELECT, HttpFunction::OauthInstall),
    route("GET", INSTAGRAM_WEBHOOK, HttpFunction::InstagramWebhook),
    route("POST", INSTAGRAM_WEBHOOK, HttpFunction::InstagramWebhook),
    route("POST", LIVECHAT_WEBHOOK, HttpFunction::LivechatWebhook),
    route("POST", LIVECHAT_APP_WEBHOOK, HttpFunction::Uninstall),
    route("POST", META_DEAUTHORIZE, HttpFunction::Uninstall),
    route("POST", META_DATA_DELETION, HttpFunction::Uninstall),
    route("GET", META_DELETION_STATUS, HttpFunction::Uninstall),
    route("GET", STATUS, HttpFunction::OauthInstall),
    route("POST", STATUS, HttpFunction::OauthInstall),
    route("GET", STATUS_WIDGET, HttpFunction::OauthInstall),
];
