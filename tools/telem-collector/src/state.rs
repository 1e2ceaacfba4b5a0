//! Shared state of one collector: stored records, the request log, the fault queue and the
//! optional store file.
//!
//! Records are de-duplicated by their identity ([`telemetry::record::identity`] of the 15 header
//! values and the payload): a record posted again (a client that retries after a lost or failed
//! answer) is answered with the row stored the first time, counted as a duplicate, and not
//! stored again.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use telemetry::record::{identity, Identity, HEADER_COUNT, HEADER_NAMES};

/// The TID the upstream collector ships with.
pub const DEFAULT_TID: &str = "6907c830-eed9-4ce9-81ae-76daf8d88f0f";

/// How a collector is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The only `X-Telemetry-TID` value accepted.
    pub tid: String,
    /// When set, every accepted record is appended to this file as one JSON line.
    pub store: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tid: DEFAULT_TID.to_string(),
            store: None,
        }
    }
}

/// A misbehaviour applied to the next requests to a collector path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status, with an optional `Retry-After: <secs>` and `{"message": ..}` body.
    Status {
        code: u16,
        retry_after: Option<u64>,
        message: Option<String>,
    },
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Close the connection without writing any response.
    Reset,
    /// Handle the request normally (a 201 without `Connection: close`), then close the
    /// connection `linger` after the answer left, reading nothing more from it (uWSGI's
    /// http-socket closes after every answer). A client that reuses the connection meanwhile
    /// gets a reset or end-of-file before any byte of an answer. Queue it with `usize::MAX`
    /// uses for a server that does this to every request.
    CloseAfterAnswer {
        /// Time between the answer and the close (zero: at once).
        linger: Duration,
    },
    /// Store the record as usual, then answer this status instead of 201 (a backend that
    /// commits, then fails: the upstream one under Python >= 3.10 answers 500 so).
    StoreThenStatus(u16),
    /// Handle the request normally (the record is stored), write only the first `bytes` bytes
    /// of the answer, then close the connection.
    ResetMidAnswer {
        /// How much of the status line and headers gets out.
        bytes: usize,
    },
}

/// One accepted record, as written to the store file.
#[derive(Clone, Debug, Serialize)]
pub struct StoredRecord {
    /// `"headers"` (v2 form) or `"json"` (v3 form).
    pub format: String,
    /// Request headers by lower-case hyphenated name; for the JSON form the body's fields too.
    pub headers: BTreeMap<String, String>,
    pub payload: String,
    /// Reception time, unix seconds.
    pub received: f64,
}

/// One request to a collector path.
#[derive(Clone, Debug, Serialize)]
pub struct RequestLog {
    /// Arrival time, unix seconds.
    pub at: f64,
    /// Arrival time on the monotonic clock, for measuring retry intervals.
    #[serde(skip)]
    pub instant: Instant,
    pub path: String,
    pub event_id: Option<String>,
    /// The status answered; None when the connection was dropped (or not answered yet).
    pub status: Option<u16>,
}

/// The identity of a stored record: its 15 header values (by hyphenated name, empty when
/// missing) and its payload.
pub fn record_identity(rec: &StoredRecord) -> Identity {
    let values: [&str; HEADER_COUNT] = std::array::from_fn(|i| {
        rec.headers
            .get(&HEADER_NAMES[i].replace('_', "-"))
            .map_or("", String::as_str)
    });
    identity(&values, rec.payload.as_bytes())
}

/// Unix time now as float seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Default)]
struct Inner {
    records: Vec<StoredRecord>,
    requests: Vec<RequestLog>,
    /// FIFO of (fault, remaining uses).
    faults: VecDeque<(Fault, usize)>,
    store: Option<File>,
    /// Posts of a record stored already.
    duplicates: u64,
    /// Identity of every stored record → its id.
    ids: std::collections::HashMap<Identity, u64>,
}

/// The counts `GET /_/state` reports.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Records stored (each once).
    pub records: usize,
    /// Posts of a record stored already, answered as a success and not stored again.
    pub duplicates: u64,
}

/// State shared by every connection. A std `Mutex`: nothing awaits while holding it.
pub struct State {
    tid: String,
    inner: Mutex<Inner>,
    /// Signalled whenever a record is stored, for `wait_for_records`.
    stored: Condvar,
}

impl State {
    /// Opens (creating, appending) the store file if one is configured.
    pub fn new(opts: Options) -> io::Result<State> {
        let store = match &opts.store {
            Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        Ok(State {
            tid: opts.tid,
            inner: Mutex::new(Inner {
                store,
                ..Inner::default()
            }),
            stored: Condvar::new(),
        })
    }

    pub fn tid(&self) -> &str {
        &self.tid
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave Inner half-updated in a way that matters to a test tool.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends to the store file (if any), then keeps the record in memory.
    /// Returns the record's id (1-based arrival position); for a record stored already, the id
    /// it got then, counting the duplicate and storing nothing.
    pub fn store(&self, rec: StoredRecord) -> io::Result<u64> {
        let identity = record_identity(&rec);
        let mut inner = self.lock();
        if let Some(&id) = inner.ids.get(&identity) {
            inner.duplicates += 1;
            return Ok(id);
        }
        if let Some(file) = inner.store.as_mut() {
            let mut line = serde_json::to_vec(&rec)?;
            line.push(b'\n');
            file.write_all(&line)?;
        }
        inner.records.push(rec);
        let id = inner.records.len() as u64;
        inner.ids.insert(identity, id);
        drop(inner);
        self.stored.notify_all();
        Ok(id)
    }

    /// Logs a request on arrival; returns its index for `set_status`.
    pub fn log_request(&self, entry: RequestLog) -> usize {
        let mut inner = self.lock();
        inner.requests.push(entry);
        inner.requests.len() - 1
    }

    /// Records the status answered to the request logged at `index`.
    pub fn set_status(&self, index: usize, status: u16) {
        if let Some(r) = self.lock().requests.get_mut(index) {
            r.status = Some(status);
        }
    }

    /// Takes one use of the fault at the head of the queue.
    pub fn next_fault(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let (fault, left) = inner.faults.front_mut()?;
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            inner.faults.pop_front();
        }
        Some(fault)
    }

    pub fn records(&self) -> Vec<StoredRecord> {
        self.lock().records.clone()
    }

    /// Posts of a record stored already.
    pub fn duplicates(&self) -> u64 {
        self.lock().duplicates
    }

    /// The record and duplicate counts.
    pub fn summary(&self) -> Summary {
        let inner = self.lock();
        Summary {
            records: inner.records.len(),
            duplicates: inner.duplicates,
        }
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().requests.clone()
    }

    pub fn push_fault(&self, fault: Fault, times: usize) {
        if times > 0 {
            self.lock().faults.push_back((fault, times));
        }
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Waits (bounded by `timeout`) until at least `n` records are stored.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> bool {
        let guard = self.lock();
        match self
            .stored
            .wait_timeout_while(guard, timeout, |i| i.records.len() < n)
        {
            Ok((inner, _)) => inner.records.len() >= n,
            Err(poisoned) => poisoned.into_inner().0.records.len() >= n,
        }
    }
}
