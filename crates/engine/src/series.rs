//! One timeframe of one symbol: its bars (resampled from the fed timeframe), a bounded history
//! of closed bars, and the shared indicators computed on them.

use std::collections::VecDeque;

use alert_core::{Candle, Timeframe};
use alert_indicators::{AnyIndicator, Components, Indicator, IndicatorSpec};

/// An indicator shared by every alert that reads it on this timeframe.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub spec: IndicatorSpec,
    pub indicator: AnyIndicator,
    pub users: u32,
    /// First slot of its components in the symbol's value table.
    pub slot: u32,
    pub width: u8,
    /// Values at the last closed bar.
    pub committed: Components,
}

/// Bars of one timeframe.
#[derive(Clone, Debug)]
pub(crate) struct TfSeries {
    pub tf: Timeframe,
    history: VecDeque<Candle>,
    history_cap: usize,
    /// Aggregate of the closed fed candles of the current bucket (higher timeframes only).
    partial: Option<Candle>,
    /// The bar as it stands: in progress, or the last closed one.
    pub current: Option<Candle>,
    /// Whether `current` is still in progress.
    pub in_progress: bool,
    pub indicators: Vec<Option<Shared>>,
}

/// `a` followed by `b` as one bar of the bucket starting at `a.open_time`.
pub(crate) fn merge(a: &Candle, b: &Candle) -> Candle {
    Candle {
        open_time: a.open_time,
        open: a.open,
        high: a.high.max(b.high),
        low: a.low.min(b.low),
        close: b.close,
        volume: a.volume + b.volume,
    }
}

impl TfSeries {
    pub fn new(tf: Timeframe, history_cap: usize) -> Self {
        Self {
            tf,
            history: VecDeque::new(),
            history_cap,
            partial: None,
            current: None,
            in_progress: false,
            indicators: Vec::new(),
        }
    }

    /// Open time of the bucket that has data but has not closed, if any.
    pub fn open_bucket(&self) -> Option<alert_core::BarTime> {
        self.partial.map(|p| p.open_time).or_else(|| {
            self.current
                .filter(|_| self.in_progress)
                .map(|c| c.open_time)
        })
    }

    fn commit(&mut self, bar: Candle) {
        if self.history_cap > 0 {
            if self.history.len() == self.history_cap {
                self.history.pop_front();
            }
            self.history.push_back(bar);
        }
        for shared in self.indicators.iter_mut().flatten() {
            let none = Components::none(shared.width as usize);
            shared.committed = shared.indicator.update(&bar).unwrap_or(none);
        }
        self.partial = None;
        self.current = Some(bar);
        self.in_progress = false;
    }

    /// The fed timeframe: a closed candle is a closed bar.
    pub fn close_feed_bar(&mut self, bar: Candle) {
        self.commit(bar);
    }

    /// The fed timeframe: an in-progress candle is the in-progress bar.
    pub fn feed_in_progress(&mut self, bar: Candle) {
        self.current = Some(bar);
        self.in_progress = true;
    }

    /// A higher timeframe: a fed candle closed. Returns whether this bar closed with it.
    pub fn absorb_closed(
        &mut self,
        fed: &Candle,
        bucket: alert_core::BarTime,
        ends_bucket: bool,
    ) -> bool {
        let mut start = *fed;
        start.open_time = bucket;
        let merged = match &self.partial {
            Some(p) => merge(p, fed),
            None => start,
        };
        if ends_bucket {
            self.commit(merged);
            true
        } else {
            self.partial = Some(merged);
            self.current = Some(merged);
            self.in_progress = true;
            false
        }
    }

    /// A higher timeframe: the fed timeframe's in-progress candle changed.
    pub fn absorb_in_progress(&mut self, fed: &Candle, bucket: alert_core::BarTime) {
        let mut start = *fed;
        start.open_time = bucket;
        self.current = Some(match &self.partial {
            Some(p) => merge(p, fed),
            None => start,
        });
        self.in_progress = true;
    }

    /// Closes the open bucket with what it has (a gap in the data ended it).
    pub fn close_open_bucket(&mut self) -> bool {
        match (self.partial, self.in_progress, self.current) {
            (Some(p), _, _) => {
                // The in-progress fed candle, if any, belongs to a later bucket or was closed
                // into `partial` already.
                self.commit(p);
                true
            }
            (None, true, Some(c)) => {
                self.commit(c);
                true
            }
            _ => false,
        }
    }

    /// Values of an indicator on the current bar: committed if it closed, else peeked.
    pub fn values_of(&self, shared: &Shared) -> Components {
        let none = Components::none(shared.width as usize);
        match self.current {
            Some(bar) if self.in_progress => shared.indicator.peek(&bar).unwrap_or(none),
            _ => shared.committed,
        }
    }

    /// Current values of the shared `spec`, if some alert reads it here.
    pub fn shared_values(&self, spec: &alert_indicators::IndicatorSpec) -> Option<Components> {
        let shared = self.indicators.iter().flatten().find(|s| &s.spec == spec)?;
        Some(self.values_of(shared))
    }

    /// Registers a reader of `spec`, building and warming the indicator from history if new.
    /// Returns its index and whether it was new.
    pub fn acquire(
        &mut self,
        spec: &IndicatorSpec,
        slot_for: impl FnOnce(u8) -> u32,
    ) -> (usize, bool) {
        if let Some(i) = self
            .indicators
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| &s.spec == spec))
        {
            if let Some(s) = self.indicators[i].as_mut() {
                s.users += 1;
            }
            return (i, false);
        }
        let mut indicator = AnyIndicator::new(spec);
        let width = indicator.width() as u8;
        let mut committed = Components::none(width as usize);
        for bar in &self.history {
            committed = indicator.update(bar).unwrap_or(committed);
        }
        let shared = Shared {
            spec: *spec,
            indicator,
            users: 1,
            slot: slot_for(width),
            width,
            committed,
        };
        match self.indicators.iter().position(Option::is_none) {
            Some(i) => {
                self.indicators[i] = Some(shared);
                (i, true)
            }
            None => {
                self.indicators.push(Some(shared));
                (self.indicators.len() - 1, true)
            }
        }
    }

    /// Drops one reader; returns the freed (slot, width) when nobody reads it any more.
    pub fn release(&mut self, index: usize) -> Option<(u32, u8)> {
        let entry = self.indicators.get_mut(index)?;
        let shared = entry.as_mut()?;
        shared.users = shared.users.saturating_sub(1);
        if shared.users == 0 {
            let freed = (shared.slot, shared.width);
            *entry = None;
            return Some(freed);
        }
        None
    }

    pub fn history(&self) -> &VecDeque<Candle> {
        &self.history
    }

    pub fn live_indicators(&self) -> usize {
        self.indicators.iter().flatten().count()
    }
}
