//! `/runs`, `/history`, `/runs/{run_id}`, host logs and the logs archive: past runs from their journals.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct RunListItem {
    pub run_id: String,
    pub stage: String,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<tarmac_events::Summary>,
    pub hosts: usize,
}

/// The most the API reads of one run journal (a journal of 10,000 hosts is a few MB).
pub(super) const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

pub(super) fn safe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
}

pub(super) fn read_journal(state_dir: &Path, run_id: &str) -> ApiResult<RunRecord> {
    if !safe_id(run_id) {
        return Err(ApiError::not_found("no such run"));
    }
    let path = state_dir.join("runs").join(format!("{run_id}.json"));
    let body = files::read_bounded(&path, MAX_JOURNAL, true).map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found(format!("no run `{run_id}`"))
        } else {
            ApiError::internal(e.chain())
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))
}

/// Every recorded run, newest first.
#[utoipa::path(get, path = "/api/v1/runs", responses((status = 200, body = [RunListItem])))]
pub(super) async fn list_runs(State(app): State<AppState>) -> ApiResult<Json<Vec<RunListItem>>> {
    let dir = app.state_dir().join("runs");
    let list = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let Ok(body) = std::fs::read(&p) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<RunRecord>(&body) else {
                continue;
            };
            out.push(RunListItem {
                run_id: rec.run_id,
                stage: rec.stage.as_str().to_owned(),
                started_unix: rec.started_unix,
                finished_unix: rec.finished_unix,
                summary: rec.summary,
                hosts: rec.hosts.len(),
            });
        }
        out.sort_by(|a, b| {
            b.started_unix
                .cmp(&a.started_unix)
                .then(b.run_id.cmp(&a.run_id))
        });
        out
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(list))
}

/// The cluster ledger (`genconf/state/ledger.jsonl`), verified: every genconf, deploy,
/// upgrade, rollback and uninstall, oldest first. A damaged or truncated ledger is a 409 whose
/// error says which line and how to recover.
#[utoipa::path(get, path = "/api/v1/history",
    responses((status = 200, description = "the ledger entries, oldest first"), (status = 409, body = ErrorBody)))]
pub(super) async fn history(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let state = app.state_dir();
    let entries =
        tokio::task::spawn_blocking(move || tarmac_installer::ledger::Ledger::new(&state).read())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, chain(&e)))?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

/// One run's journal: per host, role, last step, outcome, failing step, last output lines.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", params(("run_id" = String, Path)),
    responses((status = 200, description = "the run journal (genconf/state/runs/<run_id>.json)"), (status = 404, body = ErrorBody)))]
