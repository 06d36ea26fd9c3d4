//! Authentication and CSRF protection.
//!
//! The server prints a URL with a one-time login token. Visiting it exchanges the token for a
//! session: a random id in an `HttpOnly; SameSite=Strict` cookie (plus `Secure` under TLS).
//! Every other route needs the session. State-changing requests (anything but GET/HEAD) also
//! need the session's CSRF token in the `X-Tarmac-CSRF` header (the page gets it in a
//! `<meta>` tag), and a browser `Origin` / `Sec-Fetch-Site` that says same-origin.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use crate::AppState;

pub const COOKIE: &str = "tarmac_session";
pub const CSRF_HEADER: &str = "x-tarmac-csrf";
/// How long a printed login URL works (once).
pub const LOGIN_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);
/// A session with no request for this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(2 * 3600);
/// A session ends this long after its login, however busy.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 64;
const MAX_LOGIN_TOKENS: usize = 16;

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Compare without an early exit on the first differing byte.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the time comes from (injectable, so lifetimes can be tested without waiting).
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().expect("clock poisoned") += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().expect("clock poisoned")
    }
}

/// How long login tokens and sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// A login token unused for this long is refused.
    pub login_token_ttl: Duration,
    /// A session with no request for this long ends.
    pub session_idle: Duration,
    /// A session ends this long after its login.
    pub session_lifetime: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            login_token_ttl: LOGIN_TOKEN_TTL,
            session_idle: SESSION_IDLE,
            session_lifetime: SESSION_LIFETIME,
        }
    }
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
}

/// Why a login token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Issued, but longer ago than the token lifetime.
    Expired,
    /// Never issued, already used, or dropped for newer ones.
    Unknown,
}

struct SessionRec {
    csrf: String,
    created: Instant,
    seen: Instant,
}

struct Inner {
    /// Token and when it was printed.
    login_tokens: Vec<(String, Instant)>,
    sessions: HashMap<String, SessionRec>,
}

pub struct Auth {
    inner: Mutex<Inner>,
    /// Cookies get `Secure` (served over TLS).
    pub secure: bool,
    pub limits: AuthLimits,
    clock: Arc<dyn Clock>,
}

impl Auth {
    /// Default lifetimes, the system clock.
    pub fn new(secure: bool) -> Self {
        Auth::with_clock(secure, AuthLimits::default(), Arc::new(SystemClock))
    }

    pub fn with_clock(secure: bool, limits: AuthLimits, clock: Arc<dyn Clock>) -> Self {
        Auth {
            inner: Mutex::new(Inner {
                login_tokens: Vec::new(),
                sessions: HashMap::new(),
            }),
            secure,
            limits,
            clock,
        }
    }

    fn live(&self, rec: &SessionRec, now: Instant) -> bool {
        now.duration_since(rec.seen) < self.limits.session_idle
            && now.duration_since(rec.created) < self.limits.session_lifetime
    }

    /// A new one-time login token, valid for [`AuthLimits::login_token_ttl`] (the oldest
    /// unused ones are dropped beyond a few).
    pub fn new_login_token(&self) -> String {
        let t = random_token();
        let now = self.clock.now();
        let mut g = self.inner.lock().expect("auth poisoned");
        g.login_tokens.push((t.clone(), now));
        if g.login_tokens.len() > MAX_LOGIN_TOKENS {
            g.login_tokens.remove(0);
        }
        t
    }

    /// Exchange a login token for a new session; the token cannot be used again (an expired
    /// one neither).
    pub fn redeem(&self, token: &str) -> Result<Session, LoginRefused> {
        let now = self.clock.now();
        let mut g = self.inner.lock().expect("auth poisoned");
        let pos = g
            .login_tokens
            .iter()
            .position(|(t, _)| ct_eq(t, token))
            .ok_or(LoginRefused::Unknown)?;
        let (_, issued) = g.login_tokens.remove(pos);
        if now.duration_since(issued) >= self.limits.login_token_ttl {
            return Err(LoginRefused::Expired);
        }
        g.sessions.retain(|_, rec| self.live(rec, now));
        if g.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = g
                .sessions
                .iter()
                .min_by_key(|(_, rec)| rec.seen)
                .map(|(k, _)| k.clone())
        {
            g.sessions.remove(&oldest);
        }
        let s = Session {
            id: random_token(),
            csrf: random_token(),
        };
        g.sessions.insert(
            s.id.clone(),
            SessionRec {
                csrf: s.csrf.clone(),
                created: now,
                seen: now,
            },
        );
        Ok(s)
    }

