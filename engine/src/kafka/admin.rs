//! Topic administration (`flowcast topics …`) through librdkafka's admin client.
//!
//! Errors say whose fault they are: an unreachable cluster, a replication factor above
//! the number of live brokers, a topic that exists or does not, and a cluster that refuses
//! the login or the TLS handshake (said at once, not after the timeout).

use super::ClientSettings;
use super::context::SecurityContext;
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer};
use std::time::Duration;

/// What can go wrong administering topics.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No broker answered within the timeout (user: wrong address, or Kafka is down).
    #[error("no Kafka broker reachable at {servers} within {timeout:?}: is Kafka running?")]
    Unreachable {
        /// The bootstrap servers tried.
        servers: String,
        /// How long we waited.
        timeout: Duration,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The cluster refused the login (SASL) or the TLS handshake failed (user: wrong
    /// credentials or CA; `FLOWCAST_RDKAFKA_SASL_*` / `FLOWCAST_RDKAFKA_SSL_*`).
    #[error(
        "Kafka at {servers} refused the connection: {reason} (check the security settings: \
         security.protocol, sasl.username / sasl.password, ssl.ca.location)"
    )]
    Security {
        /// The bootstrap servers tried.
        servers: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The replication factor asked for is larger than the number of brokers.
    #[error(
        "replication factor {requested} for topic `{topic}` exceeds the {available} broker(s) of the cluster at {servers}"
    )]
    ReplicationFactorTooLarge {
        /// Topic name.
        topic: String,
        /// Replication factor asked for.
        requested: i32,
        /// Live brokers in the cluster.
        available: usize,
        /// The bootstrap servers.
        servers: String,
    },
    /// The topic exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// Invalid arguments (user).
    #[error("invalid topic request: {0}")]
    Invalid(String),
    /// Any other error reported by Kafka for one topic.
    #[error("Kafka refused the request for topic `{topic}`: {code:?}")]
    Refused {
        /// Topic name.
        topic: String,
        /// Kafka's error code.
        code: RDKafkaErrorCode,
    },
    /// The client could not be created or the request failed as a whole.
    #[error("Kafka client error: {0}")]
    Client(#[from] KafkaError),
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions (≥ 1).
    pub partitions: i32,
    /// Replicas per partition (≥ 1, ≤ brokers).
    pub replication_factor: i32,
    /// Topic configs such as `retention.ms`.
    pub configs: Vec<(String, String)>,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition id.
    pub id: i32,
    /// Leader broker id.
    pub leader: i32,
    /// Broker ids of the replicas.
    pub replicas: Vec<i32>,
    /// Broker ids of the in-sync replicas.
    pub isr: Vec<i32>,
}

/// A topic as the cluster's metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Partitions in id order.
    pub partitions: Vec<PartitionDescription>,
}

/// An admin connection to one cluster.
pub struct TopicAdmin {
    client: AdminClient<SecurityContext>,
    /// Metadata goes through a producer client: unlike the admin client it serves
    /// librdkafka's main queue (`poll`), where refused logins and TLS failures are told.
    probe: BaseProducer<SecurityContext>,
    context: SecurityContext,
    servers: String,
    timeout: Duration,
}

