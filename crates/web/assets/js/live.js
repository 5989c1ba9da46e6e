// Live events: one EventSource on /v1/events for the signed-in user (the token goes in
// `?access_token=`, the one place the API takes it from the URL: EventSource cannot set
// headers). The browser reconnects by itself and sends Last-Event-ID, so the server replays
// what was recorded meanwhile. Pages subscribe to what they show; the Live page lists it.

import { session, get, ApiError } from './api.js';
import { h, clear, fmtTime, num, badge } from './dom.js';

const KINDS = ['trigger', 'notification', 'bot_order', 'deal_closed'];
const KEEP = 300;

class Live {
  constructor() {
    this.source = null;
    this.events = []; // newest first
    this.listeners = new Set();
    this.unseen = 0;
    this.connected = false;
  }

  start() {
    if (this.source || !session.token) return;
    const url = `/v1/events?access_token=${encodeURIComponent(session.token)}`;
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => this.status(true);
    source.onerror = () => {
      this.status(false);
      // The browser reconnects by itself after a dropped stream; after a refused one (an
      // expired token, a server restart mid-handshake) it gives up: check the token, retry.
      if (source.readyState === EventSource.CLOSED && this.source === source) {
        this.source = null;
        this.retry();
      }
    };
    for (const kind of KINDS) {
      source.addEventListener(kind, (m) => {
        let data;
        try { data = JSON.parse(m.data); } catch { return; }
        this.push(data);
      });
    }
  }

  retry() {
    setTimeout(() => {
      if (!session.token || this.source) return;
      get('/alerts?limit=1').then(() => this.start()).catch((e) => {
        // A refused token signs the user out (api.js); anything else: try again later.
        if (!(e instanceof ApiError && e.status === 401)) this.retry();
      });
    }, 3000);
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    this.events = [];
    this.unseen = 0;
    this.status(false);
    this.badge();
  }

  push(event) {
    this.events.unshift(event);
    if (this.events.length > KEEP) this.events.length = KEEP;
    if (document.body.dataset.page !== 'live' && (event.type === 'trigger' || event.type === 'notification')) {
      this.unseen += 1;
      this.badge();
    }
    for (const fn of this.listeners) {
      try { fn(event); } catch (e) { console.error(e); }
    }
  }

