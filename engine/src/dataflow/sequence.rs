//! The sequence operator: each device's most recent window results in a ring; once full,
//! every new window yields the sequence the model reads. Keyed by device.

use super::{Epoch, key_hash};
use crate::metrics;
use flowcast_operators::sequence::{Sequence, Sequences};
use flowcast_operators::window::WindowResult;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

/// Keyed last-N state on a stream of window results.
pub trait LastWindows<'s> {
    /// Keeps the `len` most recent windows per device; emits full sequences.
    fn last_windows(self, job: &str, len: usize) -> StreamVec<'s, Epoch, Sequence>;
}

impl<'s> LastWindows<'s> for StreamVec<'s, Epoch, WindowResult> {
    fn last_windows(self, job: &str, len: usize) -> StreamVec<'s, Epoch, Sequence> {
        let index = self.scope().index().to_string();
        let job = job.to_owned();
        self.unary(
            Exchange::new(|w: &WindowResult| key_hash(&w.device)),
            "LastWindows",
            move |_cap, _info| {
                let mut state = Sequences::new(len);
                let labels = [
                    ("job", job.as_str()),
                    ("operator", "sequence"),
                    ("worker", index.as_str()),
                ];
                let devices = metrics::gauge(
                    "flowcast_keyed_state_devices",
                    "Devices in keyed state",
                    &labels,
                );
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        session.give_iterator(data.drain(..).filter_map(|w| state.push(&w)));
                    });
                    devices.set(state.devices() as u64);
                }
            },
        )
    }
}
