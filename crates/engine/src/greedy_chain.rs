//! Greedy decoding kept one step ahead of the host, on a device that chains greedy steps
//! (`Backend::chains_greedy`): the step that feeds a pick is queued before the host reads that pick, so the device
//! goes from one step to the next without waiting for the host to read, decide and launch. When the host then
//! decides to stop (end of generation, or the caller's callback), the step queued ahead is discarded.
//!
//! The policy lives here, apart from the session, so that it is tested without a device.

use crate::error::Result;

/// One sequence's steps as the chained loop drives them.
pub trait ChainedSteps {
    /// Runs a step of one token, `token` or (`None`) the device's pick of the step before, and queues its pick;
    /// returns the token's position.
    fn queue(&mut self, token: Option<u32>) -> Result<u32>;
    /// Waits for the pick of the step at `pos`.
    fn pick(&mut self, pos: u32) -> Result<u32>;
    /// Whether another token fits the context; `Ok` if so, else the `ContextFull` error.
    fn check_room(&self) -> Result<()>;
    /// Records `token` as the token at `pos`, which a step queued ahead took from the device.
    fn set_token(&mut self, pos: u32, token: u32);
    /// Forgets every token from position `len` on.
    fn truncate(&mut self, len: u32) -> Result<()>;
}

/// Feeds `token`, then each pick in turn, until `max` picks are made or `on_token(pick)` returns false (that pick is
/// not kept fed); returns the number of picks. The same picks, callbacks and errors as feeding one step at a time.
pub fn decode(
    steps: &mut dyn ChainedSteps,
    token: u32,
    max: usize,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<usize> {
    if max == 0 {
        return Ok(0);
    }
    steps.check_room()?;
    let first = steps.queue(Some(token))?;
    for (made, pos) in (0..max).zip(first..) {
        let last = made + 1 == max;
        // The step that feeds this pick, queued before the pick is read (none after the last pick, or without room).
        let ahead = !last && steps.check_room().is_ok();
        if ahead {
            steps.queue(None)?;
        }
        let pick = match steps.pick(pos) {
            Ok(p) => p,
            Err(e) => {
                steps.truncate(pos + 1)?;
                return Err(e);
            }
        };
        if ahead {
            steps.set_token(pos + 1, pick);
        }
        if !on_token(pick) {
            steps.truncate(pos + 1)?;
            return Ok(made + 1);
        }
        if !last && !ahead {
            steps.check_room()?;
        }
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EngineError;

    /// A fake device: the pick after token t is (7t + 3) mod 101. It checks that a chained step feeds the pick of
    /// the step before, and counts how far the queue runs ahead of the reads.
    struct Fake {
        tokens: Vec<u32>,
        n_ctx: u32,
        /// [position] the pick queued for each step
        picks: Vec<Option<u32>>,
        read: usize,
        most_in_flight: usize,
    }

    fn next(t: u32) -> u32 {
        (7 * t + 3) % 101
    }

    impl Fake {
        fn new(held: u32, n_ctx: u32) -> Self {
            Self {
                tokens: (0..held).collect(),
                n_ctx,
                picks: vec![None; held as usize],
                read: 0,
                most_in_flight: 0,
            }
        }
    }

    impl ChainedSteps for Fake {
        fn queue(&mut self, token: Option<u32>) -> Result<u32> {
            let pos = self.tokens.len() as u32;
            assert!(pos < self.n_ctx, "queued past the context");
            let t = match token {
                Some(t) => t,
                None => self.picks[pos as usize - 1].expect("a chained step follows a queued pick"),
            };
            self.tokens.push(if token.is_some() { t } else { u32::MAX });
            self.picks.truncate(pos as usize);
            self.picks.push(Some(next(t)));
            let queued = self.picks.iter().filter(|p| p.is_some()).count();
            self.most_in_flight = self.most_in_flight.max(queued - self.read);
            Ok(pos)
        }
        fn pick(&mut self, pos: u32) -> Result<u32> {
            self.read += 1;
            Ok(self.picks[pos as usize].expect("a queued step"))
        }
        fn check_room(&self) -> Result<()> {
            let pos = self.tokens.len() as u32;
            if pos >= self.n_ctx {
                return Err(EngineError::ContextFull {
                    seq: 0,
                    pos,
                    n_ctx: self.n_ctx,
                });
            }
            Ok(())
        }
        fn set_token(&mut self, pos: u32, token: u32) {
            assert_eq!(
                self.tokens[pos as usize],
                u32::MAX,
                "only a chained step's token is set"
            );
            self.tokens[pos as usize] = token;
        }
        fn truncate(&mut self, len: u32) -> Result<()> {
            self.tokens.truncate(len as usize);
            Ok(())
        }
    }

    /// What feeding one token at a time gives: the picks, and the tokens held after.
    fn one_at_a_time(held: u32, token: u32, max: usize, stop_at: usize) -> (Vec<u32>, Vec<u32>) {
        let mut tokens: Vec<u32> = (0..held).collect();
        let (mut picks, mut t) = (Vec::new(), token);
        for made in 0..max {
            tokens.push(t);
            t = next(t);
            picks.push(t);
            if made + 1 == stop_at {
                break;
            }
        }
        (picks, tokens)
    }

    #[test]
    fn chained_picks_are_the_step_by_step_picks() {
        for (max, stop_at) in [(1, 0), (2, 0), (16, 0), (16, 1), (16, 5), (16, 16)] {
            let mut fake = Fake::new(3, 1000);
            let mut got = Vec::new();
            let made = decode(&mut fake, 42, max, &mut |p| {
                got.push(p);
                got.len() != stop_at
            })
            .unwrap();
            let (picks, tokens) = one_at_a_time(3, 42, max, stop_at);
            assert_eq!(got, picks, "max {max}, stop at {stop_at}");
            assert_eq!(made, picks.len());
            assert_eq!(fake.tokens, tokens, "max {max}, stop at {stop_at}: the tokens held");
            assert!(fake.most_in_flight <= 2, "{} steps in flight", fake.most_in_flight);
            if max > 1 && stop_at != 1 {
                assert_eq!(fake.most_in_flight, 2, "never ran ahead");
            }
        }
    }

    #[test]
    fn the_last_pick_queues_nothing_after_it() {
        let mut fake = Fake::new(0, 1000);
        decode(&mut fake, 1, 4, &mut |_| true).unwrap();
        assert_eq!(fake.tokens.len(), 4, "{:?}", fake.tokens);
        assert_eq!(fake.picks.len(), 4);
    }

    #[test]
    fn a_full_context_stops_where_one_step_at_a_time_does() {
        // 10 positions, 7 held: 3 tokens fit, so 3 picks, then feeding the third pick finds no room.
        let mut fake = Fake::new(7, 10);
        let mut got = Vec::new();
        let e = decode(&mut fake, 5, 8, &mut |p| {
            got.push(p);
            true
        })
        .unwrap_err();
        assert!(matches!(e, EngineError::ContextFull { pos: 10, .. }), "{e}");
        assert_eq!(got, one_at_a_time(7, 5, 3, 0).0);
        assert_eq!(fake.tokens.len(), 10);
        // No room at all: nothing runs.
        let mut full = Fake::new(10, 10);
        assert!(decode(&mut full, 5, 2, &mut |_| true).is_err());
        assert_eq!(full.tokens.len(), 10);
        // Exactly enough room for the picks asked for: no error.
        let mut fits = Fake::new(7, 10);
        assert_eq!(decode(&mut fits, 5, 3, &mut |_| true).unwrap(), 3);
    }
}