  /** fn(event) for every event from now on; returns the unsubscribe function. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  status(up) {
    this.connected = up;
    const el = document.getElementById('conn');
    if (!el) return;
    el.hidden = !this.source;
    el.textContent = up ? 'live' : 'reconnecting…';
    el.className = `conn ${up ? 'up' : 'down'}`;
    el.dataset.connected = String(up);
  }

  badge() {
    const el = document.getElementById('live-badge');
    if (!el) return;
    el.textContent = String(this.unseen);
    el.hidden = this.unseen === 0;
  }
}

export const live = new Live();

// ---- the Live page ------------------------------------------------------------------------

/** The snapshot of a trigger as a small table: the bar, each condition's values. */
export function snapshotView(snapshot) {
  if (!snapshot || typeof snapshot !== 'object') return h('span', { class: 'muted' }, '—');
  const parts = [];
  if (snapshot.message) parts.push(h('div', { class: 'message' }, snapshot.message));
  const bar = snapshot.bar || snapshot.candle;
  if (bar && typeof bar === 'object') {
    parts.push(h('div', { class: 'small muted' },
      ['open', 'high', 'low', 'close', 'volume'].filter((k) => k in bar).map((k) => `${k} ${num(bar[k])}`).join(' · ')));
  }
  // `conditions`: {id: {value, rhs, rhs2, held}} (the engine's), or a list with ids.
  const raw = snapshot.conditions;
  const conditions = Array.isArray(raw) ? raw
    : raw && typeof raw === 'object' ? Object.entries(raw).map(([id, c]) => ({ id, ...c })) : [];
  if (conditions.length) {
    parts.push(h('table', { class: 'mini' },
      h('thead', {}, h('tr', {}, h('th', {}, 'condition'), h('th', {}, 'value'), h('th', {}, 'compared with'), h('th', {}, 'held'))),
      h('tbody', {}, conditions.map((c) => h('tr', {},
        h('td', {}, c.id ?? '?'),
        h('td', {}, num(c.value)),
        h('td', {}, c.rhs2 !== undefined && c.rhs2 !== null ? `${num(c.rhs)} … ${num(c.rhs2)}` : num(c.rhs)),
        h('td', {}, c.held === undefined ? '—' : c.held ? '✓' : '✗'))))));
  }
  return h('div', { class: 'snapshot' }, parts);
}

function eventItem(e, names) {
  const time = e.fired_at || e.created_at || e.recorded_at;
  const name = names.get(e.alert_id) || e.alert_id;
  switch (e.type) {
    case 'trigger':
      return h('li', { class: 'event event-trigger', 'data-type': 'trigger', 'data-alert-id': e.alert_id, 'data-id': e.trigger_id },
        h('div', { class: 'event-head' }, badge('trigger'), h('strong', {}, name), h('span', { class: 'muted' }, ` ${e.symbol} · bar ${fmtTime(e.bar_time)}`),
          h('a', { href: `#/chart/${e.alert_id}`, class: 'small' }, 'chart'),
          h('span', { class: 'time' }, fmtTime(time))),
        snapshotView(e.snapshot));
    case 'notification':
      return h('li', { class: 'event event-notification', 'data-type': 'notification', 'data-alert-id': e.alert_id, 'data-id': e.notification_id },
        h('div', { class: 'event-head' }, badge('notification'), h('strong', {}, e.title || name), h('span', { class: 'time' }, fmtTime(time))),
        h('div', { class: 'message' }, e.body || ''));
    case 'bot_order':
      return h('li', { class: 'event event-bot', 'data-type': 'bot_order' },
        h('div', { class: 'event-head' }, badge('bot order', 'bot'), h('strong', {}, `${e.side} ${e.role}`),
          h('span', { class: 'muted' }, ` ${num(e.base_qty)} @ ${num(e.price)} (deal #${e.deal_number ?? '?'})`),
          e.realized_pnl !== null && e.realized_pnl !== undefined ? h('span', { class: e.realized_pnl >= 0 ? 'pos' : 'neg' }, ` P&L ${num(e.realized_pnl)}`) : null,
          h('span', { class: 'time' }, fmtTime(time))));
    case 'deal_closed':
      return h('li', { class: 'event event-bot', 'data-type': 'deal_closed' },
        h('div', { class: 'event-head' }, badge('deal closed', 'bot'), h('strong', {}, `deal #${e.deal_number ?? '?'} · ${e.exit}`),
          e.realized_pnl !== null && e.realized_pnl !== undefined ? h('span', { class: e.realized_pnl >= 0 ? 'pos' : 'neg' }, ` P&L ${num(e.realized_pnl)}`) : null,
          h('span', { class: 'time' }, fmtTime(time))));
    default:
      return h('li', { class: 'event' }, JSON.stringify(e));
  }
}

/** Which column an event goes in: alert triggers, or what followed (notifications, bots). */
const column = (e) => (e.type === 'trigger' ? 'triggers' : 'others');
/** An event's identity (the history rows and the stream's events carry the same ids). */
const key = (e) => `${e.type}:${{ trigger: e.trigger_id, notification: e.notification_id, bot_order: e.order_id, deal_closed: e.deal_id }[e.type] || JSON.stringify(e)}`;

export async function mount(container) {
  live.unseen = 0;
  live.badge();
  const lists = {
    triggers: h('ul', { class: 'events', id: 'live-events' }),
    others: h('ul', { class: 'events', id: 'live-others' }),
  };
  const count = h('span', { class: 'muted', id: 'live-count' });
  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Live'), count,
      h('span', { class: 'muted small' }, 'As they are recorded, newest first; a trigger shows its snapshot (message, bar, each condition\'s values).')),
    h('div', { class: 'live-columns' },
      h('div', { class: 'panel' }, h('h2', {}, 'Triggers'), lists.triggers),
      h('div', { class: 'panel' }, h('h2', {}, 'Notifications and bot orders'), lists.others)));

  // What happened before this page was opened: recent history, then live events.
  const names = new Map();
  const [alertPage, triggers, notifications] = await Promise.all([
    get('/alerts?limit=500'),
    get('/triggers?limit=50'),
    get('/notifications?limit=50'),
  ]);
  for (const a of alertPage.items) names.set(a.id, a.name);
  const seen = new Set();
  const history = {
    // The API lists both newest first.
    triggers: triggers.items.map((t) => ({ type: 'trigger', trigger_id: t.id, alert_id: t.alert_id, symbol: t.symbol, bar_time: t.bar_time, fired_at: t.fired_at, snapshot: t.snapshot })),
    others: notifications.map((n) => ({ type: 'notification', notification_id: n.id, alert_id: n.alert_id, title: n.title, body: n.body, created_at: n.created_at })),
  };
  const show = () => { count.textContent = `${lists.triggers.children.length} triggers, ${lists.others.children.length} other events`; };
  for (const col of ['triggers', 'others']) {
    // Events received since sign-in come first (newest first), then the history.
    const all = [...live.events.filter((e) => column(e) === col), ...history[col]].filter((e) => {
      const k = key(e);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    for (const e of all.slice(0, 100)) lists[col].appendChild(eventItem(e, names));
  }
  show();

  return live.subscribe((e) => {
    const k = key(e);
    if (seen.has(k)) return;
    seen.add(k);
    const list = lists[column(e)];
    const item = eventItem(e, names);
    item.classList.add('fresh');
    list.insertBefore(item, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
    live.unseen = 0;
    live.badge();
    show();
  });
}
