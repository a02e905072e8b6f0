//! Who may use the console, and what every response carries.
//!
//! Without a token the console only listens on loopback, and anyone who can reach it is the
//! local operator. With `RELAY_CONSOLE_TOKEN` every page but the login form needs a session:
//! the form's token is compared in constant time (an HMAC of it under a key drawn at start,
//! verified with `ring`), and a random session id is set as an `HttpOnly`, `SameSite=Strict`
//! cookie. Every POST must carry the CSRF token of its session (of the console, without a
//! token) in its form; [`guard`] checks it before any handler runs.

use super::Console;
use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "relay_console_session";

/// How long a session lasts after its login; the cookie says the same.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 60 * 60);

/// How long a wrong token's answer is held back, so guessing is slow.
const WRONG_TOKEN_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Largest form body a POST may carry (a pasted event for Render).
pub const FORM_LIMIT: usize = 2 * 1024 * 1024;

/// The Content-Security-Policy of every response: only the console's own script and style,
/// no inline script, no framing, forms post only to the console.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'";

/// Sessions and CSRF tokens.
pub struct Auth {
    /// HMAC key and the token's tag under it; `None` when no login is required.
    token: Option<(hmac::Key, hmac::Tag)>,
    /// Session id → its CSRF token and when it started.
    sessions: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// The CSRF token of requests without a session (the login form; every form when no
    /// login is required).
    anonymous_csrf: String,
}

/// Who made a request, for the audit log: the peer, and the session (a prefix of its id's
/// hash, never the id).
#[derive(Debug, Clone)]
pub struct Who(pub String);

/// The CSRF token of the request's session, for its forms.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

impl Auth {
    /// `token`: the login token, or `None` for no login.
    pub fn new(token: Option<String>) -> Self {
        let token = token.map(|t| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, random_hex().as_bytes());
            let tag = hmac::sign(&key, t.as_bytes());
            (key, tag)
        });
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
            anonymous_csrf: random_hex(),
        }
    }

    /// Whether a login is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    pub(super) fn token_matches(&self, candidate: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|(key, tag)| hmac::verify(key, candidate.as_bytes(), tag.as_ref()).is_ok())
    }

    /// The CSRF token of `session`, if it is a live session. Expired sessions are dropped.
    pub(super) fn session_csrf(&self, session: &str) -> Option<String> {
        let mut sessions = self.sessions.lock().ok()?;
        sessions.retain(|_, (_, started)| started.elapsed() < SESSION_LIFETIME);
        sessions.get(session).map(|(csrf, _)| csrf.clone())
    }

    /// Starts a session; returns its id.
    pub(super) fn start_session(&self) -> String {
        let id = random_hex();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(id.clone(), (random_hex(), std::time::Instant::now()));
        }
        id
    }
}

/// 32 random bytes as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG only fails when the OS has none; a console without one must not start
    // with guessable sessions.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short, stable name for a session in logs: never the id itself.
fn session_label(session: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, session.as_bytes());
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("session {hex}")
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Whether two CSRF tokens are equal, in time independent of where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"csrf");
    hmac::verify(&key, a.as_bytes(), hmac::sign(&key, b.as_bytes()).as_ref()).is_ok()
}

