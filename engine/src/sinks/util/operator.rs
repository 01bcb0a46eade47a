//! The operator of every sink that delivers to a server through a delivery engine
//! (ThingsBoard, MQTT): each epoch's predictions are submitted (blocking while the
//! engine's bounded queue is full: backpressure); a snapshot waits until everything
//! handed over is delivered or dead-lettered (at-least-once); the end of input finishes
//! the engine. A sink that could not start has no engine: the job is failing
//! ([`crate::sinks::SinkContext::started`]) and its records go nowhere.

use crate::lifecycle::{EpochContext, Operator, StateError, StateWriter};
use flowcast_operators::Prediction;

/// A delivery engine: where a [`DeliveryOperator`] hands its predictions.
pub trait Deliver: std::fmt::Debug + 'static {
    /// Queues a prediction; blocks while the engine's queue is full.
    fn submit(&mut self, prediction: Prediction);
    /// Waits until every prediction submitted so far is delivered or dead-lettered.
    fn flush(&mut self);
    /// No more input: deliver what is queued and stop.
    fn finish(&mut self) {
        self.flush();
    }
}

/// A sink operator on top of a [`Deliver`] engine.
#[derive(Debug)]
pub struct DeliveryOperator<D> {
    id: String,
    delivery: Option<D>,
}

impl<D: Deliver> DeliveryOperator<D> {
    /// Sink `id` delivering through `delivery` (`None`: it could not start).
    pub fn new(id: &str, delivery: Option<D>) -> Self {
        DeliveryOperator {
            id: id.to_owned(),
            delivery,
        }
    }
}

impl<D: Deliver> Operator for DeliveryOperator<D> {
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
        if let Some(d) = &mut self.delivery {
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
