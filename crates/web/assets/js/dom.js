// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so nothing a user or
// the server wrote can become markup.

/** h('div', {class: 'x', 'data-id': 1, onclick: fn}, 'text', child, [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** A <select> of options [{value, label}] or strings. */
export function select(attrs, options, current) {
  const el = h('select', attrs);
  for (const o of options) {
    const value = typeof o === 'string' ? o : o.value;
    const label = typeof o === 'string' ? o : o.label;
    el.appendChild(h('option', { value, selected: String(value) === String(current ?? '') }, label));
  }
  return el;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function ago(iso) {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return fmtTime(iso);
}

export function num(v, digits = 4) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const d = abs >= 1000 ? 2 : abs >= 1 ? Math.min(digits, 4) : 6;
  return v.toLocaleString('en-US', { maximumFractionDigits: d });
}

export function badge(text, kind = text) {
  return h('span', { class: `pill pill-${String(kind).replace(/[^a-z_]/gi, '')}` }, text);
}

let toastTimer;
/** A short message at the top of the page. */
export function toast(text, kind = 'info') {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = text;
  el.className = `toast toast-${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

/** A button that asks once more before acting ("Delete" → "Really delete?"). */
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = false;
  let timer;
  const btn = h('button', { type: 'button', ...attrs }, label);
  btn.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      btn.textContent = confirmLabel;
      btn.classList.add('armed');
      timer = setTimeout(() => { armed = false; btn.textContent = label; btn.classList.remove('armed'); }, 4000);
      return;
    }
    clearTimeout(timer);
    btn.disabled = true;
    try { await action(); } finally { btn.disabled = false; }
  });
  return btn;
}