    /// The session a request's cookie names, if it is still valid (and mark it used). A
    /// session idle too long or past its lifetime is ended.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let now = self.clock.now();
        let mut g = self.inner.lock().expect("auth poisoned");
        let key = g.sessions.keys().find(|k| ct_eq(k, &id))?.clone();
        let rec = g.sessions.get(&key)?;
        if !self.live(rec, now) {
            g.sessions.remove(&key);
            return None;
        }
        let rec = g.sessions.get_mut(&key)?;
        rec.seen = now;
        Some(Session {
            id: key,
            csrf: rec.csrf.clone(),
        })
    }

    /// Whether session `id` is still valid, without marking it used (long-lived streams
    /// check this to end when the session does).
    pub fn is_live(&self, id: &str) -> bool {
        let now = self.clock.now();
        let g = self.inner.lock().expect("auth poisoned");
        g.sessions.get(id).is_some_and(|rec| self.live(rec, now))
    }

    /// End a session (logout).
    pub fn end(&self, id: &str) {
        self.inner
            .lock()
            .expect("auth poisoned")
            .sessions
            .remove(id);
    }

    /// `Set-Cookie` for a session (the browser drops it at the session's lifetime).
    pub fn set_cookie(&self, s: &Session) -> String {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            s.id,
            self.limits.session_lifetime.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';').find_map(|kv| {
                let (k, val) = kv.trim().split_once('=')?;
                (k == name).then(|| val.to_owned())
            })
        })
}

/// `scheme://host[:port]` of an Origin header → `host[:port]` to compare with `Host`.
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(rest.trim_end_matches('/'))
}

/// The authority a request was sent to: its `Host` header, or (HTTP/2) the URI's authority.
pub fn request_authority<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// Why a state-changing request is refused, if it is.
pub fn csrf_problem(
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    session: &Session,
) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) if ct_eq(t, &session.csrf) => {}
        _ => return Some("missing or wrong X-Tarmac-CSRF header"),
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Some("cross-site request refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = request_authority(headers, uri).unwrap_or_default();
        if origin_authority(origin) != Some(host) {
            return Some("Origin does not match Host");
        }
    }
    None
}

/// The host names the server answers to (checked against `Host`, so that a page on a
/// rebound DNS name cannot talk to it). Ports are not compared: an SSH tunnel may use
/// another local port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAllowlist {
    ips: Vec<IpAddr>,
    names: Vec<String>,
    /// Bound to every interface (`0.0.0.0`, `[::]`): any IP address literal is fine (an IP
    /// cannot be rebound; names still have to be listed).
    any_ip: bool,
}

/// An `--allowed-host` value that is not a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--allowed-host {name:?} is not a host name: {why}")]
pub struct BadAllowedHost {
    pub name: String,
    pub why: &'static str,
}

impl tarmac_types::error_report::Hint for BadAllowedHost {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(
            "give a DNS name or an IP address without scheme, port or path, e.g. --allowed-host installer.example.com"
                .into(),
        )
    }
}

/// `host` of `host[:port]` / `[v6][:port]`, lowercased without a trailing dot.
fn host_part(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        format!("[{inside}]")
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => {
                h.to_owned()
            }
            Some(_) => return None,
            None => authority.to_owned(),
        }
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
    (!host.is_empty()).then_some(host)
}

fn as_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

