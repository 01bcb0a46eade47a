use super::*;

const W: EventTime = 1_800_000;

/// The guard off: the model always speaks (the guard has its own tests).
fn settings() -> AccuracySettings {
    AccuracySettings {
        guard: None,
        ..AccuracySettings::new(SensorKind::Dht22)
    }
}

/// xorshift: seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as f64 / 1_000_000.0
    }
}

/// The naive reference: the rolling errors written out from the whole history of one
/// device's (window end, observed, model forecast), with weights `(1-α)^k`.
fn reference(history: &[(EventTime, [f64; 2], [f64; 2])], half_life: f64) -> Option<[[f64; 2]; 2]> {
    let alpha = 1.0 - 0.5f64.powf(1.0 / half_life);
    let mut errors: Vec<[[f64; 2]; 2]> = Vec::new();
    for pair in history.windows(2) {
        let ((end0, obs0, model0), (end1, obs1, _)) = (pair[0], pair[1]);
        if end1 == end0 + W {
            let mut e = [[0.0; 2]; 2];
            for f in 0..2 {
                e[f] = [(model0[f] - obs1[f]).abs(), (obs0[f] - obs1[f]).abs()];
            }
            errors.push(e);
        }
    }
    let (first, rest) = errors.split_first()?;
    // ewm_n = (1-α)^n e_0 + Σ_{i≥1} α (1-α)^{n-i} e_i
    let n = rest.len();
    let mut out = [[0.0; 2]; 2];
    for f in 0..2 {
        for k in 0..2 {
            let mut v = (1.0 - alpha).powi(n as i32) * first[f][k];
            for (i, e) in rest.iter().enumerate() {
                v += alpha * (1.0 - alpha).powi((n - 1 - i) as i32) * e[f][k];
            }
            out[f][k] = v;
        }
    }
    Some(out)
}

#[test]
fn rolling_errors_match_the_naive_reference_on_random_series_with_gaps() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..20 {
        let mut s = settings();
        s.half_life = 1.0 + 30.0 * rng.next();
        let mut acc = Accuracies::new(s, W);
        let mut history = Vec::new();
        let mut end = W * (10 + case);
        for _ in 0..200 {
            // One window in ten is missing.
            end += if rng.next() < 0.1 { 2 * W } else { W };
            let obs = [20.0 + 5.0 * rng.next(), 40.0 + 20.0 * rng.next()];
            let model = [obs[0] + rng.next() - 0.5, obs[1] + 4.0 * rng.next() - 2.0];
            let out = acc.step("d", end, obs, model);
            history.push((end, obs, model));
            let want = reference(&history, s.half_life);
            let got = out.accuracy.temperature.zip(out.accuracy.humidity);
            match (want, got) {
                (None, None) => {}
                (Some(w), Some((t, h))) => {
                    // f32 state: errors of values near 50 are good to some 1e-5.
                    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
                    for (f, a) in [t, h].iter().enumerate() {
                        assert!(close(a.model, w[f][0]), "case {case}: {a:?} vs {w:?}");
                        assert!(close(a.persistence, w[f][1]), "case {case}: {a:?} vs {w:?}");
                    }
                }
                (w, g) => panic!("case {case}: reference {w:?}, got {g:?}"),
            }
        }
    }
}

#[test]
fn a_revision_of_the_newest_window_replaces_the_waiting_forecast_without_a_second_score() {
    let mut a = Accuracies::new(settings(), W);
    let mut b = Accuracies::new(settings(), W);
    a.step("d", W, [20.0, 50.0], [21.0, 50.0]);
    b.step("d", W, [20.0, 50.0], [21.0, 50.0]);
    let first = a.step("d", 2 * W, [22.0, 50.0], [23.0, 50.0]);
    b.step("d", 2 * W, [22.0, 50.0], [30.0, 50.0]);
    let revised = b.step("d", 2 * W, [25.0, 50.0], [23.0, 50.0]);
    assert!(first.scored && !revised.scored);
    assert_eq!(
        first.accuracy, revised.accuracy,
        "scored as the window first closed"
    );
    assert_eq!(revised.predicted, [23.0, 50.0]);
    // The next window scores the revised forecast: persistence 25 against 24, not 22.
    let next = b.step("d", 3 * W, [24.0, 50.0], [24.0, 50.0]);
    let want = a.step("d", 3 * W, [24.0, 50.0], [24.0, 50.0]).accuracy;
    let (t, w) = (
        next.accuracy.temperature.expect("scored"),
        want.temperature.expect("scored"),
    );
    assert_eq!(t.model, w.model, "both forecast 23");
    assert!(t.persistence < w.persistence, "1 off, not 2");
}

