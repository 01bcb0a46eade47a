//! One MQTT connection to ThingsBoard (or any broker) with at-least-once delivery that
//! survives reconnects and broker restarts.
//!
//! rumqttc republishes unacknowledged QoS 1 packets after a reconnect only when the broker
//! kept the session, which a restarted broker has not. So this driver keeps its own
//! record: every batch stays here until its PUBACK arrives; after a connection error,
//! every batch not acknowledged goes back to the front of the queue, in order, and is
//! published again once the connection is back (a duplicate carries the same `ts`, so
//! ThingsBoard overwrites it). Reconnects back off exponentially with jitter.
//!
//! Packet ids: rumqttc numbers publishes in the order it takes them from its request
//! channel and reports each as `Outgoing::Publish(pkid)`; batches handed over wait in
//! `handed` until that event names their id, then in `written` until their PUBACK.
//!
//! With a `tls` table the transport is TLS only: a failed handshake (a certificate the CA
//! file does not vouch for, a plaintext port) is logged as an error, counted in
//! `flowcast_sink_tls_errors_total` and retried with backoff, never answered by a
//! plaintext connection. A broker that refuses the token or password is logged as an
//! error and what is queued for that connection goes to the dead-letter topic.

use super::MqttShared;
use crate::sinks::util::breaker::Jitter;
use crate::sinks::util::dead_letter::{DeadLetters, Refusal, Refused};
use crate::sinks::util::payload;
use crate::sinks::util::tokens::Token;
use flowcast_operators::Prediction;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// A prediction on its way.
#[derive(Debug)]
pub struct Msg {
    /// Submission order (restores order after a reconnect).
    pub seq: u64,
    /// The prediction.
    pub prediction: Prediction,
    /// Its JSON (a dead letter's value).
    pub raw: Vec<u8>,
}

/// Who a connection is.
#[derive(Debug)]
pub struct Identity {
    /// MQTT client id.
    pub client_id: String,
    /// Username (the device's or the gateway's access token).
    pub token: Token,
    /// For logs: the device id, or `gateway`.
    pub name: String,
}

/// Runs one connection until `rx` closes and everything received is acknowledged or
/// dead-lettered.
pub async fn run(id: Identity, mut rx: UnboundedReceiver<Msg>, sh: Arc<MqttShared>) {
    let cfg = &sh.config;
    let (host, port) = match cfg.host_port() {
        Ok(hp) => hp,
        Err(e) => {
            tracing::error!(job = %sh.job, "{e}");
            return;
        }
    };
    // Checked by `validate` at the start; read again here, once per connection.
    let secured = cfg
        .password()
        .and_then(|pw| Ok((pw, cfg.tls.as_ref().map(|t| t.client_config()).transpose()?)));
    let (password, tls) = match secured {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(job = %sh.job, connection = %id.name, "MQTT connection not started: {e}");
            return;
        }
    };
    let mut opts = MqttOptions::new(id.client_id.clone(), host, port);
    if let Some(tls) = tls {
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    }
    opts.set_credentials(id.token.expose(), password)
        .set_keep_alive(cfg.keep_alive)
        .set_clean_session(true)
        .set_inflight(cfg.max_in_flight.saturating_add(1))
        .set_max_packet_size(1 << 20, 1 << 20);
    let window = usize::from(cfg.max_in_flight);
    let (client, mut el) = AsyncClient::new(opts, window + 1);
    let mut jitter = Jitter::new(sh.worker as u64);
    let mut waiting: VecDeque<Msg> = VecDeque::new();
    let mut handed: VecDeque<Vec<Msg>> = VecDeque::new();
    let mut written: BTreeMap<u16, Vec<Msg>> = BTreeMap::new();
    let mut connected = false;
    let mut closed = false;
    let mut failures = 0u32;
    loop {
        if connected {
            while handed.len() + written.len() < window && !waiting.is_empty() {
                let n = waiting.len().min(cfg.max_batch);
                let batch: Vec<Msg> = waiting.drain(..n).collect();
                let body = match cfg.mode {
                    super::MqttMode::Device => {
                        payload::device_batch(batch.iter().map(|m| &m.prediction))
                    }
                    super::MqttMode::Gateway => {
                        payload::gateway_batch(batch.iter().map(|m| &m.prediction))
                    }
                };
                if client
                    .try_publish(cfg.mode.topic(), QoS::AtLeastOnce, false, body)
                    .is_err()
                {
                    for m in batch.into_iter().rev() {
                        waiting.push_front(m);
                    }
                    break;
                }
                handed.push_back(batch);
            }
        }
        if closed && waiting.is_empty() && handed.is_empty() && written.is_empty() {
            let _ = client.try_disconnect();
            return;
        }
        tokio::select! {
            m = rx.recv(), if !closed => match m {
                Some(m) => waiting.push_back(m),
                None => closed = true,
            },
            ev = el.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    sh.metrics.connects.inc();
                    if failures > 0 {
                        tracing::info!(job = %sh.job, connection = %id.name, "MQTT connection is back");
                    }
                    failures = 0;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(b) = handed.pop_front() {
                        written.insert(pkid, b);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(b) = written.remove(&ack.pkid) {
                        sh.metrics.requests_ok.inc();
                        sh.metrics.delivered.add(b.len() as u64);
                        sh.done(b.iter().map(|m| m.seq));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    failures += 1;
                    sh.metrics.connection_errors.inc();
                    requeue(&mut waiting, &mut handed, &mut written);
                    let tls = matches!(e, ConnectionError::Tls(_));
                    if tls {
                        sh.metrics.tls_errors.inc();
                    }
                    if refused_credentials(&e) {
                        if failures == 1 {
                            tracing::error!(
                                job = %sh.job, connection = %id.name,
                                "the MQTT broker {} refused the credentials ({e}): check the \
                                 access token and `password-file`", cfg.broker
                            );
                        }
                        dead_letter(&sh, &id, &mut waiting, &e).await;
                    } else if tls && failures == 1 {
                        tracing::error!(
                            job = %sh.job, connection = %id.name, queued = waiting.len(),
                            "MQTT over TLS to {} failed: {e} (is the broker's certificate \
                             signed by `tls.ca-file`, and is this its TLS port?); no plaintext \
                             fallback, retrying with backoff", cfg.broker
                        );
                    } else if failures == 1 {
                        tracing::warn!(
                            job = %sh.job, connection = %id.name, queued = waiting.len(),
                            "MQTT connection to {} failed, reconnecting with backoff: {e}", cfg.broker
                        );
                    } else {
                        tracing::debug!(job = %sh.job, connection = %id.name, "MQTT reconnect failed: {e}");
                    }
                    let backoff = crate::sinks::util::breaker::Backoff {
                        initial: cfg.initial_backoff,
                        max: cfg.max_backoff,
                    };
                    // Messages keep arriving in `rx` (bounded by the sink's counter) meanwhile.
                    tokio::time::sleep(backoff.delay(failures, &mut jitter)).await;
                }
            },
        }
    }
}