impl HostAllowlist {
    /// The bound address; `localhost`, `127.0.0.1` and `[::1]` for a loopback or wildcard
    /// bind; any IP literal for a wildcard bind; plus `extra` names.
    pub fn new(listen: SocketAddr, extra: &[String]) -> Result<HostAllowlist, BadAllowedHost> {
        let ip = listen.ip();
        let mut l = HostAllowlist {
            ips: Vec::new(),
            names: Vec::new(),
            any_ip: ip.is_unspecified(),
        };
        if !ip.is_unspecified() {
            l.ips.push(ip);
        }
        if ip.is_loopback() || ip.is_unspecified() {
            for lo in [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ] {
                if !l.ips.contains(&lo) {
                    l.ips.push(lo);
                }
            }
            l.names.push("localhost".into());
        }
        for name in extra {
            let bad = |why| BadAllowedHost {
                name: name.clone(),
                why,
            };
            let n = name.trim().to_ascii_lowercase();
            let n = n.strip_suffix('.').unwrap_or(&n);
            if let Some(ip) = as_ip(n) {
                if !l.ips.contains(&ip) {
                    l.ips.push(ip);
                }
                continue;
            }
            if n.is_empty() {
                return Err(bad("it is empty"));
            }
            if n.contains("://") || n.contains('/') || n.contains(':') {
                return Err(bad("it has a scheme, port or path"));
            }
            if n.starts_with('.')
                || n.starts_with('-')
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            {
                return Err(bad("only letters, digits, `.`, `-` and `_` are allowed"));
            }
            if !l.names.iter().any(|x| x == n) {
                l.names.push(n.to_owned());
            }
        }
        Ok(l)
    }

    /// May a request with this `Host` be answered?
    pub fn allows(&self, authority: &str) -> bool {
        let Some(host) = host_part(authority) else {
            return false;
        };
        match as_ip(&host) {
            Some(ip) => self.any_ip || self.ips.contains(&ip),
            None => self.names.contains(&host),
        }
    }

    /// For messages: `127.0.0.1, [::1], localhost`.
    pub fn describe(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        if self.any_ip {
            v.push("any IP address".into());
        }
        v.extend(self.ips.iter().map(|ip| match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }));
        v.extend(self.names.iter().cloned());
        v.join(", ")
    }
}

fn text_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Outermost layer: refuse requests whose `Host` is not on the allowlist (421), or that
/// have none (400), before anything else looks at them.
pub async fn check_host(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(authority) = request_authority(req.headers(), req.uri()) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "The request has no Host header.\n".into(),
        );
    };
    let allow = &app.opts.allowed_hosts;
    if !allow.allows(authority) {
        let shown: String = authority.chars().take(100).collect();
        let name = host_part(authority).unwrap_or_else(|| shown.clone());
        return text_response(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "This Tarmac web installer does not answer to the host {shown:?} (it answers to {}).\nhint: open the URL `tarmac web` printed, or start it with --allowed-host {name} if that is the name you reach it by\n",
                allow.describe()
            ),
        );
    }
    next.run(req).await
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `10 minutes`, `90 seconds`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s % 3600, s % 60) {
        (0, _) if s >= 3600 => format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" }),
        (_, 0) if s >= 60 => format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" }),
        _ => format!("{s} second{}", if s == 1 { "" } else { "s" }),
    }
}

/// The sign-in page (401): why, then how to get a login URL.
pub fn login_page(why: &str, ttl: Duration) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Tarmac — sign in</title></head><body><h1>Sign in to the Tarmac installer</h1><p>{why}Open the login URL that <code>tarmac web</code> printed on the terminal where it runs. A login URL works once, within {} of being printed. To get a new one, send the server <code>SIGUSR1</code> (<code>kill -USR1 &lt;pid&gt;</code>) and it prints a fresh URL, or run <code>tarmac web</code> again.</p></body></html>",
        human(ttl)
    )
}

fn login_needed(app: &AppState, why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        login_page(why, app.auth.limits.login_token_ttl),
    )
        .into_response()
}

