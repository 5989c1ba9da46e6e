// The Deliveries page: each webhook (and bot) delivery with every attempt, and "redeliver" for
// finished ones (same webhook-id, so receivers can deduplicate).

import { get, post } from './api.js';
import { h, clear, fmtTime, badge, toast } from './dom.js';

const FINISHED = new Set(['delivered', 'failed', 'cancelled']);

export async function mount(container) {
  const list = h('div', { id: 'deliveries' });
  const summary = h('span', { class: 'muted', id: 'deliveries-summary' });
  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Deliveries'), summary, h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'ghost', onclick: () => load() }, 'Refresh')),
    list);
  const expanded = new Set();

  async function load() {
    const [rows, alerts] = await Promise.all([get('/deliveries?limit=100'), get('/alerts?limit=500')]);
    const names = new Map(alerts.items.map((a) => [a.id, a.name]));
    clear(list);
    if (!rows.length) {
      list.appendChild(h('div', { class: 'panel muted empty' }, 'No deliveries yet: alerts with a webhook (or bot) action get one per trigger.'));
    }
    const counts = {};
    for (const d of rows) {
      counts[d.status] = (counts[d.status] || 0) + 1;
      const details = h('details', { class: 'delivery panel', 'data-delivery-id': d.id, 'data-status': d.status, 'data-kind': d.kind, 'data-alert-id': d.alert_id, open: expanded.has(d.id) },
        h('summary', {},
          badge(d.status), ' ', h('strong', {}, names.get(d.alert_id) || d.alert_id), ' ',
          h('span', { class: 'muted' }, `${d.kind} → ${d.url}`),
          h('span', { class: 'spacer' }),
          h('span', { class: 'muted small' }, `${d.attempts} attempt${d.attempts === 1 ? '' : 's'} · created ${fmtTime(d.created_at)}`),
          FINISHED.has(d.status)
            ? h('button', {
              type: 'button', class: 'small redeliver',
              onclick: async (e) => {
                e.preventDefault();
                try { await post(`/deliveries/${d.id}/redeliver`); toast('Queued again (same webhook-id)', 'ok'); await load(); } catch (err) { toast(err.message, 'error'); }
              },
            }, 'Redeliver')
            : h('span', { class: 'muted small' }, ` next attempt ${fmtTime(d.next_attempt_at)}`)),
        h('div', { class: 'small' },
          d.delivered_at ? `Delivered ${fmtTime(d.delivered_at)}. ` : '',
          d.last_error ? h('span', { class: 'error' }, `Last error: ${d.last_error}`) : '',
          d.last_status_code ? ` Last status ${d.last_status_code}.` : ''),
        h('table', { class: 'mini attempts' },
          h('thead', {}, h('tr', {}, ['#', 'at', 'status', 'duration', 'error', 'response'].map((t) => h('th', {}, t)))),
          h('tbody', {}, (d.attempt_log || []).map((a) => h('tr', { class: 'attempt' },
            h('td', {}, String(a.attempt)), h('td', {}, fmtTime(a.attempted_at)), h('td', {}, a.status_code ?? '—'),
            h('td', {}, `${a.duration_ms} ms`), h('td', { class: 'error' }, a.error || ''),
            h('td', {}, h('code', { class: 'small' }, (a.response_body || '').slice(0, 200))))))));
      details.addEventListener('toggle', () => { if (details.open) expanded.add(d.id); else expanded.delete(d.id); });
      list.appendChild(details);
    }
    summary.textContent = `${rows.length} deliveries${Object.keys(counts).length ? ` · ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ')}` : ''}`;
  }

  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
