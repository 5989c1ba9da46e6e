//! The rules of DESIGN.md §4, one test each, with small hand-made data.

mod common;

use alert_core::{BarTime, CandleUpdate, Timeframe};
use alert_engine::{Bound, DataError, Engine, EngineConfig, EngineError, Event, Test, TriggerMode};
use common::*;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        feed: Timeframe::M1,
        history_bars: 1000,
    })
}

#[test]
fn crossing_fires_intrabar_against_the_previous_closed_bar_once_per_bar() {
    let mut e = engine();
    let h = Timeframe::H1;
    add(
        &mut e,
        "x",
        alert(
            h,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                h,
                close(h),
                Test::CrossesAbove(Bound::Value(100.0)),
            )],
        ),
    );
    // Hour 0: closes at 99 (below).
    for m in 0..60 {
        assert!(feed(&mut e, bar(T0 + m * MIN, 99.0), true).is_empty());
    }
    // Hour 1, minute 0 in progress at 99.5: no cross. Then 101 intrabar: fires.
    assert!(feed(&mut e, bar(T0 + HOUR, 99.5), false).is_empty());
    let fired = feed(&mut e, bar(T0 + HOUR, 101.0), false);
    assert_eq!(fired.len(), 1);
    let t = &fired[0];
    assert_eq!(t.bar_time, BarTime::from_millis(T0 + HOUR));
    assert_eq!(
        t.fired_at,
        BarTime::from_millis(T0 + HOUR + MIN),
        "close time of the fed candle"
    );
    assert_eq!(t.conditions["c"].value, Some(101.0));
    assert_eq!(t.conditions["c"].rhs, Some(100.0));
    assert!(t.conditions["c"].held);
    // Still crossing for the rest of the hour: at most once per bar.
    for m in 0..60 {
        assert!(feed(&mut e, bar(T0 + HOUR + m * MIN, 101.0 + m as f64), true).is_empty());
    }
    // Hour 2: the previous hour closed above 100: no cross any more.
    for m in 0..60 {
        assert!(feed(&mut e, bar(T0 + 2 * HOUR + m * MIN, 150.0), true).is_empty());
    }
}

#[test]
fn once_per_bar_close_fires_only_at_the_base_close() {
    let mut e = engine();
    let h = Timeframe::H1;
    add(
        &mut e,
        "x",
        alert(
            h,
            TriggerMode::OncePerBarClose,
            1,
            vec![leaf("c", h, close(h), Test::Greater(Bound::Value(100.0)))],
        ),
    );
    let mut fired = Vec::new();
    for m in 0..60 {
        fired.extend(feed(&mut e, bar(T0 + m * MIN, 101.0), false));
        fired.extend(feed(&mut e, bar(T0 + m * MIN, 101.0), true));
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].bar_time, BarTime::from_millis(T0));
    assert_eq!(fired[0].fired_at, BarTime::from_millis(T0 + HOUR));
    assert_eq!(fired[0].bar.map(|b| b.close), Some(101.0));
}

#[test]
fn debounce_spaces_fires_by_n_base_bars() {
    let mut e = engine();
    let m5 = Timeframe::M5;
    add(
        &mut e,
        "x",
        alert(
            m5,
            TriggerMode::OncePerBar,
            3,
            vec![leaf("c", m5, close(m5), Test::Greater(Bound::Value(0.0)))],
        ),
    );
    let mut bars = Vec::new();
    for m in 0..60 {
        for t in feed(&mut e, bar(T0 + m * MIN, 10.0), true) {
            bars.push((t.bar_time.millis() - T0) / MIN);
        }
    }
    assert_eq!(bars, vec![0, 15, 30, 45], "fires on 5m bars 0, 3, 6, 9");
}

#[test]
fn once_fires_once_and_state_survives_a_restart() {
    let h = Timeframe::H1;
    let def = alert(
        h,
        TriggerMode::Once,
        1,
        vec![leaf("c", h, close(h), Test::Greater(Bound::Value(0.0)))],
    );
    let mut e = engine();
    add(&mut e, "x", def.clone());
    assert_eq!(feed(&mut e, bar(T0, 1.0), true).len(), 1);
    assert!(feed(&mut e, bar(T0 + HOUR, 1.0), true).is_empty());
    assert!(e.alert_state(&id("x")).is_some_and(|s| s.spent));
    let saved = e.export_state();

    // A new engine fed the same data again, with the state imported first: nothing fires.
    let mut again = engine();
    again.import_state(saved);
    add(&mut again, "x", def);
    assert!(feed(&mut again, bar(T0, 1.0), true).is_empty());
    assert!(feed(&mut again, bar(T0 + 2 * HOUR, 1.0), true).is_empty());
}

