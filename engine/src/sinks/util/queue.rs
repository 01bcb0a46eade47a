//! The bounded delivery queue every sink that talks to a server shares.
//!
//! - [`Bound`]: at most `max` records handed over and not yet done with. `acquire` blocks
//!   the caller (a timely worker, the bridge's consumer loop) while the bound is reached,
//!   so backpressure reaches Kafka and memory stays bounded; `done` frees room; `flush`
//!   waits until everything handed over is done with. Nothing is ever dropped.
//! - [`KeyedQueue`]: a [`Bound`] plus a FIFO per key (a device): a key has at most one
//!   batch in flight, a batch that fails goes back to the front of its key's queue with a
//!   retry time, so a server sees each device's records in order. Request threads take
//!   batches with [`KeyedQueue::next`].
//!
//! The ThingsBoard delivery runs a pool of threads on a [`KeyedQueue`]; the MQTT sink holds
//! its per-device order in each device's connection and bounds the whole with a [`Bound`].

use super::events::{BackpressureWait, Blocked, Queued, SinkEvent};
use super::metrics::SinkMetrics;
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// At most `max` records outstanding; blocking admission, completion and flush.
#[derive(Debug)]
pub struct Bound {
    outstanding: Mutex<usize>,
    room: Condvar,
    max: usize,
    closed: std::sync::atomic::AtomicBool,
    metrics: SinkMetrics,
}

impl Bound {
    /// A bound of `max` records (at least 1).
    pub fn new(max: usize, metrics: SinkMetrics) -> Self {
        Bound {
            outstanding: Mutex::new(0),
            room: Condvar::new(),
            max: max.max(1),
            closed: std::sync::atomic::AtomicBool::new(false),
            metrics,
        }
    }

    /// Takes room for one record; blocks while `max` are outstanding (unless closed).
    pub fn acquire(&self) {
        let mut o = lock(&self.outstanding);
        if *o >= self.max && !self.is_closed() {
            BackpressureWait.emit(&self.metrics);
            let since = Instant::now();
            while *o >= self.max && !self.is_closed() {
                o = self.room.wait(o).unwrap_or_else(|p| p.into_inner());
            }
            Blocked(since.elapsed()).emit(&self.metrics);
        }
        *o += 1;
        Queued(*o).emit(&self.metrics);
    }

    /// `n` records are delivered or dead-lettered.
    pub fn done(&self, n: usize) {
        let mut o = lock(&self.outstanding);
        *o = o.saturating_sub(n);
        Queued(*o).emit(&self.metrics);
        self.room.notify_all();
    }

    /// Records handed over and not yet done with.
    pub fn outstanding(&self) -> usize {
        *lock(&self.outstanding)
    }

