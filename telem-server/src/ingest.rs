//! Group commit: requests hand their record to a writer task, which commits everything that
//! is waiting in one transaction and answers each request after the commit. With more than one
//! writer (PostgreSQL), the next batch forms and commits while another is committing.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::store::{Inserted, NewRecord, Store, StoreError};

/// A record waiting for the writer and where to send its outcome.
struct Job {
    record: NewRecord,
    reply: oneshot::Sender<Result<Inserted, Arc<StoreError>>>,
}

/// The handle requests use; cloning is cheap.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

/// Why a record could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the writer has stopped")]
    Stopped,
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl Ingest {
    /// Starts `writers` writer tasks (at least one) on `store`, all taking from one queue. They
    /// end once every `Ingest` clone is dropped and the queue is drained; the handle ends with
    /// the last of them.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        batch_max: usize,
        queue: usize,
        writers: usize,
    ) -> (Ingest, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        let tasks: Vec<_> = (0..writers.max(1))
            .map(|_| {
                tokio::spawn(writer(
                    store.clone(),
                    metrics.clone(),
                    rx.clone(),
                    batch_max,
                ))
            })
            .collect();
        let task = tokio::spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
        });
        (Ingest { tx }, task)
    }

    /// Stores `record` durably, or finds it stored already; returns once committed.
    pub async fn submit(&self, record: NewRecord) -> Result<Inserted, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { record, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        match answer.await {
            Ok(r) => r.map_err(IngestError::Store),
            Err(_) => Err(IngestError::Stopped),
        }
    }
}

async fn writer(
    store: Store,
    metrics: Arc<Metrics>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    batch_max: usize,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    // Waits for one record, then takes whatever else arrived meanwhile: no timer, so a lone
    // record is committed at once and a burst shares one transaction. The queue is free again
    // as soon as the batch is taken, for another writer while this one commits.
    while rx.lock().await.recv_many(&mut jobs, batch_max).await > 0 {
        let (records, replies): (Vec<NewRecord>, Vec<_>) =
            jobs.drain(..).map(|j| (j.record, j.reply)).unzip();
        let started = std::time::Instant::now();
        match store.insert_batch(&records).await {
            Ok(outcomes) => {
                metrics.batch();
                debug!(
                    records = records.len(),
                    micros = started.elapsed().as_micros() as u64,
                    "batch committed"
                );
                for (reply, out) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) if records.len() > 1 => {
                // One bad record must not fail its neighbours: commit each on its own.
                warn!(error = %e, records = records.len(), "batch failed; committing one by one");
                for (record, reply) in records.iter().zip(replies) {
                    let r = store
                        .insert_batch(std::slice::from_ref(record))
                        .await
                        .map_err(Arc::new)
                        .and_then(|v| v.into_iter().next().ok_or_else(|| Arc::new(empty())));
                    if r.is_ok() {
                        metrics.batch();
                    }
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                warn!(error = %e, "commit failed");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn empty() -> StoreError {
    StoreError::Db(sqlx::Error::RowNotFound)
}
