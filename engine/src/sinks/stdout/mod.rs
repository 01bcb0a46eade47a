//! The stdout sink: one JSON prediction per line (demos, debugging).

use crate::dataflow::Epoch;
use flowcast_operators::Prediction;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// `type = "stdout"`: no settings.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StdoutSinkConfig {}

/// Prints predictions as JSON lines.
pub trait StdoutSink {
    /// Prints each record on its own line.
    fn stdout_sink(self);
}

impl StdoutSink for StreamVec<'_, Epoch, Prediction> {
    fn stdout_sink(self) {
        self.sink(Pipeline, "StdoutSink", |(input, _frontier)| {
            input.for_each(|_cap, data| {
                for p in data.drain(..) {
                    if let Ok(line) = serde_json::to_string(&p) {
                        println!("{line}");
                    }
                }
            });
        });
    }
}