#[test]
fn restart_with_state_never_fires_twice_for_a_bar() {
    let h = Timeframe::H1;
    let def = alert(
        h,
        TriggerMode::OncePerBar,
        1,
        vec![leaf("c", h, close(h), Test::Greater(Bound::Value(0.0)))],
    );
    let mut e = engine();
    add(&mut e, "x", def.clone());
    assert_eq!(feed(&mut e, bar(T0 + 5 * MIN, 1.0), false).len(), 1);
    let saved = e.export_state();
    let mut again = engine();
    add(&mut again, "x", def);
    again.import_state(saved);
    assert!(
        feed(&mut again, bar(T0 + 6 * MIN, 1.0), false).is_empty(),
        "same hour: already fired"
    );
    assert_eq!(
        feed(&mut again, bar(T0 + HOUR, 1.0), false).len(),
        1,
        "next hour fires"
    );
}

#[test]
fn expiry_stops_the_alert() {
    let mut e = engine();
    let m1 = Timeframe::M1;
    let mut def = alert(
        m1,
        TriggerMode::OncePerBar,
        1,
        vec![leaf("c", m1, close(m1), Test::Greater(Bound::Value(0.0)))],
    );
    def.expires_at = Some(BarTime::from_millis(T0 + 3 * MIN));
    add(&mut e, "x", def);
    let mut fired = 0;
    let mut expired = 0;
    for m in 0..10 {
        let mut out = Vec::new();
        let u = CandleUpdate {
            candle: bar(T0 + m * MIN, 5.0),
            closed: true,
        };
        assert!(e.on_candle(sym(), &u, &mut out).is_ok());
        for ev in out {
            match ev {
                Event::Triggered(_) => fired += 1,
                Event::Expired { at, .. } => {
                    expired += 1;
                    assert_eq!(at, BarTime::from_millis(T0 + 3 * MIN));
                }
            }
        }
    }
    assert_eq!(
        (fired, expired),
        (2, 1),
        "bars ending 00:01 and 00:02 fire; at 00:03 it expires"
    );
}

#[test]
fn a_gap_closes_the_higher_bar_when_a_later_bar_arrives() {
    let mut e = engine();
    let h = Timeframe::H1;
    add(
        &mut e,
        "x",
        alert(
            h,
            TriggerMode::OncePerBarClose,
            1,
            vec![leaf("c", h, close(h), Test::Greater(Bound::Value(0.0)))],
        ),
    );
    for m in 0..50 {
        assert!(feed(&mut e, bar(T0 + m * MIN, 2.0), true).is_empty());
    }
    // Data resumes at 01:10: the 00:00 bar closes first, at its own close time.
    let fired = feed(&mut e, bar(T0 + HOUR + 10 * MIN, 3.0), true);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].bar_time, BarTime::from_millis(T0));
    assert_eq!(fired[0].fired_at, BarTime::from_millis(T0 + HOUR));
    let hours = e.candles(sym(), h);
    assert_eq!(hours.len(), 2);
    assert_eq!(hours[0].0.open_time, BarTime::from_millis(T0));
    assert_eq!(hours[0].0.volume, 50.0, "only the bars that came");
    assert!(hours[1].1, "01:00 is in progress");
}

#[test]
fn empty_buckets_make_no_bar() {
    let mut e = engine();
    let m5 = Timeframe::M5;
    add(
        &mut e,
        "x",
        alert(
            m5,
            TriggerMode::OncePerBarClose,
            1,
            vec![leaf("c", m5, close(m5), Test::Greater(Bound::Value(0.0)))],
        ),
    );
    feed(&mut e, bar(T0, 1.0), true);
    feed(&mut e, bar(T0 + 30 * MIN, 1.0), true);
    let bars: Vec<(i64, bool)> = e
        .candles(sym(), m5)
        .iter()
        .map(|(c, open)| ((c.open_time.millis() - T0) / MIN, *open))
        .collect();
    assert_eq!(
        bars,
        vec![(0, false), (30, true)],
        "00:30 is in progress; 00:05..00:25 never existed"
    );
}

