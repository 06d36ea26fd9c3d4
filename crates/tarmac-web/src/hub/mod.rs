//! The event hub: every event of the installer (the same [`tarmac_events::Event`]s the
//! terminal renders) and every run lifecycle change gets a monotonic id, goes into a bounded
//! ring buffer for SSE clients (resumable with `Last-Event-ID`), and is folded into the
//! aggregated state of the current run, so a reloaded page or a second tab starts from a
//! snapshot (`GET /api/v1/state`, which carries the id it is current to) plus the events
//! after it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tarmac_events::{Event, EventSink, HostRows, Level, Summary};
use tarmac_installer::plan::CheckResult;
use tarmac_types::{Role, Stage};
use tokio::sync::watch;
use utoipa::ToSchema;

mod view;
pub use self::view::*;

/// Notices kept in the run state.
const NOTICES_MAX: usize = 100;

pub use tarmac_types::time::now_ms;

/// What an entry of the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `tarmac_events::Event`.
    Event,
    /// A [`RunChange`].
    Run,
}

/// One entry of the stream: its id, its JSON and the rows it changed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub kind: Kind,
    pub data: Arc<str>,
    /// A [`RowsDelta`]'s JSON: the rows of the server's fold this entry changed, so the
    /// browser shows the server's rows instead of folding events itself.
    pub rows: Option<Arc<str>>,
}

impl Entry {
    /// `{"id":N,"kind":"event","data":{…}}`, with `"rows":{…}` when it changed rows.
    pub fn to_json(&self) -> String {
        let kind = match self.kind {
            Kind::Event => "event",
            Kind::Run => "run",
        };
        match &self.rows {
            Some(rows) => format!(
                "{{\"id\":{},\"kind\":\"{kind}\",\"data\":{},\"rows\":{rows}}}",
                self.id, self.data
            ),
            None => format!(
                "{{\"id\":{},\"kind\":\"{kind}\",\"data\":{}}}",
                self.id, self.data
            ),
        }
    }
}

/// Result of asking for the entries after an id.
#[derive(Debug)]
pub enum Since {
    Entries(Vec<Entry>),
    /// Some of the entries asked for are no longer buffered (or the id is from another
    /// server): the client must reload the snapshot. `seq` is the current id.
    Gap {
        seq: u64,
    },
}

struct Inner {
    seq: u64,
    ring: VecDeque<Entry>,
    view: RunView,
}

pub struct Hub {
    inner: Mutex<Inner>,
    tx: watch::Sender<u64>,
    capacity: usize,
}

impl Hub {
    pub fn new(capacity: usize) -> Arc<Hub> {
        let (tx, _) = watch::channel(0);
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                seq: 0,
                ring: VecDeque::with_capacity(capacity.min(4096)),
                view: RunView::idle(),
            }),
            tx,
            capacity: capacity.max(1),
        })
    }

    fn push(&self, kind: Kind, data: String, fold: impl FnOnce(&mut RunView) -> Touched) {
        let seq = {
            let mut g = self.inner.lock().expect("hub poisoned");
            g.seq += 1;
            let id = g.seq;
            let rows = fold(&mut g.view).delta(&g.view.rows).map(Arc::from);
            if g.ring.len() == self.capacity {
                g.ring.pop_front();
            }
            g.ring.push_back(Entry {
                id,
                kind,
                data: data.into(),
                rows,
            });
            id
        };
        self.tx.send_replace(seq);
    }

    /// Record a lifecycle change.
    pub fn run_change(&self, c: RunChange) {
        let data = serde_json::to_string(&c).unwrap_or_else(|_| "{}".into());
        self.push(Kind::Run, data, |v| {
            v.apply_run(&c);
            Touched::All
        });
    }

    /// The current state and the id it includes every entry up to.
    pub fn snapshot(&self) -> (u64, RunView) {
        let g = self.inner.lock().expect("hub poisoned");
        (g.seq, g.view.clone())
    }

    pub fn seq(&self) -> u64 {
        self.inner.lock().expect("hub poisoned").seq
    }

    /// Entries with an id greater than `after`.
    pub fn since(&self, after: u64) -> Since {
        let g = self.inner.lock().expect("hub poisoned");
        if after > g.seq {
            return Since::Gap { seq: g.seq };
        }
        if after == g.seq {
            return Since::Entries(Vec::new());
        }
        let first = g.ring.front().map_or(g.seq + 1, |e| e.id);
        if after + 1 < first {
            return Since::Gap { seq: g.seq };
        }
        let skip = (after + 1 - first) as usize;
        Since::Entries(g.ring.iter().skip(skip).cloned().collect())
    }

    /// Wakes up whenever an entry is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

impl EventSink for Hub {
    fn emit(&self, event: Event) {
        let data = match serde_json::to_string(&event) {
            Ok(d) => d,
            Err(_) => return,
        };
        let now = now_ms();
        self.push(Kind::Event, data, |v| {
            v.apply(&event, now);
            Touched::of_event(&event, &v.rows)
        });
    }
}

#[cfg(test)]
mod tests;
