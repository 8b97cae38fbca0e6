//! Pacing of one worker's requests to a prefix at the rate the scheduler granted.

use std::time::Duration;

/// Spaces requests to one prefix evenly at a rate the scheduler granted.
///
/// Requests are handed start times one interval apart; a caller sleeps until its slot. The rate
/// can change between batches (after each report), and a pacer that fell behind does not burst
/// to catch up, because S3 throttles bursts as readily as sustained excess.
#[derive(Debug)]
pub struct Pacer {
    state: std::sync::Mutex<(tokio::time::Instant, Duration)>,
}

impl Pacer {
    /// A pacer at `rate_rps` requests per second.
    pub fn new(rate_rps: f64) -> Self {
        Pacer { state: std::sync::Mutex::new((tokio::time::Instant::now(), interval(rate_rps))) }
    }

    /// Changes the rate for the requests not yet started.
    pub fn set_rate(&self, rate_rps: f64) {
        self.state.lock().expect("pacer lock").1 = interval(rate_rps);
    }

    /// Waits for this request's slot.
    pub async fn wait(&self) {
        let at = {
            let mut st = self.state.lock().expect("pacer lock");
            let at = st.0.max(tokio::time::Instant::now());
            st.0 = at + st.1;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

fn interval(rate_rps: f64) -> Duration {
    if rate_rps.is_finite() && rate_rps > 0.0 {
        Duration::from_secs_f64(1.0 / rate_rps)
    } else {
        Duration::ZERO
    }
}
