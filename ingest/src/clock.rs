//! Wall-clock time as the readings carry it: Unix seconds as `f64`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds with millisecond precision (the sensors are not more precise,
/// and round milliseconds print short in JSON).
pub fn unix_now() -> f64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // Milliseconds since 1970 fit in f64's 53-bit mantissa for the next 280,000 years.
    ms as f64 / 1000.0
}
