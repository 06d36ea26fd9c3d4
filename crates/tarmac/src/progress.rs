//! Terminal renderer of the event stream: one aggregate bar per stage with counts by status
//! and role (never one bar per host), failures as they happen, and a closing summary that
//! names every host that did not succeed with its failing step and last output lines.
//! `--output json` prints the same events as JSON lines instead.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tarmac_events::{BuildPhase, Event, EventSink, HostRow, HostRows, Level, Outcome, Summary};
use tarmac_types::{HostAddr, Role};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputMode {
    /// For people: tables and summaries on stdout, progress on stderr.
    #[default]
    Human,
    /// Only JSON on stdout (each command's help says which); errors as one JSON object.
    Json,
}

#[derive(Default)]
struct State {
    bar: Option<ProgressBar>,
    /// The per-host fold the web server uses too (one stage at a time here: a rolling
    /// run's fleets each get their own bar and summary).
    hosts: HostRows,
    summary: Summary,
    done_by_role: BTreeMap<Role, (usize, usize)>,
    last_plain_report: usize,
}

pub struct Terminal {
    mode: OutputMode,
    tty: bool,
    verbose: bool,
    state: Mutex<State>,
}

impl Terminal {
    pub fn new(mode: OutputMode, verbose: bool) -> Self {
        Terminal {
            mode,
            tty: std::io::stderr().is_terminal(),
            verbose,
            state: Mutex::default(),
        }
    }

    fn line(&self, st: &State, text: String) {
        match &st.bar {
            Some(bar) if self.tty => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn counts(st: &State) -> String {
        let s = &st.summary;
        let mut parts = vec![format!("ok {}", s.ok + s.unchanged)];
        for (n, label) in [
            (s.failed, "failed"),
            (s.unreachable, "unreachable"),
            (s.timed_out, "timed out"),
            (s.cancelled, "cancelled"),
            (s.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{label} {n}"));
            }
        }
        let roles: Vec<String> = st
            .done_by_role
            .iter()
            .map(|(r, (done, total))| format!("{r} {done}/{total}"))
            .collect();
        if roles.is_empty() {
            parts.join(" · ")
        } else {
            format!("{} | {}", parts.join(" · "), roles.join(" "))
        }
    }
}

/// The `tarmac build` line for a package whose ELF files were made self-contained.
fn bundle_line(
    name: &str,
    libraries: &[String],
    files: &[String],
    static_files: &[String],
) -> String {
    let mut text = if files.is_empty() {
        format!("  bundle  {name}: nothing to bundle")
    } else {
        format!(
            "  bundle  {name}: {} {} ({}) for {}",
            libraries.len(),
            if libraries.len() == 1 {
                "library"
            } else {
                "libraries"
            },
            libraries.join(", "),
            files.join(", ")
        )
    };
    if !static_files.is_empty() {
        text.push_str(&format!(
            "; static, left alone: {}",
            static_files.join(", ")
        ));
    }
    text
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Ok => "ok".into(),
        Outcome::Unchanged => "unchanged".into(),
        Outcome::Failed {
            exit_code: Some(c),
            message,
            ..
        } => format!("failed (exit {c}): {message}"),
        Outcome::Failed {
            signal: Some(s),
            message,
            ..
        } => format!("failed (signal {s}): {message}"),
        Outcome::Failed { message, .. } => format!("failed: {message}"),
        Outcome::Unreachable { message } => format!("unreachable: {message}"),
        Outcome::TimedOut { after_ms } => {
            format!("timed out after {:.1}s", *after_ms as f64 / 1000.0)
        }
        Outcome::Cancelled => "cancelled".into(),
        Outcome::Skipped { reason } => format!("skipped: {reason}"),
    }
}

/// The one line printed while the stage runs when a host fails: only the first line of the
/// reason (the whole reason and the host's last output lines come once, in the summary).
fn headline(host: &HostAddr, role: Option<Role>, step: Option<&str>, o: &Outcome) -> String {
    let role = role.map(|r| format!(" ({r})")).unwrap_or_default();
    let step = step.map(|s| format!(" at {s}")).unwrap_or_default();
    let text = describe(o);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let more = if lines.next().is_some() {
        " (details in the summary)"
    } else {
        ""
    };
    format!("✗ {host}{role}{step}: {first}{more}")
}

/// A failed host in the closing summary: its reason, then those of its last output lines the
/// reason does not already hold (install.sh and tarmac-host errors usually are the tail), so
/// each error line appears once.
fn failure_block(h: &HostRow) -> Vec<String> {
    let host = &h.host;
    let Some(o) = &h.outcome else {
        return Vec::new();
    };
    if o.is_success() {
        return Vec::new();
    }
    let role = h.role.map(|r| format!(" ({r})")).unwrap_or_default();
    let step = h.failed_step.as_ref().or(h.step.as_ref());
    let step = step.map(|s| format!(" [{s}]")).unwrap_or_default();
    let text = describe(o);
    let mut out = Vec::new();
    let mut said: Vec<&str> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if i == 0 {
            out.push(format!("  {host}{role}{step}: {l}"));
        } else {
            out.push(format!("      {l}"));
        }
        said.push(l.trim());
    }
    if out.is_empty() {
        out.push(format!("  {host}{role}{step}: failed"));
    }
    for l in &h.tail {
        let t = l.trim();
        if t.is_empty() || said.iter().any(|s| s.contains(t)) {
            continue;
        }
        out.push(format!("      | {l}"));
    }
    out
}

