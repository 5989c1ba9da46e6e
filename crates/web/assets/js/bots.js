// The Bots page: every DCA bot with its open deal and P&L; a bot's deals and orders.

import { get, post } from './api.js';
import { h, clear, num, badge, fmtTime, toast, confirmButton } from './dom.js';
import { live } from './live.js';

const pnl = (v) => (v === null || v === undefined ? h('span', { class: 'muted' }, '—')
  : h('span', { class: v > 0 ? 'pos' : v < 0 ? 'neg' : '' }, `${v > 0 ? '+' : ''}${num(v)}`));

export async function mount(container) {
  const tbody = h('tbody', { id: 'bots-body' });
  const detail = h('div', { id: 'bot-detail' });
  const summary = h('span', { class: 'muted', id: 'bots-summary' });
  let open = null;
  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Bots'), summary,
      h('span', { class: 'muted small' }, 'DCA bots (paper fills): open deal and P&L at the last price. Create them with POST /v1/bots (README "DCA bots").')),
    h('div', { class: 'panel table-wrap' },
      h('table', { class: 'grid', id: 'bots-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Pair', 'TF', 'Status', 'Open deal', 'Last price', 'Unrealized', 'Deals closed', 'Realized', ''].map((t, i) => h('th', { class: i >= 5 && i <= 8 ? 'num' : '' }, t)))),
        tbody)),
    detail);

  /** Each bot with its open deal and P&L (GET /v1/bots/{id}), four requests at a time. */
  async function views() {
    const rows = await get('/bots');
    const out = [];
    for (let i = 0; i < rows.length; i += 4) {
      out.push(...await Promise.all(rows.slice(i, i + 4).map((b) => get(`/bots/${b.id}`)
        .catch(() => ({ bot: b, open_deal: null, deals_closed: 0, realized_pnl: 0, unrealized_pnl: null, last_price: null })))));
    }
    return out;
  }

  async function load() {
    const list = await views();
    clear(tbody);
    for (const v of list) {
      const b = v.bot;
      const d = v.open_deal;
      const filled = d && Array.isArray(d.filled) ? d.filled.filter(Boolean).length : 0;
      tbody.appendChild(h('tr', { 'data-bot-id': b.id, class: open === b.id ? 'selected' : '' },
        h('td', {}, h('a', { href: '#/bots', onclick: (e) => { e.preventDefault(); show(b); } }, b.name)),
        h('td', {}, b.pair), h('td', {}, b.timeframe), h('td', {}, badge(b.status)),
        h('td', { class: 'open-deal' }, d ? `#${d.number}: ${num(d.base_qty)} @ avg ${num(d.base_qty ? d.cost / d.base_qty : null)} (${filled} SO filled)` : h('span', { class: 'muted' }, 'none')),
        h('td', { class: 'num' }, num(v.last_price)),
        h('td', { class: 'num' }, pnl(v.unrealized_pnl)),
        h('td', { class: 'num' }, String(v.deals_closed)),
        h('td', { class: 'num realized' }, pnl(v.realized_pnl)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'ghost small', onclick: () => show(b) }, 'Orders'),
          h('button', {
            type: 'button', class: 'ghost small',
            onclick: async () => {
              try { await post(`/bots/${b.id}/${b.status === 'paused' ? 'resume' : 'pause'}`); await load(); } catch (e) { toast(e.message, 'error'); }
            },
          }, b.status === 'paused' ? 'Resume' : 'Pause'),
          d ? confirmButton('Close deal', 'Really close?', async () => {
            try { await post(`/bots/${b.id}/close`); toast('Deal closed at the last price'); await load(); } catch (e) { toast(e.message, 'error'); }
          }, { class: 'danger small' }) : null)));
    }
    if (!list.length) tbody.appendChild(h('tr', {}, h('td', { colspan: 10, class: 'muted empty' }, 'No bots yet.')));
    const total = list.reduce((s, v) => s + (v.realized_pnl || 0), 0);
    summary.textContent = `${list.length} bots · realized P&L ${num(total)}`;
    if (open) {
      const b = list.find((v) => v.bot.id === open);
      if (b) await show(b.bot, true);
    }
  }

  async function show(bot, quiet) {
    open = bot.id;
    const [deals, orders] = await Promise.all([get(`/bots/${bot.id}/deals`), get(`/bots/${bot.id}/orders`)]);
    clear(detail).appendChild(h('div', { class: 'panel', id: 'bot-orders', 'data-bot-id': bot.id },
      h('h2', {}, `${bot.name}: deals and orders`),
      h('table', { class: 'grid', id: 'deals-table' },
        h('thead', {}, h('tr', {}, ['Deal', 'Status', 'Opened', 'Closed', 'Entry', 'Qty', 'Cost', 'Fees', 'Exit', 'P&L'].map((t) => h('th', {}, t)))),
        h('tbody', {}, deals.map((d) => h('tr', {},
          h('td', {}, `#${d.number}`), h('td', {}, badge(d.status)), h('td', {}, fmtTime(d.opened_at)), h('td', {}, fmtTime(d.closed_at)),
          h('td', { class: 'num' }, num(d.entry_price)), h('td', { class: 'num' }, num(d.base_qty)), h('td', { class: 'num' }, num(d.cost)),
          h('td', { class: 'num' }, num(d.fees)), h('td', {}, d.exit || '—'), h('td', { class: 'num' }, pnl(d.realized_pnl)))))),
      h('h3', {}, 'Orders'),
      h('table', { class: 'grid', id: 'orders-table' },
        h('thead', {}, h('tr', {}, ['Time', 'Deal', 'Role', 'Side', 'Price', 'Qty', 'Notional', 'Fee', 'Avg price', 'P&L'].map((t) => h('th', {}, t)))),
        h('tbody', {}, orders.map((o) => h('tr', { class: 'order' },
          h('td', {}, fmtTime(o.created_at)), h('td', {}, o.deal_number ? `#${o.deal_number}` : '—'), h('td', {}, o.role), h('td', {}, badge(o.side)),
          h('td', { class: 'num' }, num(o.price)), h('td', { class: 'num' }, num(o.base_qty)), h('td', { class: 'num' }, num(o.notional)),
          h('td', { class: 'num' }, num(o.fee)), h('td', { class: 'num' }, num(o.average_price)), h('td', { class: 'num' }, pnl(o.realized_pnl))))))));
    for (const tr of tbody.querySelectorAll('tr')) tr.classList.toggle('selected', tr.dataset.botId === bot.id);
    if (!quiet) detail.scrollIntoView({ block: 'nearest' });
  }

  await load();
  let pending = null;
  const unsubscribe = live.subscribe((e) => {
    if (e.type !== 'bot_order' && e.type !== 'deal_closed') return;
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(() => {}), 300);
  });
  const timer = setInterval(() => load().catch(() => {}), 10000);
  return () => { unsubscribe(); clearInterval(timer); clearTimeout(pending); };
}
