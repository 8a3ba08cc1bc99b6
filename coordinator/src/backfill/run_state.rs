//! Which run a staging folder is in the middle of: `<staging>/_run.json` names the run id and
//! what it was started with, so a restarted coordinator resumes the same run (same chunks, same
//! recorded results) instead of starting over. Removed when the run has been registered.

use earthcatalog_common::backfill::StagingRoot;
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::Stores;
use serde::{Deserialize, Serialize};

/// The run a staging folder belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The run id (the staging sub-folder).
    pub run_id: String,
    /// The inventory it reads.
    pub inventory: String,
    /// Whether it appends.
    pub delta: bool,
    /// Whether it retries pending failures.
    pub retry_pending: bool,
    /// When it started.
    pub started: String,
    /// With --retry-pending: the failure lists it retries, fixed when it starts, so a resumed
    /// run sees the same inputs (the lists change as runs finish: new ones appear, retried ones
    /// go).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Set once Phase 4 committed (and the failed items were listed): what remains is deleting
    /// staging, so a restart finishes that instead of running again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Committed>,
}

/// What a committed run registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// When Phase 4 finished.
    pub at: String,
    /// Files registered.
    pub files: u64,
    /// Rows registered.
    pub rows: u64,
    /// Snapshots committed.
    pub snapshots: u64,
    /// Where the failed items are listed.
    pub pending_file: Option<String>,
}

impl RunState {
    /// The unfinished run in `staging`, if any.
    pub async fn load(stores: &Stores, staging: &StagingRoot) -> anyhow::Result<Option<RunState>> {
        let at = staging.run_pointer();
        match stores.get(&at).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("run state {at} is unreadable ({e}); delete it to start over")
            })?)),
        }
    }

    /// A new run.
    pub fn start(inventory: &Location, delta: bool, retry_pending: bool) -> RunState {
        RunState {
            run_id: RunId::new().to_string(),
            inventory: inventory.uri(),
            delta,
            retry_pending,
            started: chrono::Utc::now().to_rfc3339(),
            pending: Vec::new(),
            committed: None,
        }
    }

    /// Records this run as the staging folder's current one.
    pub async fn save(&self, stores: &Stores, staging: &StagingRoot) -> anyhow::Result<()> {
        Ok(stores.put(&staging.run_pointer(), serde_json::to_vec_pretty(self)?).await?)
    }

    /// Whether a new request is compatible with this run (else the operator must finish or
    /// discard it first).
    pub fn differences(
        &self,
        inventory: &Location,
        delta: bool,
        retry_pending: bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.inventory != inventory.uri() {
            out.push(format!(
                "inventory: run has {}, requested {}",
                self.inventory,
                inventory.uri()
            ));
        }
        if self.delta != delta {
            out.push(format!("delta: run has {}, requested {delta}", self.delta));
        }
        if self.retry_pending != retry_pending {
            out.push(format!(
                "retry-pending: run has {}, requested {retry_pending}",
                self.retry_pending
            ));
        }
        out
    }
}