/// Every route behind this layer needs a session (401 otherwise); unsafe methods also need
/// the CSRF token (403 otherwise).
pub async fn require_session(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(session) = app.auth.session(req.headers()) else {
        if req.uri().path().starts_with("/api/") {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "authentication required: open the login URL printed by `tarmac web` (`kill -USR1 <pid>` prints a new one)",
            );
        }
        return login_needed(&app, "");
    };
    if let Some(why) = csrf_problem(req.method(), req.headers(), req.uri(), &session) {
        return json_error(StatusCode::FORBIDDEN, why);
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// `GET /login?token=…`: exchange the one-time token for a session cookie and go to `/`.
pub async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    match app.auth.redeem(token) {
        Ok(s) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(v) = HeaderValue::from_str(&app.auth.set_cookie(&s)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        // A reload of the login URL in a browser that is already signed in.
        Err(_) if app.auth.session(&headers).is_some() => {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
        }
        Err(LoginRefused::Expired) => login_needed(&app, "This login link has expired. "),
        Err(LoginRefused::Unknown) => {
            login_needed(&app, "This login link was already used or is not valid. ")
        }
    }
}

/// `POST /logout` (session and CSRF checked by [`require_session`]): end the session and
/// drop its cookie.
pub async fn logout(
    State(app): State<AppState>,
    axum::Extension(s): axum::Extension<Session>,
) -> Response {
    app.auth.end(&s.id);
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"signed_out":true}"#,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&app.auth.clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Headers on every response: no caching, no framing, no sniffing, no referrer (the login
/// URL carries a token), a strict content security policy.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={id}")).unwrap(),
        );
        h
    }

    #[test]
    fn tokens_are_one_time_and_sessions_found_by_cookie() {
        let a = Auth::new(false);
        let t = a.new_login_token();
        assert_eq!(t.len(), 64);
        let s = a.redeem(&t).unwrap();
        assert_eq!(
            a.redeem(&t).unwrap_err(),
            LoginRefused::Unknown,
            "a login token works once"
        );
        assert_eq!(a.session(&with_cookie(&s.id)).unwrap().csrf, s.csrf);
        assert!(a.session(&with_cookie("nope")).is_none());
        assert_eq!(
            a.set_cookie(&Session {
                id: "abc".into(),
                csrf: String::new()
            }),
            "tarmac_session=abc; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict"
        );
        assert!(Auth::new(true).set_cookie(&s).ends_with("; Secure"));
        assert_eq!(
            a.clear_cookie(),
            "tarmac_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
        a.end(&s.id);
        assert!(a.session(&with_cookie(&s.id)).is_none(), "logged out");
    }

    #[test]
    fn login_tokens_expire() {
        let clock = Arc::new(ManualClock::default());
        let a = Auth::with_clock(false, AuthLimits::default(), clock.clone());
        let old = a.new_login_token();
        clock.advance(LOGIN_TOKEN_TTL - Duration::from_secs(1));
        let fresh = a.new_login_token();
        assert!(a.redeem(&fresh).is_ok());
        clock.advance(Duration::from_secs(1));
        assert_eq!(a.redeem(&old).unwrap_err(), LoginRefused::Expired);
        assert_eq!(
            a.redeem(&old).unwrap_err(),
            LoginRefused::Unknown,
            "an expired token is forgotten once refused"
        );
    }

    #[test]
    fn sessions_end_when_idle_and_at_their_lifetime() {
        let clock = Arc::new(ManualClock::default());
        let limits = AuthLimits {
            login_token_ttl: Duration::from_secs(60),
            session_idle: Duration::from_secs(100),
            session_lifetime: Duration::from_secs(250),
        };
        let a = Auth::with_clock(false, limits, clock.clone());
        let busy = a.redeem(&a.new_login_token()).unwrap();
        let idle = a.redeem(&a.new_login_token()).unwrap();
        // Used every 90 s: alive past the idle limit, until the absolute lifetime.
        for _ in 0..2 {
            clock.advance(Duration::from_secs(90));
            assert!(a.session(&with_cookie(&busy.id)).is_some());
        }
        assert!(a.session(&with_cookie(&idle.id)).is_none(), "idle 180 s");
        clock.advance(Duration::from_secs(69));
        assert!(a.is_live(&busy.id));
        assert!(a.session(&with_cookie(&busy.id)).is_some(), "249 s old");
        clock.advance(Duration::from_secs(1));
        assert!(!a.is_live(&busy.id));
        assert!(a.session(&with_cookie(&busy.id)).is_none(), "250 s old");
    }

    #[test]
    fn csrf_rules() {
        let s = Session {
            id: "i".into(),
            csrf: "c".into(),
        };
        let uri = Uri::from_static("/api/v1/config");
        let mut h = HeaderMap::new();
        assert_eq!(csrf_problem(&Method::GET, &h, &uri, &s), None);
        assert!(csrf_problem(&Method::POST, &h, &uri, &s).is_some());
        h.insert(CSRF_HEADER, HeaderValue::from_static("c"));
        assert_eq!(csrf_problem(&Method::POST, &h, &uri, &s), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:9000"),
        );
        // HTTP/2: no Host header, the authority is in the URI.
        let h2 = Uri::from_static("https://127.0.0.1:9000/api/v1/config");
        assert_eq!(csrf_problem(&Method::PUT, &h, &h2, &s), None);
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9000"));
        assert_eq!(csrf_problem(&Method::PUT, &h, &uri, &s), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert_eq!(
            csrf_problem(&Method::PUT, &h, &uri, &s),
            Some("Origin does not match Host")
        );
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(csrf_problem(&Method::DELETE, &h, &uri, &s).is_some());
    }

    #[test]
    fn host_allowlist() {
        let lo = HostAllowlist::new("127.0.0.1:9000".parse().unwrap(), &[]).unwrap();
        for ok in [
            "127.0.0.1:9000",
            "127.0.0.1",
            "localhost:8000",
            "LOCALHOST.",
            "[::1]:9000",
        ] {
            assert!(lo.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9000",
            "10.0.0.1:9000",
            "localhost.evil.example",
            "::1",
            "",
            "[::1]x",
        ] {
            assert!(!lo.allows(bad), "{bad}");
        }
        assert_eq!(lo.describe(), "127.0.0.1, [::1], localhost");

        let named = HostAllowlist::new(
            "10.0.0.5:9443".parse().unwrap(),
            &["Installer.Example.com".into(), "10.0.0.6".into()],
        )
        .unwrap();
        assert!(named.allows("installer.example.com:9443"));
        assert!(named.allows("10.0.0.5:9443") && named.allows("10.0.0.6"));
        assert!(!named.allows("localhost:9443") && !named.allows("10.0.0.7"));
        assert_eq!(
            named.describe(),
            "10.0.0.5, 10.0.0.6, installer.example.com"
        );

        let any = HostAllowlist::new("0.0.0.0:9443".parse().unwrap(), &[]).unwrap();
        assert!(
            any.allows("192.168.1.20:9443") && any.allows("[fe80::1]") && any.allows("localhost")
        );
        assert!(!any.allows("rebound.example:9443"));
        assert_eq!(
            any.describe(),
            "any IP address, 127.0.0.1, [::1], localhost"
        );

        let err = HostAllowlist::new(
            "127.0.0.1:9000".parse().unwrap(),
            &["https://x.example:9000".into()],
        )
        .unwrap_err();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&err),
            "--allowed-host \"https://x.example:9000\" is not a host name: it has a scheme, port or path\nhint: give a DNS name or an IP address without scheme, port or path, e.g. --allowed-host installer.example.com"
        );
    }

    #[test]
    fn login_page_text() {
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human(Duration::from_secs(90)), "90 seconds");
        assert_eq!(
            login_page("This login link has expired. ", LOGIN_TOKEN_TTL),
            "<!doctype html><html><head><meta charset=utf-8><title>Tarmac — sign in</title></head><body><h1>Sign in to the Tarmac installer</h1><p>This login link has expired. Open the login URL that <code>tarmac web</code> printed on the terminal where it runs. A login URL works once, within 10 minutes of being printed. To get a new one, send the server <code>SIGUSR1</code> (<code>kill -USR1 &lt;pid&gt;</code>) and it prints a fresh URL, or run <code>tarmac web</code> again.</p></body></html>"
        );
    }
}
