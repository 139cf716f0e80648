//! The one reconnect/retry pacing of the runtime's own loops (store listener, claims, outcome
//! writes): doubling from a first wait up to a cap, back to the first wait after a success.
//! Job retries follow their kind's [`crate::RetryPolicy`] instead.

use std::time::Duration;

/// Doubling waits with a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits `first`, `2 × first`, … up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt (and doubles the one after it).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// What the next wait would be, without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// After a success: start again from the first wait.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(300));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(50), ms(100), ms(200), ms(300), ms(300)]);
        b.reset();
        assert_eq!(b.peek(), ms(50));
    }
}
