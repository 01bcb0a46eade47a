//! The source's state on the lifecycle: the latest [`PartitionState`] of each partition
//! this worker reads, from the source's progress announcements. It sits right after the
//! source on the same worker (pipeline), so its snapshot at epoch c holds exactly the
//! positions after the records of epochs ≤ c; a restored source starts from them.
//!
//! When a checkpoint is committed, the positions it holds are also committed to the job's
//! consumer group (`flowcast-{job}`), as Flink does: never used for recovery (the
//! checkpoint is), but `kafka-consumer-groups.sh` and lag exporters show the job's lag.

use super::Epoch;
use super::source::{PartitionProgress, PartitionState};
use crate::kafka::ClientSettings;
use crate::lifecycle::{
    EpochContext, JobContext, Operator, RestoredState, StateError, StateWriter, lifecycle,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// The operator id of a source's state: one per source topic.
pub fn source_id(topic: &str) -> String {
    format!("source:{topic}")
}

/// Per-partition positions of one source on one worker.
pub struct SourcePositions {
    id: String,
    topic: String,
    partitions: BTreeMap<i32, PartitionState>,
    /// Positions of snapshots not yet committed, by snapshot id.
    taken: BTreeMap<u64, BTreeMap<i32, i64>>,
    /// Commits offsets to the job's consumer group (none: not committed).
    group: Option<BaseConsumer>,
}

impl std::fmt::Debug for SourcePositions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcePositions")
            .field("id", &self.id)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl SourcePositions {
    /// Positions of the source reading `topic`; `group` commits them to the job's
    /// consumer group when a checkpoint is committed.
    pub fn new(topic: &str, group: Option<BaseConsumer>) -> Self {
        SourcePositions {
            id: source_id(topic),
            topic: topic.to_owned(),
            partitions: BTreeMap::new(),
            taken: BTreeMap::new(),
            group,
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
        if self.group.is_some() && !self.partitions.is_empty() {
            let at = self
                .partitions
                .iter()
                .map(|(p, s)| (*p, s.next_offset))
                .collect();
            self.taken.insert(state.snapshot_id(), at);
        }
        Ok(())
    }

    fn on_checkpoint_committed(&mut self, id: u64) {
        let Some(at) = self.taken.remove(&id) else {
            return;
        };
        // Older snapshots that never completed are superseded.
        self.taken.retain(|k, _| *k > id);
        let Some(consumer) = &self.group else { return };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &at {
            if let Err(e) = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o)) {
                tracing::warn!(topic = %self.topic, partition = p, "cannot commit offset: {e}");
            }
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(topic = %self.topic, checkpoint = id, "cannot commit the checkpoint's offsets to the consumer group: {e}");
        }
    }
}

/// Keeps the source's positions on the lifecycle; with `settings`, commits them to the
/// job's consumer group at each completed checkpoint.
pub fn source_positions<'s>(
    progress: StreamVec<'s, Epoch, PartitionProgress>,
    topic: &str,
    settings: Option<&ClientSettings>,
    ctx: &JobContext<'s>,
) {
    let group = settings.and_then(|s| {
        s.client_config()
            .set("group.id", format!("flowcast-{}", ctx.job()))
            .set("enable.auto.commit", "false")
            .set("client.id", format!("flowcast-{}-offsets", ctx.job()))
            .create::<BaseConsumer>()
            .map_err(|e| tracing::warn!("no consumer-group offset commits: {e}"))
            .ok()
    });
    lifecycle(progress, Pipeline, ctx, SourcePositions::new(topic, group));
}
