// The Chart page: candlesticks of a symbol and timeframe (/v1/candles), the indicators an alert
// reads drawn over them or in panes below (/v1/indicators), its levels as price lines, and its
// past triggers marked on their bars (/v1/triggers). Refreshed every few seconds and at once
// when one of the alert's triggers arrives on the live stream.
//
// What the chart holds is also on the chart element as data attributes (data-candles,
// data-markers, data-indicators, …) for tests and tools that read the page.

import { createChart, CandlestickSeries, LineSeries, HistogramSeries, createSeriesMarkers, ColorType } from '../vendor/lightweight-charts.standalone.production.mjs';
import { get, getCatalog } from './api.js';
import { h, clear, select, num } from './dom.js';
import { live } from './live.js';

const REFRESH_MS = 3000;
const BARS = 300;
const PALETTE = ['#2962ff', '#f57c00', '#8e24aa', '#00897b', '#d81b60', '#6d4c41'];
const OVERLAYS = new Set(['SMA', 'EMA', 'WMA', 'BBANDS', 'VWAP']);
const seconds = (iso) => Math.floor(new Date(iso).getTime() / 1000);

/** The indicator spec (`MACD(12,26,9)`) of an operand, from the catalog's settings order. */
function specOf(info, settings) {
  if (!info.settings.length) return info.name;
  const s = settings && typeof settings === 'object' ? settings : {};
  const args = info.settings.map((x) => {
    const key = [x.key, ...(x.aliases || [])].find((k) => k in s);
    return key === undefined ? x.default : s[key];
  });
  // A price source left at its default is left out: `EMA(20)`, not `EMA(20,close)`.
  const last = info.settings[info.settings.length - 1];
  if (last.kind === 'price_source' && String(args[args.length - 1]) === String(last.default)) args.pop();
  return args.length ? `${info.name}(${args.join(',')})` : info.name;
}

/** What an alert draws on a chart of `tf`: indicator specs, price levels, skipped operands. */
export function drawing(def, tf, catalog) {
  const find = (name) => {
    const n = String(name || '').toLowerCase();
    return catalog.indicators.find((i) => i.name.toLowerCase() === n || i.aliases.some((a) => a.toLowerCase() === n));
  };
  const specs = new Map(); // spec → {spec, kind, levels: []}
  const priceLevels = [];
  const skipped = [];
  const add = (info, settings) => {
    const spec = specOf(info, settings);
    if (!specs.has(spec)) specs.set(spec, { spec, kind: info.name, levels: [] });
    return specs.get(spec);
  };
  const walk = (conditions) => {
    for (const c of Array.isArray(conditions) ? conditions : []) {
      if (!c || typeof c !== 'object') continue;
      if (Array.isArray(c.conditions)) { walk(c.conditions); continue; }
      const ctf = c.timeframe && c.timeframe !== 'same' ? c.timeframe : def.base_timeframe;
      const value = (c.compareWith || 'value') === 'value' && typeof c.compareValue === 'number' ? c.compareValue : null;
      if (ctf !== tf) { skipped.push(`${c.id || 'condition'} (on ${ctf})`); continue; }
      const type = c.type || 'indicator';
      if (type === 'indicator') {
        const info = find(c.indicator);
        if (info) {
          const s = add(info, c.settings);
          if (value !== null && !String(c.operator || '').includes('pct')) s.levels.push({ value, title: c.id || '' });
        }
      } else if (type === 'price' && value !== null && !String(c.operator || '').includes('pct')) {
        priceLevels.push({ value, title: c.id || '' });
      }
      if (c.compareWith === 'indicator_component' && c.rhs && typeof c.rhs === 'object') {
        const rtf = c.rhs.timeframe && c.rhs.timeframe !== 'same' ? c.rhs.timeframe : ctf;
        const info = find(c.rhs.indicator);
        if (rtf !== tf) skipped.push(`${c.id || 'condition'} operand (on ${rtf})`);
        else if (info) add(info, c.rhs.settings);
      }
    }
  };
  walk(def && def.conditions);
  return { specs: [...specs.values()], priceLevels, skipped };
}

