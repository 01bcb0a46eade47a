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
use super::util::tokens::TokenStore;
use crate::dataflow::Epoch;
use crate::kafka::ClientSettings;
use crate::lifecycle::{EpochContext, JobContext, Operator, StateError, StateWriter, lifecycle};
use crate::metrics::{self, Counter};
use connection::{Identity, Msg};
use flowcast_operators::Prediction;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// Metrics of one MQTT sink instance (labels: job, mode, worker).
#[derive(Debug)]
pub struct MqttMetrics {
    delivered: Counter,
    publishes: Counter,
    connects: Counter,
    connection_errors: Counter,
    dead_letters: Counter,
    queued: Counter,
    backpressure: Counter,
}

impl MqttMetrics {
    fn new(job: &str, mode: MqttMode, worker: &str) -> Self {
        let l = [("job", job), ("mode", mode.as_str()), ("worker", worker)];
        MqttMetrics {
            delivered: metrics::counter(
                "flowcast_mqtt_delivered_records_total",
                "Predictions acknowledged by the MQTT broker (PUBACK)",
                &l,
            ),
            publishes: metrics::counter(
                "flowcast_mqtt_publishes_total",
                "QoS 1 publishes written, retransmissions included",
                &l,
            ),
            connects: metrics::counter(
                "flowcast_mqtt_connects_total",
                "MQTT connections established",
                &l,
            ),
            connection_errors: metrics::counter(
                "flowcast_mqtt_connection_errors_total",
                "MQTT connection attempts or connections that failed",
                &l,
            ),
            dead_letters: metrics::counter(
                "flowcast_mqtt_dead_letter_records_total",
                "Predictions written to the dead-letter topic",
                &l,
            ),
            queued: metrics::gauge(
                "flowcast_mqtt_queued_records",
                "Predictions not yet acknowledged",
                &l,
            ),
            backpressure: metrics::counter(
                "flowcast_mqtt_backpressure_waits_total",
                "Submissions that waited for room",
                &l,
            ),
        }
    }
}

/// What every connection task of one sink instance shares.
#[derive(Debug)]
pub struct MqttShared {
    config: MqttSinkConfig,
    job: String,
    worker: usize,
    metrics: MqttMetrics,
    dead: Arc<KafkaDeadLetters>,
    outstanding: Mutex<usize>,
    room: Condvar,
}

impl MqttShared {
    /// `n` predictions are acknowledged or dead-lettered.
    fn done(&self, n: usize) {
        let mut o = self.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        *o = o.saturating_sub(n);
        self.metrics.queued.set(*o as u64);
        self.room.notify_all();
    }
}

/// A running MQTT sink instance: a runtime thread and its connections.
#[derive(Debug)]
pub struct MqttDelivery {
    shared: Arc<MqttShared>,
    tx: Option<UnboundedSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    seq: u64,
}

