//! Progress reporting: `Event::Lab` into the caller's sink.

use tarmac_events::{Event, EventSink};

/// Emits `Event::Lab { lab, message }`.
pub struct Progress<'a> {
    lab: String,
    sink: &'a dyn EventSink,
}

impl<'a> Progress<'a> {
    pub fn new(lab: &str, sink: &'a dyn EventSink) -> Self {
        Progress {
            lab: lab.to_owned(),
            sink,
        }
    }

    pub fn say(&self, message: impl Into<String>) {
        self.sink.emit(Event::Lab {
            lab: self.lab.clone(),
            message: message.into(),
        });
    }
}
