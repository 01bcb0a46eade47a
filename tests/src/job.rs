//! Job specs for tests: one template, the few settings tests vary, and the output topics
//! created up front (`{name}-pred`, `{name}-dead`, `{name}-late`).

use crate::kafka;

/// A test job's spec, rendered as the TOML a user would write.
#[derive(Debug, Clone)]
pub struct TestJob {
    /// Job name; also the prefix of its output topics.
    pub name: String,
    /// Source brokers.
    pub brokers: String,
    /// Source topic.
    pub topic: String,
    /// `never` (a stream) or `latest` (bounded).
    pub stop: &'static str,
    /// `dht11` or `dht22`.
    pub sensor: &'static str,
    /// Allowed out-of-orderness (human duration).
    pub out_of_orderness: &'static str,
    /// Idle timeout (human duration).
    pub idle_timeout: &'static str,
    /// Window length (human duration).
    pub window: &'static str,
    /// Allowed lateness (human duration).
    pub lateness: &'static str,
    /// Sequence length.
    pub sequence: usize,
    /// The `[model]` table's body.
    pub model: String,
    /// Extra `[[sinks]]` tables after the Kafka sink to `{name}-pred`.
    pub extra_sinks: String,
    /// The `[state]` table's body.
    pub state: String,
}

impl TestJob {
    /// A small persistence job over minute windows and sequences of 2, reading `topic`
    /// as a stream; its name is unique.
    pub fn new(prefix: &str, brokers: &str, topic: &str) -> Self {
        TestJob {
            name: crate::unique_topic(prefix),
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            stop: "never",
            sensor: "dht11",
            out_of_orderness: "10s",
            idle_timeout: "10m",
            window: "1m",
            lateness: "0s",
            sequence: 2,
            model: "kind = \"persistence\"".to_owned(),
            extra_sinks: String::new(),
            state: String::new(),
        }
    }

    /// The output topic of predictions.
    pub fn predictions_topic(&self) -> String {
        format!("{}-pred", self.name)
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let TestJob {
            name,
            brokers,
            topic,
            stop,
            sensor,
            ..
        } = self;
        format!(
            r#"
name = "{name}"
dead-letter-topic = "{name}-dead"
late-data-topic = "{name}-late"
epoch-interval = "50ms"
[source]
brokers = "{brokers}"
topic = "{topic}"
start = "earliest"
stop = "{stop}"
sensor = "{sensor}"
[event-time]
field = "time"
out-of-orderness = "{}"
idle-timeout = "{}"
[window]
length = "{}"
allowed-lateness = "{}"
[sequence]
length = {}
[state]
{}
[model]
{}
[[sinks]]
type = "kafka"
topic = "{name}-pred"
{}
"#,
            self.out_of_orderness,
            self.idle_timeout,
            self.window,
            self.lateness,
            self.sequence,
            self.state,
            self.model,
            self.extra_sinks
        )
    }

    /// Creates the three output topics (3 partitions each).
    pub fn create_outputs(&self) {
        for suffix in ["dead", "late", "pred"] {
            kafka::create_topic(&self.brokers, &format!("{}-{suffix}", self.name), 3);
        }
    }
}