#[test]
fn stale_and_duplicate_updates_are_refused_without_change() {
    let mut e = engine();
    let m1 = Timeframe::M1;
    add(
        &mut e,
        "x",
        alert(
            m1,
            TriggerMode::OncePerBar,
            1,
            vec![leaf("c", m1, close(m1), Test::Greater(Bound::Value(0.0)))],
        ),
    );
    assert_eq!(feed(&mut e, bar(T0, 1.0), true).len(), 1);
    let mut out = Vec::new();
    let dup = CandleUpdate {
        candle: bar(T0, 1.0),
        closed: true,
    };
    assert!(matches!(
        e.on_candle(sym(), &dup, &mut out),
        Err(DataError::Stale { .. })
    ));
    let misaligned = CandleUpdate {
        candle: bar(T0 + 30_000, 1.0),
        closed: true,
    };
    assert!(matches!(
        e.on_candle(sym(), &misaligned, &mut out),
        Err(DataError::Misaligned { .. })
    ));
    let mut bad = bar(T0 + MIN, 1.0);
    bad.high = f64::NAN;
    assert!(matches!(
        e.on_candle(
            sym(),
            &CandleUpdate {
                candle: bad,
                closed: true
            },
            &mut out
        ),
        Err(DataError::BadCandle { .. })
    ));
    assert!(out.is_empty());
    assert_eq!(e.candles(sym(), m1).len(), 1);
}

#[test]
fn a_higher_timeframe_condition_reads_its_in_progress_bar() {
    let mut e = engine();
    let (m15, h) = (Timeframe::M15, Timeframe::H1);
    // 15m alert: the 1h bar's close so far is above 100.
    add(
        &mut e,
        "x",
        alert(
            m15,
            TriggerMode::OncePerBarClose,
            1,
            vec![leaf("c", h, close(h), Test::Greater(Bound::Value(100.0)))],
        ),
    );
    let mut fired = Vec::new();
    for m in 0..60 {
        let price = if m < 15 { 99.0 } else { 101.0 };
        fired.extend(feed(&mut e, bar(T0 + m * MIN, price), true));
    }
    let bars: Vec<i64> = fired
        .iter()
        .map(|t| (t.bar_time.millis() - T0) / MIN)
        .collect();
    assert_eq!(
        bars,
        vec![15, 30, 45],
        "the 00:00 15m bar closed with the hour at 99"
    );
}

#[test]
fn indicators_are_shared_and_dropped_when_unused() {
    let mut e = engine();
    let h = Timeframe::H1;
    let rsi = || {
        alert(
            h,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                h,
                ind(h, "RSI(14)", 0),
                Test::Less(Bound::Value(30.0)),
            )],
        )
    };
    add(&mut e, "a", rsi());
    add(&mut e, "b", rsi());
    assert_eq!(e.indicator_count(sym()), 1);
    add(
        &mut e,
        "c",
        alert(
            h,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                h,
                ind(h, "RSI(7)", 0),
                Test::Less(Bound::Value(30.0)),
            )],
        ),
    );
    assert_eq!(e.indicator_count(sym()), 2);
    assert!(e.remove(&id("a")));
    assert_eq!(e.indicator_count(sym()), 2);
    assert!(e.remove(&id("b")));
    assert_eq!(e.indicator_count(sym()), 1);
    assert!(!e.remove(&id("b")));
    assert_eq!(e.alert_count(), 1);
}

#[test]
fn a_timeframe_the_feed_cannot_build_is_refused() {
    let mut e = Engine::new(EngineConfig {
        feed: Timeframe::M5,
        history_bars: 10,
    });
    let m1 = Timeframe::M1;
    let def = alert(
        m1,
        TriggerMode::OncePerBar,
        1,
        vec![leaf("c", m1, close(m1), Test::Greater(Bound::Value(0.0)))],
    );
    let err = e.upsert(id("x"), std::sync::Arc::new(def));
    assert!(matches!(
        err,
        Err(EngineError::Timeframe {
            timeframe: Timeframe::M1,
            feed: Timeframe::M5,
            ..
        })
    ));
    assert_eq!(e.alert_count(), 0);
}

#[test]
fn a_new_alert_warms_its_indicators_from_history() {
    let mut e = engine();
    let m1 = Timeframe::M1;
    let closes: Vec<f64> = (0..200)
        .map(|i| 100.0 + ((i * 37) % 23) as f64 - 11.0)
        .collect();
    for (i, c) in closes.iter().enumerate() {
        feed(&mut e, bar(T0 + i as i64 * MIN, *c), true);
    }
    add(
        &mut e,
        "late",
        alert(
            m1,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                m1,
                ind(m1, "SMA(20)", 0),
                Test::Greater(Bound::Value(0.0)),
            )],
        ),
    );
    let next = 200;
    let fired = feed(&mut e, bar(T0 + next * MIN, 100.0), true);
    assert_eq!(
        fired.len(),
        1,
        "fires at once: the SMA has a value from history"
    );
    let mut window: Vec<f64> = closes[181..].to_vec();
    window.push(100.0);
    let want: f64 = window.iter().sum::<f64>() / 20.0;
    let got = fired[0].conditions["c"].value.unwrap_or(f64::NAN);
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