impl std::fmt::Debug for TopicAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicAdmin")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl TopicAdmin {
    /// Connects lazily; the first request finds out whether the cluster is reachable.
    pub fn new(settings: &ClientSettings, timeout: Duration) -> Result<Self, AdminError> {
        let context = SecurityContext::default();
        let mut config = settings.client_config();
        config
            .set("socket.timeout.ms", timeout.as_millis().to_string())
            // Describing a topic must not create it on brokers with auto-creation on.
            .set("allow.auto.create.topics", "false");
        let client = config.create_with_context(context.clone())?;
        let probe = config.create_with_context(context.clone())?;
        Ok(TopicAdmin {
            client,
            probe,
            context,
            servers: settings.bootstrap_servers.clone(),
            timeout,
        })
    }

    /// The cluster's metadata, asked in slices of at most a second until the timeout, so a
    /// refused login or TLS handshake ends the wait at once.
    fn metadata(&self, topic: Option<&str>) -> Result<Metadata, AdminError> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let slice = left.min(Duration::from_secs(1));
            let result = self.probe.client().fetch_metadata(topic, slice);
            self.probe.poll(Duration::ZERO);
            if let Some(reason) = self.context.refused() {
                return Err(AdminError::Security {
                    servers: self.servers.clone(),
                    reason,
                });
            }
            match result {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown,
                )) if slice < left => {}
                other => return self.classify(other),
            }
        }
    }

    fn classify(&self, result: Result<Metadata, KafkaError>) -> Result<Metadata, AdminError> {
        result.map_err(|e| match e {
            KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown) => {
                AdminError::Unreachable {
                    servers: self.servers.clone(),
                    timeout: self.timeout,
                    source: e,
                }
            }
            other => AdminError::Client(other),
        })
    }

    /// Number of brokers the cluster reports.
    pub fn broker_count(&self) -> Result<usize, AdminError> {
        Ok(self.metadata(None)?.brokers().len())
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Creates a topic and waits until its metadata shows every partition with a leader.
    pub fn create(&self, spec: &TopicSpec) -> Result<(), AdminError> {
        if spec.partitions < 1 {
            return Err(AdminError::Invalid(format!(
                "--partitions must be ≥ 1, got {}",
                spec.partitions
            )));
        }
        if spec.replication_factor < 1 {
            return Err(AdminError::Invalid(format!(
                "--replication-factor must be ≥ 1, got {}",
                spec.replication_factor
            )));
        }
        // Ask the cluster first: Kafka's own error for this case (INVALID_REPLICATION_FACTOR)
        // does not say how many brokers there are.
        let brokers = self.broker_count()?;
        if spec.replication_factor as usize > brokers {
            return Err(AdminError::ReplicationFactorTooLarge {
                topic: spec.name.clone(),
                requested: spec.replication_factor,
                available: brokers,
                servers: self.servers.clone(),
            });
        }
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(spec.replication_factor),
        );
        for (k, v) in &spec.configs {
            topic = topic.set(k, v);
        }
        let results = block_on(self.client.create_topics([&topic], &self.options()))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Err(AdminError::TopicExists(name));
                }
                Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                    return Err(AdminError::ReplicationFactorTooLarge {
                        topic: name,
                        requested: spec.replication_factor,
                        available: brokers,
                        servers: self.servers.clone(),
                    });
                }
                Err((topic, code)) => return Err(AdminError::Refused { topic, code }),
            }
        }
        self.wait_for_leaders(&spec.name, spec.partitions as usize)
    }

    /// Grows `topic` to `total` partitions (Kafka never shrinks a topic), then waits until
    /// every partition has a leader.
    ///
    /// # Errors
    /// An unknown topic, a count not above the current one, or the cluster's refusal.
    pub fn add_partitions(&self, topic: &str, total: usize) -> Result<(), AdminError> {
        let now = self.describe(topic)?.partitions.len();
        if total <= now {
            return Err(AdminError::Invalid(format!(
                "topic `{topic}` has {now} partitions: --partitions must be more (Kafka never removes partitions)"
            )));
        }
        let grow = NewPartitions::new(topic, total);
        let results = block_on(self.client.create_partitions([&grow], &self.options()))?;
        for r in results {
            if let Err((topic, code)) = r {
                return Err(AdminError::Refused { topic, code });
            }
        }
        self.wait_for_leaders(topic, total)
    }

    fn wait_for_leaders(&self, topic: &str, partitions: usize) -> Result<(), AdminError> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            if let Ok(d) = self.describe(topic)
                && d.partitions.len() == partitions
                && d.partitions.iter().all(|p| p.leader >= 0)
            {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(AdminError::Invalid(format!(
                    "topic `{topic}` was created but its partitions have no leader after {:?}",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Names of the topics in the cluster, internal ones (`__…`) left out, sorted.
    pub fn list(&self) -> Result<Vec<String>, AdminError> {
        let md = self.metadata(None)?;
        let mut names: Vec<String> = md
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| !n.starts_with("__"))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Partitions, leaders and replicas of one topic.
    pub fn describe(&self, topic: &str) -> Result<TopicDescription, AdminError> {
        let md = self.metadata(Some(topic))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| AdminError::UnknownTopic(topic.to_owned()))?;
        match t.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                return Err(AdminError::UnknownTopic(topic.to_owned()));
            }
            Some(code) => {
                return Err(AdminError::Refused {
                    topic: topic.to_owned(),
                    code,
                });
            }
        }
        let mut partitions: Vec<PartitionDescription> = t
            .partitions()
            .iter()
            .map(|p| PartitionDescription {
                id: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        Ok(TopicDescription {
            name: topic.to_owned(),
            partitions,
        })
    }

    /// Deletes a topic.
    pub fn delete(&self, topic: &str) -> Result<(), AdminError> {
        self.metadata(None)?;
        let results = block_on(self.client.delete_topics(&[topic], &self.options()))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((name, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(AdminError::UnknownTopic(name));
                }
                Err((topic, code)) => return Err(AdminError::Refused { topic, code }),
            }
        }
        Ok(())
    }
}