    /// Waits until nothing is outstanding or `within` has passed; `true` when all is done.
    pub fn flush_for(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut o = lock(&self.outstanding);
        while *o > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            o = self
                .room
                .wait_timeout(o, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Waits until nothing is outstanding, however long the destination takes to come back
    /// (a sink never drops); says every 30 s what it is waiting for.
    pub fn flush(&self) {
        while !self.flush_for(Duration::from_secs(30)) {
            tracing::info!(
                job = %self.metrics.job, sink = self.metrics.sink, operator = %self.metrics.operator,
                outstanding = self.outstanding(),
                "waiting for the destination to take the remaining records"
            );
        }
    }

    /// Lets every blocked `acquire` through (the sink is stopping).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let _guard = lock(&self.outstanding);
        self.room.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a delivery engine has done with, handed back to its caller in batches (tags of
/// delivered or dead-lettered records).
#[derive(Debug)]
pub struct Completions<T>(Mutex<Vec<T>>);

impl<T> Default for Completions<T> {
    fn default() -> Self {
        Completions(Mutex::new(Vec::new()))
    }
}

impl<T> Completions<T> {
    /// Records `done`; returns how many.
    pub fn extend(&self, done: impl IntoIterator<Item = T>) -> usize {
        let mut c = lock(&self.0);
        let before = c.len();
        c.extend(done);
        c.len() - before
    }

    /// Everything recorded since the last call.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *lock(&self.0))
    }
}

#[derive(Debug)]
struct KeyState<T> {
    items: VecDeque<T>,
    busy: bool,
    attempt: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Keys<T> {
    keys: HashMap<String, KeyState<T>>,
    /// Keys with queued items and no batch in flight, in turn order.
    ready: VecDeque<String>,
    stop: bool,
}

impl<T> Keys<T> {
    /// Puts a key that finished a batch back in turn, or forgets it when idle.
    fn release(&mut self, key: &str) {
        let idle = match self.keys.get_mut(key) {
            Some(q) => {
                q.busy = false;
                q.items.is_empty()
            }
            None => return,
        };
        if idle {
            self.keys.remove(key);
        } else {
            self.ready.push_back(key.to_owned());
        }
    }
}

/// What a request thread may do with the key whose turn it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Take its batch now.
    Go,
    /// Wait (until the instant, or until woken).
    Wait(Option<Instant>),
}

/// A [`Bound`] with a FIFO per key and at most one batch in flight per key.
#[derive(Debug)]
pub struct KeyedQueue<T> {
    bound: Bound,
    state: Mutex<Keys<T>>,
    /// Signalled when a key may have become ready.
    work: Condvar,
}

impl<T> KeyedQueue<T> {
    /// A queue of at most `max` records.
    pub fn new(max: usize, metrics: SinkMetrics) -> Self {
        KeyedQueue {
            bound: Bound::new(max, metrics),
            state: Mutex::new(Keys {
                keys: HashMap::new(),
                ready: VecDeque::new(),
                stop: false,
            }),
            work: Condvar::new(),
        }
    }

    /// The bound (outstanding count, flush).
    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    /// Queues `item` under `key`; blocks while the queue is full.
    pub fn submit(&self, key: &str, item: T) {
        self.bound.acquire();
        let mut st = lock(&self.state);
        let q = st.keys.entry(key.to_owned()).or_insert_with(|| KeyState {
            items: VecDeque::new(),
            busy: false,
            attempt: 0,
            retry_at: None,
        });
        q.items.push_back(item);
        if !q.busy && q.items.len() == 1 {
            st.ready.push_back(key.to_owned());
        }
        drop(st);
        self.work.notify_one();
    }

    /// The next batch (up to `max_batch` of one key's items, oldest first), blocking until
    /// one is due and `admit` lets it go; `None` once the queue is stopped. `admit` sees the
    /// key and the time and runs under the queue's lock: keep it short.
    pub fn next(
        &self,
        max_batch: usize,
        mut admit: impl FnMut(&str, Instant) -> Admit,
    ) -> Option<(String, Vec<T>)> {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return None;
            }
            let now = Instant::now();
            let mut wake: Option<Instant> = None;
            let mut found = None;
            for (i, k) in st.ready.iter().enumerate() {
                match st.keys.get(k).and_then(|q| q.retry_at) {
                    Some(t) if t > now => wake = Some(wake.map_or(t, |w| w.min(t))),
                    _ => {
                        found = Some(i);
                        break;
                    }
                }
            }
            let go = match found {
                Some(i) => match st.ready.get(i).map(|k| admit(k, now)) {
                    Some(Admit::Go) => Some(i),
                    Some(Admit::Wait(until)) => {
                        wake = match (wake, until) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        None
                    }
                    None => None,
                },
                None => None,
            };
            if let Some(i) = go
                && let Some(key) = st.ready.remove(i)
                && let Some(q) = st.keys.get_mut(&key)
            {
                q.busy = true;
                let n = q.items.len().min(max_batch.max(1));
                let batch = q.items.drain(..n).collect();
                return Some((key, batch));
            }
            st = match wake {
                None => self.work.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    self.work
                        .wait_timeout(st, t.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// `batch` of `key` is done with (delivered or dead-lettered): frees its room and resets
    /// the key's backoff.
    pub fn complete(&self, key: &str, n: usize) {
        {
            let mut st = lock(&self.state);
            if let Some(q) = st.keys.get_mut(key) {
                q.attempt = 0;
                q.retry_at = None;
            }
            st.release(key);
        }
        self.bound.done(n);
        self.work.notify_all();
    }

    /// `batch` of `key` failed: back to the front of its queue, in order, to be tried again
    /// after `delay(attempt)` (`attempt` counts the key's consecutive failures).
    pub fn retry(&self, key: &str, batch: Vec<T>, delay: impl FnOnce(u32) -> Duration) {
        {
            let mut st = lock(&self.state);
            if let Some(q) = st.keys.get_mut(key) {
                q.attempt += 1;
                q.retry_at = Some(Instant::now() + delay(q.attempt));
                for item in batch.into_iter().rev() {
                    q.items.push_front(item);
                }
            }
            st.release(key);
        }
        self.work.notify_all();
    }

    /// Every key may go again now (the destination is back).
    pub fn reset_backoff(&self) {
        for q in lock(&self.state).keys.values_mut() {
            q.attempt = 0;
            q.retry_at = None;
        }
        self.work.notify_all();
    }

    /// Wakes the request threads (something outside the queue, e.g. a breaker, changed).
    pub fn wake(&self) {
        self.work.notify_all();
    }

    /// Stops the request threads and lets blocked submissions through; what is queued is
    /// abandoned (flush first to deliver it).
    pub fn stop(&self) {
        lock(&self.state).stop = true;
        self.bound.close();
        self.work.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn metrics() -> SinkMetrics {
        SinkMetrics::new("queue-test", "thingsboard", "sink-0:test", 0)
    }

    #[test]
    fn keys_keep_order_one_batch_in_flight_and_retry_at_the_front() {
        let q = KeyedQueue::new(10, metrics());
        for i in 0..3 {
            q.submit("a", i);
        }
        q.submit("b", 10);
        let (k, batch) = q.next(2, |_, _| Admit::Go).expect("a batch");
        assert_eq!((k.as_str(), batch.clone()), ("a", vec![0, 1]));
        // `a` is busy: the next batch is `b`'s.
        let (k2, b2) = q.next(2, |_, _| Admit::Go).expect("b's batch");
        assert_eq!((k2.as_str(), b2), ("b", vec![10]));
        q.complete("b", 1);
        q.retry("a", batch, |_| Duration::ZERO);
        let (k, batch) = q.next(5, |_, _| Admit::Go).expect("a again");
        assert_eq!((k.as_str(), batch), ("a", vec![0, 1, 2]));
        assert_eq!(q.bound().outstanding(), 3);
        q.complete("a", 3);
        assert!(q.bound().flush_for(Duration::ZERO));
    }

    #[test]
    fn submit_blocks_at_the_bound_until_room_is_freed() {
        let m = SinkMetrics::new("queue-test", "thingsboard", "sink-0:bound", 0);
        let q = Arc::new(KeyedQueue::new(2, m.clone()));
        q.submit("a", 1);
        q.submit("a", 2);
        let q2 = Arc::clone(&q);
        let blocked = std::thread::spawn(move || q2.submit("a", 3));
        // The third submission reports that it waits, and stays waiting.
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.backpressure.get() == 0 {
            assert!(
                Instant::now() < deadline,
                "the third submission never waited"
            );
            std::thread::yield_now();
        }
        assert_eq!(q.bound().outstanding(), 2, "nothing got past the bound");
        assert!(!blocked.is_finished());
        let (k, batch) = q.next(1, |_, _| Admit::Go).expect("batch");
        q.complete(&k, batch.len());
        blocked
            .join()
            .expect("the submission went through once room was freed");
        assert_eq!(q.bound().outstanding(), 2);
        assert!(!q.bound().flush_for(Duration::from_millis(1)));
    }

    #[test]
    fn admission_can_hold_a_key_and_stop_ends_the_threads() {
        let q = Arc::new(KeyedQueue::new(4, metrics()));
        q.submit("a", 1);
        let q2 = Arc::clone(&q);
        let taker = std::thread::spawn(move || q2.next(1, |_, _| Admit::Wait(None)));
        q.stop();
        assert!(taker.join().expect("thread").is_none());
    }
}