impl EventSink for Terminal {
    fn emit(&self, event: Event) {
        if self.mode == OutputMode::Json {
            if let Ok(s) = serde_json::to_string(&event) {
                println!("{s}");
            }
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match &event {
            Event::StageStarted { stage, hosts, .. } => {
                *st = State::default();
                st.hosts.apply(&event);
                for h in hosts {
                    if let Some(r) = h.role {
                        st.done_by_role.entry(r).or_default().1 += 1;
                    }
                }
                if self.tty {
                    let bar = ProgressBar::new(hosts.len() as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>12.bold} [{bar:30}] {pos}/{len} {elapsed:>4} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(stage.as_str().to_owned());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    st.bar = Some(bar);
                } else {
                    eprintln!("{stage}: {} hosts", hosts.len());
                }
            }
            Event::StepStarted { host, step } => {
                if self.verbose {
                    self.line(&st, format!("  {host}: {step}"));
                }
                st.hosts.apply(&event);
            }
            Event::Output { host, line, .. } => {
                if self.verbose {
                    self.line(&st, format!("  {host}| {line}"));
                }
                st.hosts.apply(&event);
            }
            Event::StepFinished { .. } => st.hosts.apply(&event),
            Event::HostFinished { host, outcome, .. } => {
                st.summary.add(outcome);
                let key = host.to_string();
                let role = st.hosts.get(&key).and_then(|h| h.role);
                if let Some(r) = role {
                    st.done_by_role.entry(r).or_default().0 += 1;
                }
                if !outcome.is_success() {
                    let step = st
                        .hosts
                        .get(&key)
                        .and_then(|h| h.failed_step.clone().or(h.step.clone()));
                    self.line(&st, headline(host, role, step.as_deref(), outcome));
                }
                st.hosts.apply(&event);
                let msg = Self::counts(&st);
                if let Some(bar) = &st.bar {
                    bar.inc(1);
                    bar.set_message(msg);
                } else {
                    let total = st.hosts.len().max(1);
                    let done = st.summary.total;
                    if done * 10 / total > st.last_plain_report || done == total {
                        st.last_plain_report = done * 10 / total;
                        eprintln!("  {done}/{total} {msg}");
                    }
                }
            }
            Event::StageFinished {
                stage,
                summary,
                duration_ms,
                ..
            } => {
                if let Some(bar) = st.bar.take() {
                    bar.finish_and_clear();
                }
                let secs = *duration_ms as f64 / 1000.0;
                let ok = summary.ok + summary.unchanged;
                let mark = if summary.all_succeeded() {
                    "✓"
                } else {
                    "✗"
                };
                let unchanged = if summary.unchanged > 0 {
                    format!(" ({} unchanged)", summary.unchanged)
                } else {
                    String::new()
                };
                eprintln!(
                    "{mark} {stage}: {ok} of {} hosts ok{unchanged} in {secs:.1}s",
                    summary.total
                );
                // In host order, as the summary always listed them.
                let mut rows: Vec<&HostRow> = st.hosts.rows().iter().collect();
                rows.sort_by_cached_key(|r| (r.host.parse::<HostAddr>().ok(), r.host.clone()));
                for h in rows {
                    for l in failure_block(h) {
                        eprintln!("{l}");
                    }
                }
            }
            Event::PackageBuild { name, phase } => {
                let text = match phase {
                    BuildPhase::Fetching => format!("  fetch   {name}"),
                    BuildPhase::CacheHit { id } => format!("  cached  {id}"),
                    BuildPhase::Building { id } => format!("  build   {id}"),
                    BuildPhase::Built { id, duration_ms } => {
                        format!("  built   {id} ({:.1}s)", *duration_ms as f64 / 1000.0)
                    }
                    BuildPhase::Bundled {
                        libraries,
                        files,
                        static_files,
                        ..
                    } => bundle_line(name, libraries, files, static_files),
                    BuildPhase::Failed { message } => format!("✗ {name}: {message}"),
                };
                self.line(&st, text);
            }
            Event::Activation { phase, packages } => {
                self.line(&st, format!("{phase}: {} packages", packages.len()));
            }
            Event::Lab { lab, message } => self.line(&st, format!("lab {lab}: {message}")),
            Event::Notice { level, message } => {
                let tag = match level {
                    Level::Debug if !self.verbose => return,
                    Level::Debug => "debug: ",
                    Level::Info => "",
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                };
                self.line(&st, format!("{tag}{message}"));
            }
            Event::Transfer { .. } => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(addr: &str, outcome: Outcome, tail: &[&str]) -> HostRow {
        HostRow {
            host: addr.to_owned(),
            role: Some(Role::Agent),
            step: Some("install.sh".into()),
            failed_step: Some("install.sh".into()),
            tail: tail.iter().map(|s| (*s).to_owned()).collect(),
            outcome: Some(outcome),
            ..Default::default()
        }
    }

    #[test]
    fn a_failed_hosts_error_lines_appear_once() {
        let addr = HostAddr::new("10.0.0.5", None).unwrap();
        let msg =
            "tarmac-setup.service failed\n/opt/tarmac/tarmac-host: version `GLIBC_2.34' not found";
        let h = host(
            "10.0.0.5",
            Outcome::Failed {
                exit_code: Some(4),
                signal: None,
                message: msg.into(),
            },
            &[
                "Starting tarmac-setup.service",
                "/opt/tarmac/tarmac-host: version `GLIBC_2.34' not found",
                "error: tarmac-setup.service failed; see: journalctl -u tarmac-setup.service",
            ],
        );
        assert_eq!(
            failure_block(&h),
            vec![
                "  10.0.0.5 (agent) [install.sh]: failed (exit 4): tarmac-setup.service failed",
                "      /opt/tarmac/tarmac-host: version `GLIBC_2.34' not found",
                "      | Starting tarmac-setup.service",
                "      | error: tarmac-setup.service failed; see: journalctl -u tarmac-setup.service",
            ]
        );
        assert_eq!(
            headline(
                &addr,
                Some(Role::Agent),
                Some("install.sh"),
                h.outcome.as_ref().unwrap()
            ),
            "✗ 10.0.0.5 (agent) at install.sh: failed (exit 4): tarmac-setup.service failed (details in the summary)"
        );
    }

    #[test]
    fn succeeded_hosts_have_no_block() {
        assert!(failure_block(&host("10.0.0.6", Outcome::Ok, &["x"])).is_empty());
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bundle_lines() {
        assert_eq!(
            bundle_line(
                "etcd",
                &v(&["ld-linux-x86-64.so.2", "libc.so.6"]),
                &v(&["bin/etcdctl", "bin_master/etcd"]),
                &[]
            ),
            "  bundle  etcd: 2 libraries (ld-linux-x86-64.so.2, libc.so.6) for bin/etcdctl, bin_master/etcd"
        );
        assert_eq!(
            bundle_line("a", &v(&["libc.so.6"]), &v(&["lib/x.so"]), &v(&["bin/s"])),
            "  bundle  a: 1 library (libc.so.6) for lib/x.so; static, left alone: bin/s"
        );
        assert_eq!(
            bundle_line("go", &[], &[], &v(&["bin/static"])),
            "  bundle  go: nothing to bundle; static, left alone: bin/static"
        );
    }

    /// One event stream into the terminal's fold, the web server's (its `/api/v1/state`
    /// JSON) and the rows the event stream hands the browser: the same row for the same host
    /// after every event. The stream is also recorded as the installer records a run (one
    /// journal per stage, persisted under state/runs/), and the web's journal view of it
    /// (`/api/v1/runs/{id}`'s rows) shows the live rows after every event, except that a host
    /// with no outcome yet is `unfinished` and rows carry no start time; at the end of each
    /// run the persisted journal's rows are checked the same way.
    #[test]
    fn terminal_web_api_and_browser_rows_agree_at_every_event() {
        use serde_json::Value as Json;
        use tarmac_events::{HostRef, HostState, Stream};
        use tarmac_installer::journal::{Journal, RunRecord};
        use tarmac_types::Stage;
        use tarmac_web::api::journal_rows;
        use tarmac_web::hub::{Hub, RunChange, Since};

        let a = |s: &str| -> HostAddr { s.parse().unwrap() };
        let hosts = |list: &[(&str, Role)]| -> Vec<HostRef> {
            list.iter()
                .map(|(h, r)| HostRef {
                    addr: a(h),
                    role: Some(*r),
                })
                .collect()
        };
        let boom = Outcome::Failed {
            exit_code: Some(4),
            signal: None,
            message: " install.sh failed \n".into(),
        };
        let long = "x".repeat(500);
        let mut events = vec![Event::StageStarted {
            run_id: "preflight-1".into(),
            stage: Stage::Preflight,
            hosts: hosts(&[("10.0.0.9", Role::Agent)]),
        }];
        events.push(Event::HostFinished {
            host: a("10.0.0.9"),
            outcome: Outcome::Ok,
            duration_ms: 1,
        });
        events.push(Event::StageStarted {
            run_id: "deploy-1".into(),
            stage: Stage::Deploy,
            hosts: hosts(&[
                ("10.0.0.2", Role::Master),
                ("10.0.0.1", Role::Agent),
                ("[fd00::3]:2222", Role::AgentPublic),
            ]),
        });
        for h in ["10.0.0.2", "10.0.0.1", "[fd00::3]:2222"] {
            events.push(Event::StepStarted {
                host: a(h),
                step: "connect".into(),
            });
        }
        for i in 0..7 {
            events.push(Event::Output {
                host: a("10.0.0.1"),
                step: "install.sh".into(),
                stream: Stream::Stderr,
                line: if i == 3 {
                    long.clone()
                } else {
                    format!("line {i}")
                },
            });
        }
        events.push(Event::StepFinished {
            host: a("10.0.0.1"),
            step: "install.sh".into(),
            outcome: boom.clone(),
            duration_ms: 7,
        });
        events.push(Event::HostFinished {
            host: a("10.0.0.1"),
            outcome: boom.clone(),
            duration_ms: 9,
        });
        events.push(Event::HostFinished {
            host: a("10.0.0.2"),
            outcome: Outcome::Unchanged,
            duration_ms: 3,
        });
        // A host the stage did not name.
        events.push(Event::StepStarted {
            host: a("10.0.0.7"),
            step: "late".into(),
        });
        events.push(Event::HostFinished {
            host: a("[fd00::3]:2222"),
            outcome: Outcome::TimedOut { after_ms: 1500 },
            duration_ms: 1500,
        });
        events.push(Event::StageFinished {
            run_id: "deploy-1".into(),
            stage: Stage::Deploy,
            summary: Summary::default(),
            duration_ms: 20,
        });

        let term = Terminal::new(OutputMode::Human, false);
        let hub = Hub::new(1000);
        hub.run_change(RunChange::Started {
            stage: Stage::Deploy,
            hosts: None,
            retry: false,
            base_run_id: None,
            started_unix_ms: 1,
            roster: Vec::new(),
        });
        // The browser's copy: its snapshot, then the rows each entry carries (app.js applyRows).
        let (mut seq, snap) = hub.snapshot();
        let mut browser: Vec<Json> = serde_json::to_value(&snap).unwrap()["hosts"]
            .as_array()
            .unwrap()
            .clone();
        // Rows' start times come from each fold's clock.
        let norm = |mut v: Json| -> Json {
            for r in v.as_array_mut().unwrap() {
                if !r["started_unix_ms"].is_null() {
                    r["started_unix_ms"] = Json::from(0);
                }
            }
            v
        };
        // The journal view of a run as the live rows predict it: by host; a host without an
        // outcome in the journal is `unfinished`; no start times.
        let by_host = |rows: Vec<HostRow>| -> BTreeMap<String, HostRow> {
            rows.into_iter().map(|r| (r.host.clone(), r)).collect()
        };
        let journal_view_of = |live: &[HostRow], rec: &RunRecord| -> BTreeMap<String, HostRow> {
            by_host(
                live.iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r.started_unix_ms = None;
                        let done = rec
                            .hosts
                            .iter()
                            .any(|(a, h)| a.to_string() == r.host && h.outcome.is_some());
                        if !done {
                            r.state = HostState::Unfinished;
                        }
                        r
                    })
                    .collect(),
            )
        };
        let state = tempfile::tempdir().unwrap();
        let mut journal: Option<Journal> = None;
        let mut journals_checked = Vec::new();
        for (n, e) in events.iter().enumerate() {
            // The installer journals each stage's run from its start (journaled_fleet).
            if let Event::StageStarted {
                run_id,
                stage,
                hosts,
            } = e
            {
                journal = Some(Journal::new(
                    state.path(),
                    run_id,
                    *stage,
                    &hosts
                        .iter()
                        .map(|h| (h.addr.clone(), h.role))
                        .collect::<Vec<_>>(),
                ));
            }
            let journal = journal.as_ref().expect("the stream starts with a stage");
            journal.emit(e.clone());
            term.emit(e.clone());
            hub.emit(e.clone());
            let Since::Entries(entries) = hub.since(seq) else {
                panic!("gap")
            };
            for en in entries {
                seq = en.id;
                let en: Json = serde_json::from_str(&en.to_json()).unwrap();
                let Some(d) = en.get("rows") else { continue };
                if d["all"] == true {
                    browser.clear();
                }
                for r in d["rows"].as_array().unwrap() {
                    match browser.iter_mut().find(|b| b["host"] == r["host"]) {
                        Some(b) => *b = r.clone(),
                        None => browser.push(r.clone()),
                    }
                }
            }
            let term_rows: Vec<HostRow> = term.state.lock().unwrap().hosts.rows().to_vec();
            let (_, view) = hub.snapshot();
            let mut web_rows = view.rows.rows().to_vec();
            for (t, w) in term_rows.iter().zip(web_rows.iter_mut()) {
                if t.started_unix_ms.is_some() && w.started_unix_ms.is_some() {
                    w.started_unix_ms = t.started_unix_ms;
                }
            }
            assert_eq!(
                term_rows, web_rows,
                "terminal and web server after event {n}: {e:?}"
            );
            let api = serde_json::to_value(&view).unwrap()["hosts"].clone();
            let term_json = serde_json::to_value(&term_rows).unwrap();
            assert_eq!(
                norm(term_json.clone()),
                norm(api),
                "web API after event {n}"
            );
            assert_eq!(
                norm(term_json),
                norm(Json::Array(browser.clone())),
                "browser rows after event {n}"
            );
            let rec = journal.snapshot();
            assert_eq!(
                by_host(journal_rows(&rec)),
                journal_view_of(&term_rows, &rec),
                "journal view after event {n}: {e:?}"
            );
            // At a run's end, the journal as persisted: the view the web serves afterwards.
            if let Event::StageFinished { run_id, .. } = e {
                journal.flush().unwrap();
                let path = state.path().join(format!("runs/{run_id}.json"));
                let rec: RunRecord =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                assert_eq!(
                    by_host(journal_rows(&rec)),
                    journal_view_of(&term_rows, &rec),
                    "persisted journal {run_id}"
                );
                journals_checked.push(run_id.clone());
            }
        }
        assert_eq!(journals_checked, ["deploy-1"]);
        let (_, view) = hub.snapshot();
        let st: Vec<(&str, &str)> = view
            .rows
            .rows()
            .iter()
            .map(|r| (r.host.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            st,
            [
                ("10.0.0.2", "unchanged"),
                ("10.0.0.1", "failed"),
                ("[fd00::3]:2222", "timed-out"),
                ("10.0.0.7", "running"),
            ]
        );
        let r = view.rows.get("10.0.0.1").unwrap();
        assert_eq!(r.failed_step.as_deref(), Some("install.sh"));
        assert_eq!(r.message.as_deref(), Some("exit 4: install.sh failed"));
        assert_eq!(r.tail.len(), tarmac_events::rows::TAIL_LINES);
    }
}
