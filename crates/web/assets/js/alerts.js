// The Alerts page: the caller's alerts (status, symbol, last fired, fire count) with pause,
// resume, delete and a dry run; the editor (form + JSON) for new and existing alerts.

import { get, post, api } from './api.js';
import { h, clear, ago, fmtTime, badge, toast, confirmButton } from './dom.js';
import { live } from './live.js';
import { Editor, evaluationView } from './form.js';

export async function mount(container, { arg }) {
  const editorSlot = h('div', { id: 'editor-slot' });
  const tbody = h('tbody', { id: 'alerts-body' });
  const summary = h('span', { class: 'muted', id: 'alerts-summary' });
  let alerts = [];
  let editor = null;

  const newButton = h('button', { type: 'button', class: 'primary', id: 'new-alert', onclick: () => openEditor(null) }, 'New alert');
  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Alerts'), summary, h('span', { class: 'spacer' }), newButton,
      h('button', { type: 'button', class: 'ghost', onclick: () => load() }, 'Refresh')),
    editorSlot,
    h('div', { class: 'panel table-wrap' },
      h('table', { class: 'grid', id: 'alerts-table' },
        h('thead', {}, h('tr', {},
          h('th', {}, 'Name'), h('th', {}, 'Symbol'), h('th', {}, 'TF'), h('th', {}, 'Status'),
          h('th', {}, 'Last fired'), h('th', { class: 'num' }, 'Fires'), h('th', {}, ''))),
        tbody)));

  function openEditor(alert) {
    if (editor) editor.destroy();
    clear(editorSlot);
    editor = new Editor({
      alert,
      symbols: [...new Set(alerts.map((a) => a.symbol))],
      onSaved: (row) => {
        toast(alert ? `Saved "${row.name}"` : `Created "${row.name}"`, 'ok');
        closeEditor();
        load();
      },
      onCancel: closeEditor,
    });
    editorSlot.appendChild(editor.el);
    editor.el.scrollIntoView({ block: 'start' });
  }

  function closeEditor() {
    if (editor) editor.destroy();
    editor = null;
    clear(editorSlot);
  }

  function row(a) {
    const tr = h('tr', {
      'data-alert-id': a.id, 'data-status': a.status, 'data-fire-count': a.fire_count,
      class: 'alert-row',
    });
    const dry = h('tr', { class: 'dry-run', hidden: true }, h('td', { colspan: 7 }));
    const act = (label, fn, cls = 'ghost') => h('button', { type: 'button', class: `${cls} small`, onclick: fn }, label);
    const setStatus = async (what) => {
      try {
        await post(`/alerts/${a.id}/${what}`);
        await load();
      } catch (e) { toast(e.message, 'error'); }
    };
    tr.append(
      h('td', {}, h('a', { href: `#/chart/${a.id}`, title: 'Chart' }, a.name)),
      h('td', {}, a.symbol),
      h('td', {}, a.base_timeframe),
      h('td', {}, badge(a.status)),
      h('td', { class: 'last-fired', title: fmtTime(a.last_fired_at) }, ago(a.last_fired_at)),
      h('td', { class: 'num fire-count' }, String(a.fire_count)),
      h('td', { class: 'actions' },
        act('Edit', () => openEditor(a)),
        act('Test', async () => {
          dry.hidden = !dry.hidden;
          if (dry.hidden) return;
          const cell = clear(dry.firstChild);
          cell.appendChild(h('span', { class: 'muted' }, 'Evaluating…'));
          try {
            const r = await post(`/alerts/${a.id}/evaluate`);
            clear(cell).appendChild(evaluationView(r));
          } catch (e) {
            clear(cell).appendChild(h('span', { class: 'error' }, e.message));
          }
        }),
        a.status === 'active'
          ? act('Pause', () => setStatus('pause'))
          : act('Resume', () => setStatus('resume')),
        confirmButton('Delete', 'Really delete?', async () => {
          try {
            await api('DELETE', `/alerts/${a.id}`);
            toast(`Deleted "${a.name}"`);
            await load();
          } catch (e) { toast(e.message, 'error'); }
        }, { class: 'danger small' })));
    return [tr, dry];
  }

  async function load() {
    // Every page of the caller's alerts (500 a page).
    const all = [];
    let cursor = '';
    for (let i = 0; i < 20; i++) {
      const page = await get(`/alerts?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      all.push(...page.items);
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    alerts = all;
    clear(tbody);
    for (const a of alerts) tbody.append(...row(a));
    if (!alerts.length) tbody.appendChild(h('tr', {}, h('td', { colspan: 7, class: 'muted empty' }, 'No alerts yet: create one with "New alert".')));
    const active = alerts.filter((a) => a.status === 'active').length;
    summary.textContent = `${alerts.length} alerts, ${active} active`;
  }

  await load();
  if (arg === 'new') openEditor(null);

  // A trigger: the row's count and last-fired time move at once.
  const unsubscribe = live.subscribe((e) => {
    if (e.type !== 'trigger') return;
    const tr = tbody.querySelector(`tr[data-alert-id="${CSS.escape(e.alert_id)}"]`);
    const a = alerts.find((x) => x.id === e.alert_id);
    if (!tr || !a) return;
    a.fire_count += 1;
    a.last_fired_at = e.fired_at;
    tr.dataset.fireCount = String(a.fire_count);
    tr.querySelector('.fire-count').textContent = String(a.fire_count);
    const last = tr.querySelector('.last-fired');
    last.textContent = ago(a.last_fired_at);
    last.title = fmtTime(a.last_fired_at);
    tr.classList.remove('flash');
    void tr.offsetWidth;
    tr.classList.add('flash');
  });
  // Relative times age; statuses change (a spent `once` alert): refresh now and then.
  const timer = setInterval(() => { if (!editor) load().catch(() => {}); }, 15000);
  return () => { unsubscribe(); clearInterval(timer); if (editor) editor.destroy(); };
}
