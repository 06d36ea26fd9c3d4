//! `/events`: the live event stream (server-sent events).

use super::*;

/// How often an idle event stream checks that its session is still valid.
pub(super) const SESSION_RECHECK: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    after: Option<u64>,
}

/// Live events (SSE). Each message (`event: batch`) carries a JSON array of
/// `{"id", "kind": "event"|"run", "data"}` entries: `event` data is a `tarmac_events::Event`
/// (the same stream the terminal renders), `run` data a [`RunChange`]. An entry that changed
/// host rows also carries `"rows": {"all", "rows", "phase", "fleets", "run_id"}` (a
/// [`crate::hub::RowsDelta`]): the server's rows, which the browser shows as they are
/// (`all`: they replace the whole list). The message id is the
/// last entry's id; reconnecting with `Last-Event-ID` (or `?after=`) resumes after it. When
/// the entries asked for are no longer buffered, an `event: reset` tells the client to reload
/// `/api/v1/state`. At most ~10 messages per second per client.
#[utoipa::path(get, path = "/api/v1/events", params(("after" = Option<u64>, Query, description = "resume after this id (like Last-Event-ID)")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE stream")))]
pub(super) async fn events(
    State(app): State<AppState>,
    axum::Extension(session): axum::Extension<crate::auth::Session>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let hub = app.hub.clone();
    let auth_app = app.clone();
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or(q.after)
        .unwrap_or_else(|| hub.seq());
    let rx = hub.subscribe();
    let min_gap = Duration::from_millis(100);
    let stream = futures::stream::unfold(
        (hub, rx, after, None::<Instant>, (auth_app, session.id)),
        move |(hub, mut rx, mut after, last, who)| async move {
            loop {
                // The stream ends with its session (logout, idle, lifetime).
                if !who.0.auth.is_live(&who.1) {
                    return None;
                }
                if let Some(t) = last {
                    let since = t.elapsed();
                    if since < min_gap {
                        tokio::time::sleep(min_gap - since).await;
                    }
                }
                rx.borrow_and_update();
                match hub.since(after) {
                    Since::Gap { seq } => {
                        after = seq;
                        let ev = SseEvent::default()
                            .event("reset")
                            .id(seq.to_string())
                            .data(format!("{{\"seq\":{seq}}}"));
                        return Some((Ok(ev), (hub, rx, after, Some(Instant::now()), who)));
                    }
                    Since::Entries(v) if !v.is_empty() => {
                        after = v.last().map_or(after, |e| e.id);
                        let mut data = String::with_capacity(v.len() * 128);
                        data.push('[');
                        for (i, e) in v.iter().enumerate() {
                            if i > 0 {
                                data.push(',');
                            }
                            data.push_str(&e.to_json());
                        }
                        data.push(']');
                        let ev = SseEvent::default()
                            .event("batch")
                            .id(after.to_string())
                            .data(data);
                        return Some((Ok(ev), (hub, rx, after, Some(Instant::now()), who)));
                    }
                    Since::Entries(_) => {
                        tokio::select! {
                            changed = rx.changed() => if changed.is_err() {
                                return None;
                            },
                            () = tokio::time::sleep(SESSION_RECHECK) => {}
                        }
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