impl MqttDelivery {
    /// Loads tokens, creates the dead-letter producer and starts the runtime thread.
    pub fn start(
        c: &MqttSinkConfig,
        kafka: &ClientSettings,
        dead_letter_topic: &str,
        job: &str,
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
        let shared = Arc::new(MqttShared {
            config: c.clone(),
            job: job.to_owned(),
            worker,
            metrics: MqttMetrics::new(job, c.mode, &worker.to_string()),
            dead,
            outstanding: Mutex::new(0),
            room: Condvar::new(),
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
        tracing::info!(job, worker, broker = %c.broker, mode = c.mode.as_str(), "MQTT sink started");
        Ok(MqttDelivery {
            shared,
            tx: Some(tx),
            thread: Some(thread),
            seq: 0,
        })
    }

    /// Queues a prediction; blocks while `max-buffered` are unacknowledged.
    pub fn submit(&mut self, prediction: Prediction) {
        let sh = &self.shared;
        {
            let mut o = sh.outstanding.lock().unwrap_or_else(|p| p.into_inner());
            if *o >= sh.config.max_buffered {
                sh.metrics.backpressure.inc();
                while *o >= sh.config.max_buffered {
                    o = sh.room.wait(o).unwrap_or_else(|p| p.into_inner());
                }
            }
            *o += 1;
            sh.metrics.queued.set(*o as u64);
        }
        self.seq += 1;
        let raw = serde_json::to_vec(&prediction).unwrap_or_default();
        let msg = Msg {
            seq: self.seq,
            prediction,
            raw,
        };
        if let Some(tx) = &self.tx
            && tx.send(msg).is_err()
        {
            tracing::error!(job = %sh.job, "the MQTT runtime stopped; prediction not delivered");
            sh.done(1);
        }
    }

    /// Predictions not yet acknowledged or dead-lettered.
    pub fn outstanding(&self) -> usize {
        *self
            .shared
            .outstanding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
        let sh = &self.shared;
        let mut o = sh.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        while *o > 0 {
            let (g, timeout) = sh
                .room
                .wait_timeout(o, Duration::from_secs(30))
                .unwrap_or_else(|p| p.into_inner());
            o = g;
            if timeout.timed_out() && *o > 0 {
                tracing::info!(job = %sh.job, outstanding = *o, "waiting for the MQTT broker to acknowledge the remaining predictions");
            }
        }
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
            drop(back);
            sh.done(1);
        }
    }
    drop(conns);
    for t in tasks {
        let _ = t.await;
    }
}

/// A device without a token: straight to the dead-letter topic.
async fn no_token(sh: &Arc<MqttShared>, msg: Msg) {
    tracing::warn!(job = %sh.job, device = %msg.prediction.device, "no access token for the device; writing to the dead-letter topic");
    let sh2 = Arc::clone(sh);
    let r = tokio::task::spawn_blocking(move || {
        let detail = format!("no access token for device {}", msg.prediction.device);
        sh2.dead.write(
            &[Refused {
                device: &msg.prediction.device,
                payload: &msg.raw,
            }],
            Refusal {
                reason: "no_token",
                sink: "mqtt",
                status: None,
                detail: &detail,
            },
        )
    })
    .await;
    match r {
        Ok(Ok(())) => sh.metrics.dead_letters.inc(),
        Ok(Err(e)) => tracing::error!(job = %sh.job, "cannot write a dead letter: {e}"),
        Err(e) => tracing::error!(job = %sh.job, "dead-letter task failed: {e}"),
    }
    sh.done(1);
}

/// The MQTT sink's logic on the operator lifecycle: a snapshot waits for every PUBACK
/// (or dead letter) of what was handed over; the end of input closes the connections.
#[derive(Debug)]
pub struct MqttSinkOperator {
    id: String,
    delivery: Option<MqttDelivery>,
}

impl MqttSinkOperator {
    /// Starts the MQTT delivery for `c` as sink `id` on worker `worker`; a sink that
    /// cannot start fails the job.
    pub fn new(id: &str, c: &MqttSinkConfig, ctx: &super::SinkContext, worker: usize) -> Self {
        let delivery =
            match MqttDelivery::start(c, &ctx.kafka, &ctx.dead_letter_topic, &ctx.job, worker) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(job = %ctx.job, "cannot start the MQTT sink: {e}");
                    ctx.failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(format!("MQTT sink: {e}"));
                    ctx.shutdown
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    None
                }
            };
        MqttSinkOperator {
            id: id.to_owned(),
            delivery,
        }
    }
}

impl Operator for MqttSinkOperator {
    type In = Prediction;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn on_records(&mut self, _: &EpochContext, records: Vec<Prediction>, _: &mut Vec<()>) {
        if let Some(d) = &mut self.delivery {
            records.into_iter().for_each(|p| d.submit(p));
        }
    }

    fn snapshot(&mut self, _: &EpochContext, _: &mut StateWriter<'_>) -> Result<(), StateError> {
        if let Some(d) = &self.delivery {
            d.flush();
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some(d) = &mut self.delivery {
            d.finish();
        }
    }
}

/// Attaches an MQTT sink of predictions as operator `id`.
pub fn attach<'s>(
    id: &str,
    c: &MqttSinkConfig,
    predictions: StreamVec<'s, Epoch, Prediction>,
    ctx: &super::SinkContext,
    job: &JobContext<'s>,
) {
    let op = MqttSinkOperator::new(id, c, ctx, job.state.index());
    lifecycle(predictions, Pipeline, job, op);
}
