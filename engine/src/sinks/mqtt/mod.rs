//! The MQTT sink: predictions as ThingsBoard telemetry over MQTT, QoS 1, via rumqttc.
//!
//! - [`config`]: the `type = "mqtt"` table
//! - [`connection`]: one connection with at-least-once delivery across reconnects
//!
//! Two modes, as ThingsBoard's MQTT API has them:
//! - **device**: one connection per device, username = the device's access token,
//!   topic `v1/devices/me/telemetry`, body `[{"ts":..,"values":{..}}, ...]`;
//! - **gateway**: one connection (per worker) for every device, username = the gateway's
//!   token, topic `v1/gateway/telemetry`, body `{"<device>": [{"ts":..,"values":{..}}]}`.
//!
//! Each worker runs a small tokio runtime on its own thread with one task per connection.
//! The timely operator blocks while `max-buffered` predictions are unacknowledged
//! (backpressure); when its input ends it waits for every PUBACK. Payloads and tokens are
//! those of the HTTP sink ([`super::thingsboard`]).
//!
//! # Examples
//!
//! ```toml
//! [[sinks]]
//! type = "mqtt"
//! broker = "127.0.0.1:1883"
//! mode = "gateway"
//! gateway = "flowcast-gateway"
//! ```

pub mod config;
pub mod connection;

pub use config::{MqttMode, MqttSinkConfig};

use super::util::dead_letter::{DeadLetters, KafkaDeadLetters, Refusal, Refused};
use super::util::events::{DeadLetterFailed, DeadLettered, DeliveryFailed, SinkEvent};
use super::util::metrics::SinkMetrics;
use super::util::operator::{Deliver, DeliveryOperator};
use super::util::payload;
use super::util::queue::{Bound, Completions};
use super::util::tokens::TokenStore;
use super::{Sink, SinkContext};
use crate::kafka::ClientSettings;
use connection::{Identity, Msg};
use flowcast_operators::Prediction;
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// What every connection task of one sink instance shares.
#[derive(Debug)]
pub struct MqttShared {
    config: MqttSinkConfig,
    job: String,
    worker: usize,
    metrics: SinkMetrics,
    dead: Arc<KafkaDeadLetters>,
    bound: Bound,
    completed: Completions<u64>,
}

impl MqttShared {
    /// The predictions numbered `seqs` are acknowledged or dead-lettered.
    fn done(&self, seqs: impl IntoIterator<Item = u64>) {
        let n = self.completed.extend(seqs);
        self.bound.done(n);
    }
}