pub(super) async fn get_run(
    State(app): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> ApiResult<Json<RunJournal>> {
    read_journal(&app.state_dir(), &run_id).map(|record| {
        Json(RunJournal {
            rows: journal_rows(&record),
            record,
        })
    })
}

/// A run journal as served: the record, plus its host rows as the shared
/// [`tarmac_events::HostRows`] fold computes them (what the live view shows).
#[derive(Serialize)]
pub struct RunJournal {
    #[serde(flatten)]
    pub record: RunRecord,
    pub rows: Vec<tarmac_events::HostRow>,
}

/// The rows of a journal: its hosts replayed into [`tarmac_events::HostRows`] as the events
/// that wrote it (stage start, each host's step, output tail, failed step and end). A host
/// with no outcome is `unfinished`.
pub fn journal_rows(rec: &RunRecord) -> Vec<tarmac_events::HostRow> {
    use tarmac_events::{Event, HostRef, HostRows, Stream};
    let mut rows = HostRows::new();
    let at = rec.started_unix * 1000;
    rows.apply_at(
        &Event::StageStarted {
            run_id: rec.run_id.clone(),
            stage: rec.stage,
            hosts: rec
                .hosts
                .iter()
                .map(|(addr, h)| HostRef {
                    addr: addr.clone(),
                    role: h.role,
                })
                .collect(),
        },
        at,
    );
    for (host, h) in &rec.hosts {
        if let Some(step) = &h.step {
            rows.apply_at(
                &Event::StepStarted {
                    host: host.clone(),
                    step: step.clone(),
                },
                at,
            );
        }
        for line in &h.tail {
            rows.apply_at(
                &Event::Output {
                    host: host.clone(),
                    step: h.step.clone().unwrap_or_default(),
                    stream: Stream::Stdout,
                    line: line.clone(),
                },
                at,
            );
        }
        // The journal keeps the first step that finished unsuccessfully, also while the host
        // has no outcome yet (it is still running, or the run was interrupted): replay it
        // as the failed step it was (the fold reads only that it did not succeed).
        if let Some(step) = &h.failed_step {
            let outcome = h
                .outcome
                .clone()
                .filter(|o| !o.is_success())
                .unwrap_or_else(|| tarmac_events::Outcome::Failed {
                    exit_code: None,
                    signal: None,
                    message: format!("{step} failed"),
                });
            rows.apply_at(
                &Event::StepFinished {
                    host: host.clone(),
                    step: step.clone(),
                    outcome,
                    duration_ms: 0,
                },
                at,
            );
        }
        if let Some(outcome) = &h.outcome {
            rows.apply_at(
                &Event::HostFinished {
                    host: host.clone(),
                    outcome: outcome.clone(),
                    duration_ms: h.duration_ms.unwrap_or(0),
                },
                at,
            );
        }
    }
    let mut out = rows.rows().to_vec();
    for r in &mut out {
        let h = rec.hosts.iter().find(|(a, _)| a.to_string() == r.host);
        if let Some((_, h)) = h {
            if h.outcome.is_none() {
                r.state = HostState::Unfinished;
            }
            r.duration_ms = h.duration_ms;
            r.started_unix_ms = None;
        }
    }
    out
}

/// A host's full log of one run (text/plain).
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/logs/{host}", params(("run_id" = String, Path), ("host" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub(super) async fn host_log(
    State(app): State<AppState>,
    UrlPath((run_id, host)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    let path = log_path(&app.state_dir(), &run_id, &host)?;
    let body = tokio::task::spawn_blocking(move || match files::read_tail(&path, MAX_READ) {
        Ok((tail, size)) if size > tail.len() as u64 => {
            let mut b = format!(
                "(log truncated: the last {} of {size} bytes; `tarmac logs --archive FILE` or the log archive has all of it)\n",
                tail.len()
            )
            .into_bytes();
            b.extend_from_slice(&tail);
            Ok(b)
        }
        Ok((tail, _)) => Ok(tail),
        Err(e) if e.is_not_found() => Ok(b"(no output was logged for this host)\n".to_vec()),
        Err(e) => Err(ApiError::internal(e.chain())),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// Where a host's log of a run is. An upgrade or rollback logs every fleet of the run into
/// one file per host under the whole run's id: it is found from that id (the live view's)
/// or from any of its fleets' journal ids.
pub(super) fn log_path(state_dir: &Path, run_id: &str, host: &str) -> ApiResult<PathBuf> {
    let logs = state_dir.join("logs");
    let not_part = || ApiError::not_found(format!("host `{host}` is not part of run `{run_id}`"));
    let rolling = |whole: &str| -> ApiResult<PathBuf> {
        let addr: tarmac_types::HostAddr = host.parse().map_err(|_| not_part())?;
        let dir = tarmac_ssh::LogDir::new(logs.join(whole));
        [Stage::Upgrade, Stage::Rollback]
            .iter()
            .map(|st| dir.path(st.as_str(), &addr))
            .find(|p| p.is_file())
            .ok_or_else(not_part)
    };
    match read_journal(state_dir, run_id) {
        Ok(rec) => {
            let in_run = rec.hosts.keys().find(|h| h.to_string() == host);
            if let Some(addr) = in_run {
                let p = tarmac_ssh::LogDir::new(logs.join(run_id)).path(rec.stage.as_str(), addr);
                if p.exists() || split_fleet_run_id(run_id).is_none() {
                    return Ok(p);
                }
            }
            match split_fleet_run_id(run_id) {
                Some((whole, _)) if matches!(rec.stage, Stage::Upgrade | Stage::Rollback) => {
                    rolling(whole)
                }
                _ => Err(not_part()),
            }
        }
        // The whole run of an upgrade or rollback has no journal of its own, only logs.
        Err(e) => {
            if safe_id(run_id) && logs.join(run_id).is_dir() {
                rolling(run_id)
            } else {
                Err(e)
            }
        }
    }
}

/// Every run journal and host log as one .tar.zst, for support.
#[utoipa::path(get, path = "/api/v1/logs/archive",
    responses((status = 200, content_type = "application/zstd", description = "tar.zst of genconf/state/runs and genconf/state/logs")))]
pub(super) async fn logs_archive(State(app): State<AppState>) -> ApiResult<Response> {
    let state = app.state_dir();
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut f = tempfile::tempfile()?;
        tarmac_installer::support::write_log_archive(&state, &f)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))?;
        Ok(f)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("cannot build the log archive: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let name = format!("tarmac-logs-{}.tar.zst", now_ms() / 1000);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarmac_events::Outcome;
    use tarmac_installer::journal::HostRecord;

    #[test]
    fn journal_rows_are_the_shared_fold_of_the_journal() {
        let host = |role, step: &str, outcome, tail: &[&str]| HostRecord {
            role: Some(role),
            step: Some(step.to_owned()),
            outcome,
            failed_step: None,
            duration_ms: Some(1200),
            tail: tail.iter().map(|s| s.to_string()).collect(),
        };
        let rec = RunRecord {
            run_id: "deploy-1".into(),
            stage: Stage::Deploy,
            started_unix: 1_700_000_000,
            finished_unix: None,
            summary: None,
            hosts: [
                (
                    "10.0.0.1".parse().unwrap(),
                    host(Role::Master, "install", Some(Outcome::Ok), &["done"]),
                ),
                (
                    "10.0.0.2".parse().unwrap(),
                    host(Role::Agent, "fetch", None, &["a", "b"]),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let rows = journal_rows(&rec);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].host, "10.0.0.1");
        assert_eq!(rows[0].state, HostState::Ok);
        assert_eq!(rows[0].last_line.as_deref(), Some("done"));
        assert_eq!(rows[0].duration_ms, Some(1200));
        assert_eq!(rows[1].state, HostState::Unfinished);
        assert_eq!(rows[1].step.as_deref(), Some("fetch"));
        assert_eq!(rows[1].last_line.as_deref(), Some("b"));
        let json = serde_json::to_value(RunJournal { rows, record: rec }).unwrap();
        assert_eq!(json["rows"][1]["status"], "unfinished");
        assert_eq!(json["hosts"]["10.0.0.2"]["tail"][1], "b");
    }
}
