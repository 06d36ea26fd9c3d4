//! Authentication and CSRF protection.
//!
//! The server prints a URL with a one-time login token. Visiting it exchanges the token for a
//! session: a random id in an `HttpOnly; SameSite=Strict` cookie (plus `Secure` under TLS).
//! Every other route needs the session. State-changing requests (anything but GET/HEAD) also
//! need the session's CSRF token in the `X-Tarmac-CSRF` header (the page gets it in a
//! `<meta>` tag), and a browser `Origin` / `Sec-Fetch-Site` that says same-origin.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use crate::AppState;

pub const COOKIE: &str = "tarmac_session";
pub const CSRF_HEADER: &str = "x-tarmac-csrf";
/// A session unused for this long is forgotten.
const IDLE: Duration = Duration::from_secs(12 * 3600);
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

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
}

struct Inner {
    login_tokens: Vec<String>,
    sessions: HashMap<String, (String, Instant)>,
}

pub struct Auth {
    inner: Mutex<Inner>,
    /// Cookies get `Secure` (served over TLS).
    pub secure: bool,
}

impl Auth {
    pub fn new(secure: bool) -> Self {
        Auth {
            inner: Mutex::new(Inner {
                login_tokens: Vec::new(),
                sessions: HashMap::new(),
            }),
            secure,
        }
    }

    /// A new one-time login token (the oldest unused ones are dropped beyond a few).
    pub fn new_login_token(&self) -> String {
        let t = random_token();
        let mut g = self.inner.lock().expect("auth poisoned");
        g.login_tokens.push(t.clone());
        if g.login_tokens.len() > MAX_LOGIN_TOKENS {
            g.login_tokens.remove(0);
        }
        t
    }

    /// Exchange a login token for a new session; the token cannot be used again.
    pub fn redeem(&self, token: &str) -> Option<Session> {
        let mut g = self.inner.lock().expect("auth poisoned");
        let pos = g.login_tokens.iter().position(|t| ct_eq(t, token))?;
        g.login_tokens.remove(pos);
        let now = Instant::now();
        g.sessions
            .retain(|_, (_, seen)| now.duration_since(*seen) < IDLE);
        if g.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = g
                .sessions
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(k, _)| k.clone())
        {
            g.sessions.remove(&oldest);
        }
        let s = Session {
            id: random_token(),
            csrf: random_token(),
        };
        g.sessions.insert(s.id.clone(), (s.csrf.clone(), now));
        Some(s)
    }

    /// The session a request's cookie names, if it is valid (and mark it used).
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut g = self.inner.lock().expect("auth poisoned");
        let now = Instant::now();
        let key = g.sessions.keys().find(|k| ct_eq(k, &id))?.clone();
        let (csrf, seen) = g.sessions.get_mut(&key)?;
        if now.duration_since(*seen) >= IDLE {
            g.sessions.remove(&key);
            return None;
        }
        *seen = now;
        Some(Session {
            id: key,
            csrf: csrf.clone(),
        })
    }

    /// `Set-Cookie` for a session.
    pub fn set_cookie(&self, s: &Session) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
            s.id,
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

/// Why a state-changing request is refused, if it is.
pub fn csrf_problem(
    method: &Method,
    headers: &HeaderMap,
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
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if origin_authority(origin) != Some(host) {
            return Some("Origin does not match Host");
        }
    }
    None
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

const LOGIN_NEEDED: &str = "<!doctype html><html><head><meta charset=utf-8><title>Tarmac — sign in</title></head><body><h1>Sign in to the Tarmac installer</h1><p>Open the login URL that <code>tarmac web</code> printed on the terminal where it runs. The link works once; to get a new one, send the server <code>SIGUSR1</code> (<code>kill -USR1 &lt;pid&gt;</code>) and it prints a fresh URL.</p></body></html>";

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
                "authentication required: open the login URL printed by `tarmac web`",
            );
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN_NEEDED,
        )
            .into_response();
    };
    if let Some(why) = csrf_problem(req.method(), req.headers(), &session) {
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
        Some(s) => {
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
        None if app.auth.session(&headers).is_some() => {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN_NEEDED.replace(
                "Open the login URL",
                "This login link was already used or is not valid. Open the login URL",
            ),
        )
            .into_response(),
    }
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

    #[test]
    fn tokens_are_one_time_and_sessions_found_by_cookie() {
        let a = Auth::new(false);
        let t = a.new_login_token();
        assert_eq!(t.len(), 64);
        let s = a.redeem(&t).unwrap();
        assert!(a.redeem(&t).is_none(), "a login token works once");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={}", s.id)).unwrap(),
        );
        assert_eq!(a.session(&h).unwrap().csrf, s.csrf);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("tarmac_session=nope"),
        );
        assert!(a.session(&h).is_none());
        assert_eq!(
            a.set_cookie(&Session {
                id: "abc".into(),
                csrf: String::new()
            }),
            "tarmac_session=abc; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(Auth::new(true).set_cookie(&s).ends_with("; Secure"));
    }

    #[test]
    fn csrf_rules() {
        let s = Session {
            id: "i".into(),
            csrf: "c".into(),
        };
        let mut h = HeaderMap::new();
        assert_eq!(csrf_problem(&Method::GET, &h, &s), None);
        assert!(csrf_problem(&Method::POST, &h, &s).is_some());
        h.insert(CSRF_HEADER, HeaderValue::from_static("c"));
        assert_eq!(csrf_problem(&Method::POST, &h, &s), None);
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9000"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9000"),
        );
        assert_eq!(csrf_problem(&Method::PUT, &h, &s), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert_eq!(
            csrf_problem(&Method::PUT, &h, &s),
            Some("Origin does not match Host")
        );
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(csrf_problem(&Method::DELETE, &h, &s).is_some());
    }
}