/// A running MQTT sink instance: a runtime thread and its connections.
#[derive(Debug)]
pub struct MqttDelivery {
    shared: Arc<MqttShared>,
    tx: Option<UnboundedSender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl MqttDelivery {
    /// Loads tokens, creates the dead-letter producer and starts the runtime thread of
    /// sink `operator` on `worker`.
    pub fn start(
        c: &MqttSinkConfig,
        kafka: &ClientSettings,
        dead_letter_topic: &str,
        job: &str,
        operator: &str,
        worker: usize,
    ) -> Result<MqttDelivery, String> {
        c.validate()?;
        let tokens = TokenStore::load(c.tokens_file.as_deref()).map_err(|e| e.to_string())?;
        let gateway = match (&c.mode, &c.gateway) {
            (MqttMode::Gateway, Some(g)) => Some(Identity {
                client_id: client_id(job, &format!("gw-{worker}")),
                token: tokens
                    .get(g)
                    .cloned()
                    .ok_or_else(|| format!("no access token for the gateway {g}"))?,
                name: "gateway".to_owned(),
            }),
            _ => None,
        };
        let topic = c.dead_letter_topic.as_deref().unwrap_or(dead_letter_topic);
        let dead = Arc::new(KafkaDeadLetters::new(
            kafka,
            topic,
            &format!("flowcast-{job}-mqtt-dead-letters"),
        )?);
        let metrics = SinkMetrics::new(job, MqttSinkConfig::KIND, operator, worker);
        let shared = Arc::new(MqttShared {
            config: c.clone(),
            job: job.to_owned(),
            worker,
            bound: Bound::new(c.max_buffered, metrics.clone()),
            completed: Completions::default(),
            metrics,
            dead,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the MQTT runtime: {e}"))?;
        let (tx, rx) = unbounded_channel::<Msg>();
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("mqtt-{worker}"))
            .spawn(move || runtime.block_on(dispatch(rx, sh, tokens, gateway)))
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        tracing::info!(job, worker, operator, broker = %c.broker, mode = c.mode.as_str(), "MQTT sink started");
        Ok(MqttDelivery {
            shared,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues prediction number `seq` (numbers grow with each submission); blocks while
    /// `max-buffered` are unacknowledged.
    pub fn submit(&mut self, seq: u64, prediction: Prediction) {
        let sh = &self.shared;
        sh.bound.acquire();
        let raw = payload::prediction_json(&prediction);
        let msg = Msg {
            seq,
            prediction,
            raw,
        };
        if let Some(tx) = &self.tx
            && tx.send(msg).is_err()
        {
            DeliveryFailed {
                records: 1,
                message: "the MQTT runtime stopped; prediction not delivered",
            }
            .emit(&sh.metrics);
            sh.done([seq]);
        }
    }

    /// The numbers of the predictions acknowledged or dead-lettered since the last call.
    pub fn take_completed(&self) -> Vec<u64> {
        self.shared.completed.take()
    }

    /// Predictions not yet acknowledged or dead-lettered.
    pub fn outstanding(&self) -> usize {
        self.shared.bound.outstanding()
    }

    /// Ends the input and waits until every prediction is acknowledged or dead-lettered.
    pub fn finish(&mut self) {
        self.tx = None;
        self.flush();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Waits until every prediction submitted so far is acknowledged or dead-lettered.
    pub fn flush(&self) {
        self.shared.bound.flush();
    }
}

/// An MQTT client id from the job and a connection name: `[A-Za-z0-9_-]` only.
fn client_id(job: &str, name: &str) -> String {
    format!("flowcast-{job}-{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Routes predictions to their connection (one per device, or the gateway's).
async fn dispatch(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    sh: Arc<MqttShared>,
    tokens: TokenStore,
    gateway: Option<Identity>,
) {
    let mut conns: HashMap<String, UnboundedSender<Msg>> = HashMap::new();
    let mut tasks = Vec::new();
    let mut gateway = gateway;
    while let Some(msg) = rx.recv().await {
        let key = match sh.config.mode {
            MqttMode::Device => msg.prediction.device.clone(),
            MqttMode::Gateway => String::new(),
        };
        if !conns.contains_key(&key) {
            let id = match gateway.take() {
                Some(g) => g,
                None => match tokens.get(&key) {
                    Some(t) => Identity {
                        client_id: client_id(&sh.job, &key),
                        token: t.clone(),
                        name: key.clone(),
                    },
                    None => {
                        no_token(&sh, msg).await;
                        continue;
                    }
                },
            };
            let (tx, crx) = unbounded_channel();
            tasks.push(tokio::spawn(connection::run(id, crx, Arc::clone(&sh))));
            conns.insert(key.clone(), tx);
        }
        if let Some(tx) = conns.get(&key)
            && let Err(back) = tx.send(msg)
        {
            tracing::error!(job = %sh.job, connection = %key, "an MQTT connection task ended early");
            sh.done([back.0.seq]);
        }
    }
    drop(conns);
    for t in tasks {
        let _ = t.await;
    }
}

/// A device without a token: straight to the dead-letter topic.
async fn no_token(sh: &Arc<MqttShared>, msg: Msg) {
    let seq = msg.seq;
    let sh2 = Arc::clone(sh);
    let r = tokio::task::spawn_blocking(move || {
        let detail = format!("no access token for device {}", msg.prediction.device);
        let r = sh2.dead.write(
            &[Refused {
                device: &msg.prediction.device,
                payload: &msg.raw,
            }],
            Refusal {
                reason: "no_token",
                sink: MqttSinkConfig::KIND,
                status: None,
                detail: &detail,
            },
        );
        (r, detail)
    })
    .await;
    match r {
        Ok((Ok(()), detail)) => DeadLettered {
            records: 1,
            reason: "no_token",
            error: &detail,
        }
        .emit(&sh.metrics),
        Ok((Err(e), _)) => DeadLetterFailed { error: &e }.emit(&sh.metrics),
        Err(e) => DeadLetterFailed { error: &e }.emit(&sh.metrics),
    }
    sh.done([seq]);
}

impl Deliver for MqttDelivery {
    fn submit(&mut self, seq: u64, p: Prediction) {
        MqttDelivery::submit(self, seq, p);
    }

    fn take_completed(&mut self) -> Vec<u64> {
        MqttDelivery::take_completed(self)
    }

    fn flush(&mut self) {
        MqttDelivery::flush(self);
    }

    fn finish(&mut self) {
        MqttDelivery::finish(self);
    }
}

impl Sink for MqttSinkConfig {
    const KIND: &'static str = "mqtt";
    type Operator = DeliveryOperator<MqttDelivery>;

    fn validate(&self) -> Result<(), String> {
        MqttSinkConfig::validate(self)
    }

    fn operator(&self, id: &str, ctx: &SinkContext, worker: usize) -> Self::Operator {
        let started =
            MqttDelivery::start(self, &ctx.kafka, &ctx.dead_letter_topic, &ctx.job, id, worker);
        DeliveryOperator::new(id, ctx.started(id, started), ctx.key_groups)
    }
}
