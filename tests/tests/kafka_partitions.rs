//! Produce to and consume from the real three-broker cluster on a three-partition topic:
//! every record comes back once, on the partition Kafka's key hash names, in order.

use flowcast_common::kafka::idempotent_producer;
use flowcast_engine::kafka::partitioner::partition_for_key;
use flowcast_engine::kafka::{ClientSettings, TopicAdmin, TopicSpec};
use flowcast_operators::record::{Reading, SensorKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[test]
fn keyed_readings_land_on_their_hash_partition_in_order() {
    let settings = ClientSettings::new(flowcast_tests::brokers());
    let admin = TopicAdmin::new(&settings, Duration::from_secs(30)).expect("admin");
    let topic = flowcast_tests::unique_topic("DHT11");
    admin
        .create(&TopicSpec {
            name: topic.clone(),
            partitions: 3,
            replication_factor: 3,
            configs: vec![("min.insync.replicas".into(), "2".into())],
        })
        .expect("create topic");

    let mut cfg = settings.client_config();
    let producer: ThreadedProducer<DefaultProducerContext> =
        idempotent_producer(&mut cfg).create().expect("producer");
    let devices: Vec<String> = (0..12).map(|i| format!("pi-{i:02}")).collect();
    let per_device = 50;
    let mut sent = 0;
    for n in 0..per_device {
        for d in &devices {
            let r = Reading {
                time: 1_700_000_000.0 + f64::from(n) * 2.0,
                temperature: 20.0 + f64::from(n) / 10.0,
                humidity: 45.0,
                device: d.clone(),
            };
            let value = r.to_json();
            producer
                .send(BaseRecord::to(&topic).key(d.as_bytes()).payload(&value))
                .expect("enqueue");
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", format!("{topic}-check"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");

    let mut seen: HashMap<String, Vec<(i32, f64)>> = HashMap::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < sent && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("consume");
        let key = msg.key().expect("key");
        let r = Reading::parse(
            Some(key),
            msg.payload().expect("payload"),
            SensorKind::Dht11,
        )
        .expect("valid reading");
        assert_eq!(r.device.as_bytes(), key);
        seen.entry(r.device)
            .or_default()
            .push((msg.partition(), r.time));
        received += 1;
    }
    assert_eq!(received, sent, "not every reading came back in time");

    let mut used = std::collections::BTreeSet::new();
    for d in &devices {
        let got = &seen[d];
        assert_eq!(
            got.len(),
            per_device as usize,
            "{d}: each reading exactly once"
        );
        let want = partition_for_key(d.as_bytes(), 3);
        assert!(
            got.iter().all(|(p, _)| *p == want),
            "{d} not all on partition {want}"
        );
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "{d} out of order");
        used.insert(want);
    }
    assert_eq!(
        used.len(),
        3,
        "12 devices should spread over all 3 partitions"
    );
    admin.delete(&topic).expect("delete");
}
