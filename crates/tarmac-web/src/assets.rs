//! The pages: one HTML shell, a stylesheet and a script, embedded in the binary (no CDN,
//! no build step: plain HTML/CSS/JavaScript under `assets/`).

use axum::Extension;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::auth::Session;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const FAVICON: &str = include_str!("../assets/favicon.svg");

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON) }),
        )
}

fn asset(ty: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ty)], body).into_response()
}

/// The page shell with this session's CSRF token in a `<meta>` tag.
async fn index(Extension(s): Extension<Session>) -> Html<String> {
    Html(INDEX.replace("{{csrf}}", &s.csrf))
}
