//! The retention purge: deletes records older than the configured ages, once at start and then
//! daily, while the server runs (`telem-server purge` runs it once from the command line).

use std::time::Duration;

use tracing::{info, warn};

use crate::config::Retention;
use crate::store::{schema::unix_now, Purged, Store, StoreError};

/// Time between two purges.
pub const PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// One purge now; logs what each rule deleted.
pub async fn purge_once(store: &Store, retention: &Retention) -> Result<Vec<Purged>, StoreError> {
    let done = store.purge(retention, unix_now()).await?;
    for p in &done {
        info!(
            classification = p.classification.as_deref().unwrap_or("*"),
            days = p.days,
            deleted = p.deleted,
            "retention purge"
        );
    }
    Ok(done)
}

/// Purges at start and every [`PERIOD`] until the task is aborted. A failed purge is logged
/// and tried again at the next period.
pub async fn run_daily(store: Store, retention: Retention) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = purge_once(&store, &retention).await {
            warn!(error = %e, "retention purge failed");
        }
    }
}
