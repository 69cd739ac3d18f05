//! The pending lists at run time. The crate's layout only ever appends to
//! them (a run's entry stays after the run is routed and ends; recovery
//! alone removed entries), so a control plane that runs for long would
//! grow them by one entry per run. Every [`TRIM_EVERY`] the control plane
//! removes the entries at the head of each list whose runs no longer wait.
//! Entries are only ever appended at the tail, so the head can be cut
//! (`LTRIM`) without racing a write.

use std::time::Duration;

use blazen_controlplane::server::store::AssignmentStore;
use blazen_controlplane::ControlPlaneError;
use redis::AsyncCommands;
use uuid::Uuid;

use super::{keys, Durable};

/// How often the pending lists are trimmed.
pub(crate) const TRIM_EVERY: Duration = Duration::from_secs(5);

/// The most entries of a list one trim reads.
const TRIM_READ: isize = 10_000;

impl Durable {
    /// Removes, from the head of each pending list, the entries of runs for
    /// which `waits` is false (routed, ended or unknown), up to the first
    /// run that still waits. Returns how many entries went.
    pub(crate) async fn trim_pending(
        &self,
        waits: impl Fn(Uuid) -> bool,
    ) -> Result<usize, ControlPlaneError> {
        let mut removed = 0;
        for cap in self.list_pending_capabilities().await? {
            let key = keys::pending(&cap);
            let read = key.clone();
            let head: Vec<Vec<u8>> = self
                .read(|mut c| async move { c.lrange(&read, 0, TRIM_READ - 1).await })
                .await?;
            let done = head
                .iter()
                .take_while(|entry| {
                    postcard::from_bytes::<(Uuid, Vec<String>)>(entry)
                        .map_or(true, |(run, _)| !waits(run))
                })
                .count();
            if done > 0 {
                self.read(|mut c| async move { c.ltrim::<_, ()>(&key, done as isize, -1).await })
                    .await?;
                removed += done;
            }
        }
        Ok(removed)
    }
}