/// Puts every batch not acknowledged back at the front of the queue, in submission order.
fn requeue(
    waiting: &mut VecDeque<Msg>,
    handed: &mut VecDeque<Vec<Msg>>,
    written: &mut BTreeMap<u16, Vec<Msg>>,
) {
    let mut back: Vec<Msg> = handed
        .drain(..)
        .flatten()
        .chain(std::mem::take(written).into_values().flatten())
        .collect();
    if back.is_empty() {
        return;
    }
    back.sort_by_key(|m| m.seq);
    for m in back.into_iter().rev() {
        waiting.push_front(m);
    }
}

fn refused_credentials(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        )
    )
}

/// The broker refuses the token: what is queued will not get through by waiting.
async fn dead_letter(
    sh: &Arc<MqttShared>,
    id: &Identity,
    waiting: &mut VecDeque<Msg>,
    e: &ConnectionError,
) {
    if waiting.is_empty() {
        return;
    }
    let batch: Vec<Msg> = waiting.drain(..).collect();
    tracing::warn!(
        job = %sh.job, connection = %id.name, records = batch.len(),
        "the MQTT broker refused the credentials ({e}); writing to the dead-letter topic"
    );
    let detail = id.token.redact(&e.to_string());
    let sh2 = Arc::clone(sh);
    let written = tokio::task::spawn_blocking(move || {
        let refused: Vec<Refused<'_>> = batch
            .iter()
            .map(|m| Refused {
                device: &m.prediction.device,
                payload: &m.raw,
            })
            .collect();
        let why = Refusal {
            reason: "mqtt_refused",
            sink: "mqtt",
            status: None,
            detail: &detail,
        };
        let r = sh2.dead.write(&refused, why);
        (r, batch)
    })
    .await;
    match written {
        Ok((Ok(()), batch)) => {
            sh.metrics.dead_letters.add(batch.len() as u64);
            sh.done(batch.iter().map(|m| m.seq));
        }
        Ok((Err(dl), batch)) => {
            tracing::error!(job = %sh.job, "cannot write dead letters ({dl}); will retry");
            for m in batch.into_iter().rev() {
                waiting.push_front(m);
            }
        }
        Err(join) => tracing::error!(job = %sh.job, "dead-letter task failed: {join}"),
    }
}