#[test]
fn the_guard_switches_with_margin_and_hysteresis_after_the_warm_up() {
    let mut s = settings();
    s.half_life = 1.0;
    s.guard = Some(GuardSettings {
        margin: 0.1,
        hysteresis: 0.1,
        warm_up: 3,
        warm_up_serves: ForecasterKind::Persistence,
    });
    let mut acc = Accuracies::new(s, W);
    // Temperature alternates 20/21: persistence is always 1 off. The model forecasts the
    // next value `off[i]` too high; forecast i is scored at window i+1.
    let off = [[0.0; 5].as_slice(), &[1.5; 3], &[1.05; 6], &[0.5; 3]].concat();
    let temps: Vec<f64> = (0..=off.len()).map(|i| 20.0 + (i % 2) as f64).collect();
    let outs: Vec<Outcome> = (0..off.len())
        .map(|i| {
            let end = W * (i as i64 + 1);
            acc.step("d", end, [temps[i], 50.0], [temps[i + 1] + off[i], 50.0])
        })
        .collect();
    let why = |i: usize| outs[i].served.temperature.why;
    assert_eq!(why(0), ServedReason::WarmUp);
    assert_eq!(outs[0].served.temperature.by, ForecasterKind::Persistence);
    assert_eq!(
        outs[0].predicted[0], temps[0],
        "persistence serves the observed mean"
    );
    assert_eq!(
        why(3),
        ServedReason::ModelAhead,
        "warm-up over, the model is perfect"
    );
    assert_eq!(outs[3].predicted[0], temps[4]);
    assert_eq!(
        why(6),
        ServedReason::ModelAhead,
        "rolling error 0.75 after one miss"
    );
    assert_eq!(
        why(7),
        ServedReason::ModelBehind,
        "1.125 > 1.1 × persistence's"
    );
    assert_eq!(outs[7].predicted[0], temps[7]);
    assert_eq!(outs[7].served.temperature.model, temps[8] + 1.5);
    assert_eq!(
        why(14),
        ServedReason::ModelBehind,
        "1.054: within the margin, but not below the hysteresis threshold 1.0"
    );
    assert_eq!(why(15), ServedReason::ModelAhead, "0.78: back under 1.0");
    assert!(
        outs.iter()
            .all(|o| o.served.humidity.by == ForecasterKind::Model
                || o.served.humidity.why == ServedReason::WarmUp),
        "humidity: both exact, the model speaks"
    );
}

#[test]
fn forecasts_are_clamped_to_the_physical_range() {
    let dht11 = AccuracySettings {
        guard: None,
        ..AccuracySettings::new(SensorKind::Dht11)
    };
    let mut acc = Accuracies::new(dht11, W);
    let out = acc.step("d", W, [10.0, 95.0], [-3.0, 104.0]);
    assert_eq!(out.predicted, [0.0, 100.0]);
    assert!(out.served.temperature.clamped && out.served.humidity.clamped);
    let out = acc.step("d", 2 * W, [10.0, 95.0], [10.0, 95.0]);
    assert!(!out.served.temperature.clamped);
    // The clamped forecast is what the model is scored on.
    assert_eq!(out.accuracy.humidity.map(|a| a.model), Some(5.0));
}

#[test]
fn split_merge_and_expiry_keep_the_state() {
    let mut acc = Accuracies::new(settings(), W);
    for d in ["a", "b", "c"] {
        acc.step(d, W, [20.0, 50.0], [21.0, 50.0]);
    }
    acc.step("c", 5 * W, [20.0, 50.0], [21.0, 50.0]);
    let parts = acc.split_by(|d| u32::from(d == "a"));
    let mut back = Accuracies::new(settings(), W);
    for p in parts.into_values() {
        let text = serde_json::to_string(&p).expect("encodes");
        let p: Accuracies = serde_json::from_str(&text).expect("decodes");
        back.merge(p).expect("same windows");
    }
    assert_eq!(back.devices(), 3);
    assert_eq!(
        back.step("a", 2 * W, [20.0, 50.0], [21.0, 50.0]),
        acc.step("a", 2 * W, [20.0, 50.0], [21.0, 50.0])
    );
    assert_eq!(
        back.expire(3 * W),
        2,
        "a and b made their last forecast before"
    );
    assert!(Accuracies::new(settings(), W / 2).merge(back).is_err());
}

#[test]
fn the_standing_counts_ahead_behind_and_guarded() {
    let mut s = settings();
    s.guard = Some(GuardSettings {
        warm_up: 1,
        ..GuardSettings::default()
    });
    let mut acc = Accuracies::new(s, W);
    // `good` forecasts the next value; `bad` is 3 off.
    for (i, t) in [20.0, 22.0, 20.0].into_iter().enumerate() {
        let end = W * (i as i64 + 1);
        let next = if t == 20.0 { 22.0 } else { 20.0 };
        acc.step("good", end, [t, 50.0], [next, 50.0]);
        acc.step("bad", end, [t, 50.0], [next + 3.0, 50.0]);
    }
    let s = acc.standing();
    assert_eq!(s.ratios[0].len(), 2);
    assert_eq!((s.ahead[0], s.behind[0], s.guarded[0]), (1, 1, 1));
    assert_eq!((s.ahead[1], s.behind[1]), (0, 0), "humidity is even");
}
