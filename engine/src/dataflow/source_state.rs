//! The source's state on the lifecycle: the latest [`PartitionState`] of each partition
//! this worker reads, from the source's progress announcements. It sits right after the
//! source on the same worker (pipeline), so its snapshot at epoch c holds exactly the
//! positions after the records of epochs ≤ c; a restored source starts from them.

use super::Epoch;
use super::source::{PartitionProgress, PartitionState};
use crate::lifecycle::{
    EpochContext, JobContext, Operator, RestoredState, StateError, StateWriter, lifecycle,
};
use std::collections::BTreeMap;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// The operator id of a source's state: one per source topic.
pub fn source_id(topic: &str) -> String {
    format!("source:{topic}")
}

/// Per-partition positions of one source on one worker.
#[derive(Debug)]
pub struct SourcePositions {
    id: String,
    partitions: BTreeMap<i32, PartitionState>,
}

impl SourcePositions {
    /// Positions of the source reading `topic`.
    pub fn new(topic: &str) -> Self {
        SourcePositions {
            id: source_id(topic),
            partitions: BTreeMap::new(),
        }
    }

    /// The restored state of the partitions this worker reads, for the source to start
    /// from (decoded from the same snapshot entry this operator restores).
    ///
    /// # Errors
    /// When the snapshot's partition state does not decode.
    pub fn restored(
        state: Option<RestoredState>,
    ) -> Result<BTreeMap<i32, PartitionState>, StateError> {
        state
            .map(|s| s.partitions::<PartitionState>().collect())
            .unwrap_or_else(|| Ok(BTreeMap::new()))
    }
}

impl Operator for SourcePositions {
    type In = PartitionProgress;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        self.partitions = Self::restored(Some(state))?;
        Ok(())
    }

    fn on_records(&mut self, _: &EpochContext, records: Vec<PartitionProgress>, _: &mut Vec<()>) {
        for p in records {
            self.partitions.insert(p.partition, p.state);
        }
    }

    fn snapshot(
        &mut self,
        _: &EpochContext,
        state: &mut StateWriter<'_>,
    ) -> Result<(), StateError> {
        for (p, s) in &self.partitions {
            state.partition(*p, s)?;
        }
        Ok(())
    }
}

/// Keeps the source's positions on the lifecycle.
pub fn source_positions<'s>(
    progress: StreamVec<'s, Epoch, PartitionProgress>,
    topic: &str,
    ctx: &JobContext<'s>,
) {
    lifecycle(progress, Pipeline, ctx, SourcePositions::new(topic));
}
