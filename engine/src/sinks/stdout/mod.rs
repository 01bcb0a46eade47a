//! The stdout sink: one JSON prediction per line (demos, debugging), on the lifecycle.

use crate::dataflow::Epoch;
use crate::lifecycle::{EpochContext, JobContext, Operator, lifecycle};
use flowcast_operators::Prediction;
use std::io::Write;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// `type = "stdout"`: no settings.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StdoutSinkConfig {}

/// Prints each epoch's predictions, one JSON object per line.
#[derive(Debug)]
pub struct StdoutSinkOperator {
    id: String,
}

impl Operator for StdoutSinkOperator {
    type In = Prediction;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn on_records(&mut self, _: &EpochContext, records: Vec<Prediction>, _: &mut Vec<()>) {
        let mut out = std::io::stdout().lock();
        for p in records {
            if let Ok(line) = serde_json::to_string(&p) {
                let _ = writeln!(out, "{line}");
            }
        }
    }

    fn close(&mut self) {
        let _ = std::io::stdout().flush();
    }
}

/// Attaches a stdout sink of predictions as operator `id`.
pub fn attach<'s>(id: &str, predictions: StreamVec<'s, Epoch, Prediction>, job: &JobContext<'s>) {
    let op = StdoutSinkOperator { id: id.to_owned() };
    lifecycle(predictions, Pipeline, job, op);
}