#[test]
fn channels_moving_pct_and_divergence() {
    let mut e = engine();
    let m1 = Timeframe::M1;
    let c = close(m1);
    add(
        &mut e,
        "enter",
        alert(
            m1,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                m1,
                c,
                Test::EnteringChannel {
                    lower: Bound::Value(10.0),
                    upper: Bound::Value(20.0),
                },
            )],
        ),
    );
    add(
        &mut e,
        "exit",
        alert(
            m1,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                m1,
                c,
                Test::ExitingChannel {
                    lower: Bound::Value(10.0),
                    upper: Bound::Value(20.0),
                },
            )],
        ),
    );
    add(
        &mut e,
        "up",
        alert(
            m1,
            TriggerMode::OncePerBar,
            1,
            vec![leaf("c", m1, c, Test::MovingUpPct { pct: 50.0, bars: 2 })],
        ),
    );
    add(
        &mut e,
        "bull",
        alert(
            m1,
            TriggerMode::OncePerBar,
            1,
            vec![leaf(
                "c",
                m1,
                ind(m1, "ROC(1)", 0),
                Test::Divergence {
                    other: c,
                    lookback: 2,
                    direction: alert_engine::Direction::Bullish,
                },
            )],
        ),
    );
    let prices = [5.0, 15.0, 25.0, 15.0, 30.0, 28.0, 27.0];
    let mut fired: Vec<(usize, String)> = Vec::new();
    for (i, p) in prices.iter().enumerate() {
        for t in feed(&mut e, bar(T0 + i as i64 * MIN, *p), true) {
            fired.push((i, t.alert_id.to_string()));
        }
    }
    // enter: 5→15 (bar 1), 25→15 (bar 3). exit: 15→25 (bar 2), 15→30 (bar 4).
    // up 50 % over 2 bars: 5→25 (bar 2, +400 %), 25→30 (bar 4, +20 %: no), 15→28 (bar 5).
    // bullish divergence over 2 bars: price down while ROC up — bar 6: price 30→27 (down),
    // ROC(1) bar4 = +100 %, bar 6 = (27/28 − 1)·100 ≈ −3.6 %: down too, so none; bar 5:
    // price 15→28 up: none. So no bullish divergence here.
    let mut want = vec![
        (1, "enter".to_string()),
        (2, "exit".to_string()),
        (2, "up".to_string()),
        (3, "enter".to_string()),
        (4, "exit".to_string()),
        (5, "up".to_string()),
    ];
    fired.sort();
    want.sort();
    assert_eq!(fired, want);
}

#[test]
fn an_alert_does_not_evaluate_data_it_predates() {
    let mut e = engine();
    let m1 = Timeframe::M1;
    let def = alert(
        m1,
        TriggerMode::Once,
        1,
        vec![leaf("c", m1, close(m1), Test::Greater(Bound::Value(0.0)))],
    );
    let from = BarTime::from_millis(T0 + 10 * MIN);
    assert!(
        e.upsert_active_from(id("x"), std::sync::Arc::new(def), from)
            .is_ok()
    );
    // History (bars closing up to 00:10) warms up but neither fires nor spends the `once` alert.
    for m in 0..9 {
        assert!(feed(&mut e, bar(T0 + m * MIN, 1.0), true).is_empty());
    }
    assert!(e.alert_state(&id("x")).is_some_and(|s| !s.spent));
    let fired = feed(&mut e, bar(T0 + 9 * MIN, 1.0), true);
    assert_eq!(
        fired.len(),
        1,
        "the bar closing at 00:10 is the first it sees"
    );
    assert!(
        feed(&mut e, bar(T0 + 10 * MIN, 1.0), true).is_empty(),
        "spent"
    );
}

#[test]
fn not_before_holds_an_alert_until_its_time_whichever_way_it_is_added() {
    let m1 = Timeframe::M1;
    let mut def = alert(
        m1,
        TriggerMode::OncePerBar,
        1,
        vec![leaf("c", m1, close(m1), Test::Greater(Bound::Value(0.0)))],
    );
    def.not_before = Some(BarTime::from_millis(T0 + 5 * MIN));
    let def = std::sync::Arc::new(def);
    // Plain upsert (a backtest), and an earlier active_from (a live runner): not_before wins.
    for from in [None, Some(BarTime::from_millis(T0 + 2 * MIN))] {
        let mut e = engine();
        let added = match from {
            None => e.upsert(id("x"), def.clone()),
            Some(from) => e.upsert_active_from(id("x"), def.clone(), from),
        };
        assert!(added.is_ok());
        let fired: Vec<usize> = (0..8)
            .filter(|m| !feed(&mut e, bar(T0 + m * MIN, 1.0), true).is_empty())
            .map(|m| m as usize)
            .collect();
        // The bar closing at 00:05 (opened 00:04) is the first evaluated.
        assert_eq!(fired, [4, 5, 6, 7], "{from:?}");
    }
}