/// The gate in front of every route: assets and the login form are open; every other page
/// needs a session when a login is required (pages redirect to the form, anything else gets
/// 401); every POST needs the CSRF token (403 without it). Hands the handlers [`Who`] and
/// [`Csrf`] as request extensions.
pub async fn guard(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let auth = &console.auth;
    let state_changing = request.method() != Method::GET && request.method() != Method::HEAD;
    if let Err(why) = same_site(request.headers(), auth.required(), state_changing) {
        tracing::warn!(target: "console", who = %peer, path, why, "refused: foreign host or origin");
        console.count("host", "refused", 0);
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    let open = path.starts_with("/assets/") || path == "/login";
    let session = cookie(request.headers(), SESSION_COOKIE)
        .and_then(|id| auth.session_csrf(&id).map(|csrf| (id, csrf)));
    if auth.required() && session.is_none() && !open {
        return if request.method() == Method::GET {
            Redirect::to("/login").into_response()
        } else {
            (StatusCode::UNAUTHORIZED, "log in first\n").into_response()
        };
    }
    let (who, csrf) = match &session {
        Some((id, csrf)) => (format!("{peer} {}", session_label(id)), csrf.clone()),
        None => (peer.to_string(), auth.anonymous_csrf.clone()),
    };
    let mut request = request;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        request = match check_csrf(request, &csrf).await {
            Ok(request) => request,
            Err(response) => {
                tracing::warn!(target: "console", who, path, "refused: a POST without the CSRF token");
                console.count("csrf", "refused", 0);
                return response;
            }
        };
    }
    request.extensions_mut().insert(Who(who));
    request.extensions_mut().insert(Csrf(csrf));
    next.run(request).await
}

/// Refuses a request another site could have made through the user's browser:
/// - without a login (a loopback console), a `Host` that is not a loopback name: a page that
///   rebinds its own domain to 127.0.0.1 (DNS rebinding) reaches the console under that
///   domain's name, and would otherwise read and act as the user;
/// - a state-changing request whose `Origin` names another host than `Host`.
pub(super) fn same_site(
    headers: &axum::http::HeaderMap,
    login: bool,
    state_changing: bool,
) -> Result<(), &'static str> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !login && !is_loopback_host(host_name(host)) {
        return Err("this console answers only to a loopback host name (127.0.0.1, localhost)");
    }
    if let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|_| state_changing)
    {
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err("the request comes from another site (Origin)");
        }
    }
    Ok(())
}

/// `host[:port]` without the port (`[::1]:8088` is `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_loopback_host(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads the form body, checks its `csrf` field against `expected`, and puts the body back.
async fn check_csrf(request: Request, expected: &str) -> Result<Request, Response> {
    let refused = |why: &'static str| (StatusCode::FORBIDDEN, why).into_response();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n").into_response())?;
    let sent = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned());
    match sent {
        Some(sent) if same(&sent, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(refused("missing or wrong CSRF token\n")),
    }
}

/// Security headers on every response: the strict CSP, no sniffing, no referrer to other sites, no caching
/// (pages show dead letters), no framing.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        // `same-origin`, not `no-referrer`: the console's own form POSTs then carry their real
        // `Origin` (with `no-referrer` browsers send `Origin: null`), which [`same_site`]
        // checks; other sites still get no referrer.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<&'static str>,
}

/// `GET /login`: the form (or the home page when no login is required).
pub async fn login_form(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
) -> Response {
    if !console.auth.required() {
        return Redirect::to("/").into_response();
    }
    page(LoginPage {
        csrf: csrf.0,
        error: None,
    })
}

/// The login form's fields.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: a right token starts a session; a wrong one shows the form again (401).
pub async fn login(
    State(console): State<Arc<Console>>,
    axum::Extension(who): axum::Extension<Who>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let auth = &console.auth;
    if !auth.token_matches(&form.token) {
        tokio::time::sleep(WRONG_TOKEN_DELAY).await;
        tracing::warn!(target: "console", who = who.0, "login refused: wrong token");
        console.count("login", "refused", 0);
        let mut response = page(LoginPage {
            csrf: csrf.0,
            error: Some("wrong token"),
        });
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let id = auth.start_session();
    tracing::info!(target: "console", who = who.0, session = session_label(&id), "logged in");
    console.count("login", "ok", 0);
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: ends the session.
pub async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let (Some(id), Ok(mut sessions)) = (
        cookie(&headers, SESSION_COOKIE),
        console.auth.sessions.lock(),
    ) {
        sessions.remove(&id);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "relay_console_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

/// A rendered template as an HTML response (500 with a plain line if it fails to render).
pub fn page(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(target: "console", "a page failed to render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render\n",
            )
                .into_response()
        }
    }
}
