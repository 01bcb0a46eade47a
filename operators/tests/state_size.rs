//! Resident keyed state per device: 10 000 devices, each with a full ring of 60 window
//! results, one open window and its online accuracy state (a scored forecast and the
//! one waiting for its window), measured by a counting allocator (live heap bytes).
//! The target is ≤ 1 KB per device.
#![allow(unsafe_code)] // the counting allocator below: GlobalAlloc is an unsafe trait

use flowcast_operators::SensorKind;
use flowcast_operators::accuracy::{Accuracies, AccuracySettings};
use flowcast_operators::sequence::Sequences;
use flowcast_operators::window::{TumblingWindows, WindowResult};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn keyed_state_is_at_most_1kb_per_device() {
    const DEVICES: usize = 10_000;
    const WINDOW: i64 = 1_800_000;
    let names: Vec<String> = (0..DEVICES).map(|d| format!("dev-{d:05}")).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let mut windows = TumblingWindows::new(WINDOW, 0);
    let mut sequences = Sequences::new(60);
    let mut accuracy = Accuracies::new(AccuracySettings::new(SensorKind::Dht11), WINDOW);
    let mut fired: Vec<WindowResult> = Vec::new();
    let mut emitted = 0usize;
    let mut scored = 0usize;
    for w in 0..62i64 {
        for d in &names {
            windows.insert(d, w * WINDOW + 1, 21.0, 45.0);
            windows.insert(d, w * WINDOW + 2, 22.0, 46.0);
        }
        windows.advance(w * WINDOW, &mut fired);
        for r in fired.drain(..) {
            if let Some(s) = sequences.push(&r) {
                emitted += 1;
                let out = accuracy.step(&s.device, s.window_end, s.observed, [21.5, 45.5]);
                scored += usize::from(out.scored);
            }
        }
    }
    fired.shrink_to_fit();
    assert_eq!(emitted, 2 * DEVICES, "every ring is full, twice");
    assert_eq!(scored, DEVICES, "every device's first forecast is scored");
    assert_eq!(accuracy.devices(), DEVICES);
    assert_eq!(
        windows.devices(),
        DEVICES,
        "every device has its open window"
    );
    let per_device = (LIVE.load(Ordering::Relaxed) - before) as f64 / DEVICES as f64;
    println!("resident keyed state: {per_device:.0} bytes per device");
    assert!(per_device <= 1024.0, "{per_device:.0} bytes per device");
    drop((windows, sequences, accuracy));
}
