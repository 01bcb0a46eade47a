//! The Raspberry Pi side of Flowcast: sensor backends and the Kafka producer that
//! publishes readings to topic `DHT11`. Builds without timely and without tch.

pub use flowcast_operators::record::{Reading, SensorKind};
