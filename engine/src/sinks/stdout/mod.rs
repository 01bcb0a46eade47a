//! The stdout sink: one JSON prediction per line (demos, debugging), on the lifecycle.
//!
//! The smallest sink, and the model of a new one: a config struct (the keys of its
//! `[[sinks]]` table), an [`Operator`] taking predictions, the [`Sink`] impl naming its
//! `type` and building its operator, and one line in the registry of [`crate::sinks`].

use crate::lifecycle::{EpochContext, Operator};
use crate::sinks::util::payload::prediction_json;
use crate::sinks::{Sink, SinkContext};
use flowcast_operators::Prediction;
use std::io::Write;

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
            let mut line = prediction_json(&p);
            line.push(b'\n');
            let _ = out.write_all(&line);
        }
    }

    fn close(&mut self) {
        let _ = std::io::stdout().flush();
    }
}

impl Sink for StdoutSinkConfig {
    const KIND: &'static str = "stdout";
    type Operator = StdoutSinkOperator;

    fn operator(&self, id: &str, _: &SinkContext, _: usize) -> Self::Operator {
        StdoutSinkOperator { id: id.to_owned() }
    }
}
