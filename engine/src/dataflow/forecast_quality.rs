//! The forecast operator's quality metrics: how the devices of a worker stand against
//! persistence, per feature — never a device id as a label. Summed over the `worker`
//! label they are the job's.
//!
//! - `flowcast_forecast_error_ratio_devices{feature, at_most}`: devices whose model-to-
//!   persistence rolling error ratio is at most `at_most` (cumulative, as histogram
//!   buckets; `label_replace` to `le` lets `histogram_quantile` read it — promtool refuses
//!   `le` on a gauge);
//! - `flowcast_forecast_model_ahead_devices` / `_behind_devices`: devices whose model's
//!   rolling error is below / above persistence's;
//! - `flowcast_forecast_guarded_devices`: devices served persistence by the guard;
//! - `flowcast_forecast_scored_total`, `flowcast_forecast_clamped_total{feature}`,
//!   `flowcast_forecast_persistence_served_total{feature}`: forecasts scored, model
//!   forecasts clamped to the sensor's range, features served by persistence.

use crate::metrics::{self, Counter};
use flowcast_operators::ForecasterKind;
use flowcast_operators::accuracy::{Outcome, Standing};

/// Upper bounds of the error-ratio buckets (`+Inf` is added).
pub const RATIO_BUCKETS: [f64; 9] = [0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0];

const FEATURES: [&str; 2] = ["temperature", "humidity"];

#[derive(Debug)]
struct Feature {
    buckets: Vec<Counter>,
    ahead: Counter,
    behind: Counter,
    guarded: Counter,
    clamped: Counter,
    persistence_served: Counter,
}

/// The quality series of one forecast operator instance.
#[derive(Debug)]
pub struct QualityMetrics {
    features: Vec<Feature>,
    scored: Counter,
}

impl QualityMetrics {
    /// The series for `labels` (job, operator, worker).
    pub fn new(labels: &[(&'static str, &str)]) -> Self {
        let features = FEATURES
            .iter()
            .map(|feature| {
                let mut l = labels.to_vec();
                l.push(("feature", feature));
                let bound: Vec<String> = RATIO_BUCKETS
                    .iter()
                    .map(|b| b.to_string())
                    .chain(["+Inf".to_owned()])
                    .collect();
                let buckets = bound
                    .iter()
                    .map(|le| {
                        let mut l = l.clone();
                        l.push(("at_most", le.as_str()));
                        metrics::gauge(
                            "flowcast_forecast_error_ratio_devices",
                            "Devices whose model-to-persistence rolling error ratio is at most at_most",
                            &l,
                        )
                    })
                    .collect();
                Feature {
                    buckets,
                    ahead: metrics::gauge(
                        "flowcast_forecast_model_ahead_devices",
                        "Devices whose model's rolling error is below persistence's",
                        &l,
                    ),
                    behind: metrics::gauge(
                        "flowcast_forecast_model_behind_devices",
                        "Devices whose model's rolling error is above persistence's",
                        &l,
                    ),
                    guarded: metrics::gauge(
                        "flowcast_forecast_guarded_devices",
                        "Devices served the persistence forecast by the guard",
                        &l,
                    ),
                    clamped: metrics::counter(
                        "flowcast_forecast_clamped_total",
                        "Model forecasts clamped to the sensor's physical range",
                        &l,
                    ),
                    persistence_served: metrics::counter(
                        "flowcast_forecast_persistence_served_total",
                        "Forecasts whose feature the persistence forecast was served for",
                        &l,
                    ),
                }
            })
            .collect();
        QualityMetrics {
            features,
            scored: metrics::counter(
                "flowcast_forecast_scored_total",
                "Forecasts scored against the window they forecast",
                labels,
            ),
        }
    }

    /// Counts one forecast's outcome.
    pub fn count(&self, o: &Outcome) {
        self.scored.add(u64::from(o.scored));
        for (f, served) in self
            .features
            .iter()
            .zip([o.served.temperature, o.served.humidity])
        {
            f.clamped.add(u64::from(served.clamped));
            f.persistence_served
                .add(u64::from(served.by == ForecasterKind::Persistence));
        }
    }

    /// Sets the gauges to how the devices stand.
    pub fn publish(&self, s: &Standing) {
        for (i, f) in self.features.iter().enumerate() {
            let mut counts = vec![0u64; RATIO_BUCKETS.len() + 1];
            for r in &s.ratios[i] {
                let at = RATIO_BUCKETS
                    .iter()
                    .position(|b| r <= b)
                    .unwrap_or(RATIO_BUCKETS.len());
                counts[at] += 1;
            }
            let mut cumulative = 0;
            for (g, n) in f.buckets.iter().zip(counts) {
                cumulative += n;
                g.set(cumulative);
            }
            f.ahead.set(s.ahead[i]);
            f.behind.set(s.behind[i]);
            f.guarded.set(s.guarded[i]);
        }
    }
}