export async function mount(container, { arg }) {
  const [catalog, page] = await Promise.all([getCatalog(), get('/alerts?limit=500')]);
  const alerts = page.items;
  const symbols = [...new Set([...alerts.map((a) => a.symbol)])];
  if (!symbols.length) symbols.push('SIMBTC', 'SIMETH', 'SIMSOL');
  const timeframes = catalog.timeframes.filter((t) => t.available).map((t) => t.name);

  const chosen = alerts.find((a) => a.id === arg) || null;
  const state = {
    alert: chosen,
    symbol: chosen ? chosen.symbol : symbols[0],
    timeframe: chosen ? chosen.base_timeframe : (timeframes[0] || '1m'),
  };

  const alertSelect = select({ id: 'chart-alert' }, [{ value: '', label: '— no alert: candles only —' },
    ...alerts.map((a) => ({ value: a.id, label: `${a.name} (${a.symbol} ${a.base_timeframe})` }))], chosen ? chosen.id : '');
  const symbolSelect = select({ id: 'chart-symbol' }, symbols, state.symbol);
  const tfSelect = select({ id: 'chart-timeframe' }, timeframes, state.timeframe);
  const info = h('div', { class: 'chart-info muted small', id: 'chart-info' });
  const legend = h('div', { class: 'legend', id: 'chart-legend' });
  const chartEl = h('div', { class: 'chart', id: 'chart' });
  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Chart'),
      h('label', {}, 'alert ', alertSelect), h('label', {}, 'symbol ', symbolSelect), h('label', {}, 'timeframe ', tfSelect)),
    h('div', { class: 'panel' }, legend, chartEl, info,
      h('p', { class: 'muted small attribution' }, 'Charts: ',
        h('a', { href: 'https://www.tradingview.com/', target: '_blank', rel: 'noopener noreferrer' }, 'TradingView Lightweight Charts™'))));

  const chart = createChart(chartEl, {
    autoSize: true,
    // The built-in logo injects a <style> element, which the page's policy blocks: the
    // attribution TradingView asks for is the link under the chart instead.
    layout: { background: { type: ColorType.Solid, color: '#ffffff' }, textColor: '#333', fontSize: 12, attributionLogo: false },
    grid: { vertLines: { color: '#f0f3fa' }, horzLines: { color: '#f0f3fa' } },
    timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 4 },
    rightPriceScale: { borderColor: '#d6dcde' },
  });
  const candles = chart.addSeries(CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false, wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  const volume = chart.addSeries(HistogramSeries, { priceFormat: { type: 'volume' }, priceScaleId: 'vol', color: '#b2dfdb', lastValueVisible: false, priceLineVisible: false });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
  const markers = createSeriesMarkers(candles, []);
  let lines = []; // {spec, series: [..]} of the current drawing
  let priceLines = [];
  let plan = { specs: [], priceLevels: [], skipped: [] };
  let triggers = [];
  let bars = [];
  let fitted = false;
  let busy = false;
  let lastRow = null;

  function summary() {
    const last = lastRow;
    const whose = state.alert ? `"${state.alert.name}"` : state.symbol;
    info.textContent = bars.length && last
      ? `${bars.length} bars · last ${num(last.close)}${last.closed ? '' : ' (bar in progress)'} · ${triggers.length} trigger(s) of ${whose}; ▲ marks the bars they fired on`
      : `No candles for ${state.symbol} ${state.timeframe} yet: the server keeps the history of symbols its active alerts watch.`;
  }

  function setup() {
    for (const l of lines) for (const s of l.series) chart.removeSeries(s);
    for (const p of priceLines) p.series.removePriceLine(p.line);
    lines = [];
    priceLines = [];
    fitted = false;
    // Panes beyond the first are dropped once their last series is gone.
    plan = state.alert ? drawing(state.alert.definition, state.timeframe, catalog) : { specs: [], priceLevels: [], skipped: [] };
    let pane = 0;
    plan.specs.forEach((s, i) => {
      const overlay = OVERLAYS.has(s.kind);
      const paneIndex = overlay ? 0 : ++pane;
      lines.push({ spec: s.spec, paneIndex, color: PALETTE[i % PALETTE.length], series: [], levels: s.levels, components: null });
    });
    for (const level of plan.priceLevels) {
      priceLines.push({ series: candles, line: candles.createPriceLine({ price: level.value, color: '#f7a21b', lineWidth: 1, lineStyle: 2, axisLabelVisible: true, title: level.title }) });
    }
    clear(legend);
    legend.appendChild(h('span', { class: 'legend-item' }, h('strong', {}, `${state.symbol} · ${state.timeframe}`)));
    lines.forEach((l, i) => legend.appendChild(h('span', { class: `legend-item c${i % PALETTE.length}` }, l.spec)));
    if (plan.skipped.length) legend.appendChild(h('span', { class: 'legend-item muted' }, `not drawn on ${state.timeframe}: ${plan.skipped.join(', ')}`));
    chartEl.dataset.ready = 'false';
    chartEl.dataset.markers = '0';
    chartEl.dataset.symbol = state.symbol;
    chartEl.dataset.timeframe = state.timeframe;
    chartEl.dataset.alertId = state.alert ? state.alert.id : '';
    chartEl.dataset.indicators = String(lines.length);
    chartEl.dataset.indicatorSpecs = lines.map((l) => l.spec).join(' ');
  }

  async function loadTriggers() {
    const q = state.alert ? `&alert_id=${state.alert.id}` : '';
    const r = await get(`/triggers?limit=500${q}`);
    triggers = r.items.filter((t) => t.symbol === state.symbol);
  }

  /** One marker per bar with triggers, on the chart's bar that holds the trigger's bar. */
  function placeMarkers() {
    const times = bars.map((b) => b.time);
    const byBar = new Map();
    for (const t of triggers) {
      const at = seconds(t.bar_time);
      // The last bar opening at or before the trigger's bar.
      let lo = 0; let hi = times.length - 1; let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (times[mid] <= at) { found = mid; lo = mid + 1; } else hi = mid - 1;
      }
      if (found < 0 || (found === times.length - 1 && at - times[found] > 7 * 86400)) continue;
      byBar.set(times[found], (byBar.get(times[found]) || 0) + 1);
    }
    const list = [...byBar.entries()].sort((a, b) => a[0] - b[0]).map(([time, n]) => ({
      time, position: 'belowBar', color: '#f7a21b', shape: 'arrowUp', text: n > 1 ? `×${n}` : '',
    }));
    markers.setMarkers(list);
    chartEl.dataset.markers = String(list.length);
    chartEl.dataset.triggers = String(triggers.length);
    summary();
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const base = `symbol=${encodeURIComponent(state.symbol)}&timeframe=${encodeURIComponent(state.timeframe)}&limit=${BARS}`;
      const [rows, ...series] = await Promise.all([
        get(`/candles?${base}`),
        ...lines.map((l) => get(`/indicators?${base}&spec=${encodeURIComponent(l.spec)}`).catch((e) => ({ error: e.message }))),
      ]);
      bars = rows.map((c) => ({ time: seconds(c.open_time), open: c.open, high: c.high, low: c.low, close: c.close }));
      candles.setData(bars);
      volume.setData(rows.map((c) => ({ time: seconds(c.open_time), value: c.volume, color: c.close >= c.open ? '#b2dfdb' : '#ffcdd2' })));
      series.forEach((s, i) => drawIndicator(lines[i], s));
      placeMarkers();
      if (!fitted && bars.length) { chart.timeScale().fitContent(); fitted = true; }
      lastRow = rows[rows.length - 1];
      summary();
      chartEl.dataset.candles = String(bars.length);
      chartEl.dataset.ready = 'true';
    } catch (e) {
      info.textContent = `Could not load: ${e.message}`;
    } finally {
      busy = false;
    }
  }

  function drawIndicator(line, answer) {
    if (!answer || answer.error || !Array.isArray(answer.components)) {
      line.error = answer && answer.error;
      return;
    }
    if (!line.series.length) {
      answer.components.forEach((name, j) => {
        const color = j === 0 ? line.color : PALETTE[(PALETTE.indexOf(line.color) + j * 2) % PALETTE.length];
        const opts = { color, lineWidth: j === 0 ? 2 : 1, title: answer.components.length > 1 ? name : line.spec, priceLineVisible: false, lastValueVisible: true };
        const s = name === 'Histogram'
          ? chart.addSeries(HistogramSeries, { color: '#90a4ae', priceLineVisible: false }, line.paneIndex)
          : chart.addSeries(LineSeries, opts, line.paneIndex);
        line.series.push(s);
      });
      for (const level of line.levels) {
        priceLines.push({ series: line.series[0], line: line.series[0].createPriceLine({ price: level.value, color: '#f7a21b', lineWidth: 1, lineStyle: 2, title: level.title }) });
      }
      if (line.paneIndex > 0) {
        const panes = chart.panes();
        if (panes[line.paneIndex]) panes[line.paneIndex].setHeight(140);
      }
    }
    answer.components.forEach((name, j) => {
      const data = answer.values.filter((v) => typeof v[name] === 'number').map((v) => ({ time: seconds(v.open_time), value: v[name] }));
      line.series[j].setData(data);
    });
  }

  async function reload() {
    setup();
    await loadTriggers().catch(() => { triggers = []; });
    await refresh();
  }

  alertSelect.addEventListener('change', () => {
    state.alert = alerts.find((a) => a.id === alertSelect.value) || null;
    if (state.alert) {
      state.symbol = state.alert.symbol;
      state.timeframe = state.alert.base_timeframe;
      symbolSelect.value = state.symbol;
      tfSelect.value = state.timeframe;
    }
    history.replaceState(null, '', state.alert ? `#/chart/${state.alert.id}` : '#/chart');
    reload();
  });
  symbolSelect.addEventListener('change', () => { state.symbol = symbolSelect.value; reload(); });
  tfSelect.addEventListener('change', () => { state.timeframe = tfSelect.value; reload(); });

  await reload();
  const timer = setInterval(refresh, REFRESH_MS);
  const unsubscribe = live.subscribe((e) => {
    if (e.type !== 'trigger' || e.symbol !== state.symbol) return;
    if (state.alert && e.alert_id !== state.alert.id) return;
    triggers.unshift({ id: e.trigger_id, alert_id: e.alert_id, symbol: e.symbol, bar_time: e.bar_time, fired_at: e.fired_at });
    placeMarkers();
  });
  return () => { clearInterval(timer); unsubscribe(); chart.remove(); };
}
