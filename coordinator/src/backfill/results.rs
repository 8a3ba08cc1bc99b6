//! Accepted task results, persisted under the run's `results/` folder so that a restarted
//! coordinator resumes without redoing them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use earthcatalog_common::backfill::StagingLayout;
use earthcatalog_common::rpc::{PhaseKind, TaskReport};
use earthcatalog_common::stores::Stores;

use crate::lease::scheduler::ResultStore;
use crate::lease::table::TaskId;

/// The run's `results/` folder.
#[derive(Debug, Clone)]
pub struct RunResults {
    stores: Arc<Stores>,
    layout: StagingLayout,
}

impl RunResults {
    /// The results of the run laid out by `layout`.
    pub fn new(stores: Arc<Stores>, layout: StagingLayout) -> Self {
        RunResults { stores, layout }
    }

    /// Every result of `phase` recorded so far, by task.
    pub async fn load(&self, phase: PhaseKind) -> anyhow::Result<BTreeMap<TaskId, TaskReport>> {
        let mut out = BTreeMap::new();
        for location in self.stores.list(&self.layout.results_dir(phase)).await? {
            let Some(task) = StagingLayout::result_task(&location) else { continue };
            let Some(bytes) = self.stores.get(&location).await? else { continue };
            let report: TaskReport = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the recorded result {location}"))?;
            out.insert(task, report);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl ResultStore for RunResults {
    async fn save(
        &self,
        phase: PhaseKind,
        task: TaskId,
        report: &TaskReport,
    ) -> Result<(), String> {
        let bytes = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        self.stores.put(&self.layout.result(phase, task), bytes).await.map_err(|e| e.to_string())
    }

    async fn forget(&self, phase: PhaseKind, task: TaskId) {
        let at = self.layout.result(phase, task);
        self.stores.delete_all(&[at], "a stale task result").await;
    }
}
