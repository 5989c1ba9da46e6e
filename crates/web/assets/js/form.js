// The alert editor: a form built from /v1/catalog beside a JSON editor, both editing one alert
// JSON (the API's own, DESIGN §3). Every change re-validates on the server
// (POST /v1/alerts/validate) and each error is shown next to the field its JSON path names
// (`conditions[0].settings.length` → the "length" input of the first condition). "Test now"
// dry-runs the unsaved alert (POST /v1/alerts/evaluate) and shows every operand's value.
// Keys the form does not know are kept as they are: the JSON is the source of truth.

import { get, post, api, getCatalog, ApiError } from './api.js';
import { h, clear, select, num, badge, fmtTime } from './dom.js';

const VALIDATE_AFTER_MS = 400;

function defaultAlert(symbol) {
  return {
    name: `${symbol} RSI(14) below 30`,
    symbol,
    base_timeframe: '1m',
    conditionLogic: 'AND',
    conditions: [{
      id: 'rsi', type: 'indicator', indicator: 'RSI', component: 'RSI', settings: { length: 14 },
      operator: '<', compareWith: 'value', compareValue: 30, timeframe: 'same',
    }],
    trigger: 'once_per_bar',
    message: '{{symbol}} RSI {{rsi.value}} at {{close}}',
    action: { type: 'notify' },
  };
}

/** The dry run's answer as a table of every condition's operands. */
export function evaluationView(r) {
  return h('div', { class: 'evaluation', 'data-holds': String(r.holds), 'data-warming-up': String(r.warming_up) },
    h('div', { class: 'eval-head' },
      r.holds ? badge('conditions hold now', 'holds') : badge('conditions do not hold now', 'not_held'),
      r.warming_up ? badge('warming up', 'warming') : null,
      h('span', { class: 'muted' }, ` ${r.symbol} ${r.base_timeframe} · as of ${fmtTime(r.as_of)}`),
      r.bar ? h('span', { class: 'muted' }, ` · bar close ${num(r.bar.close)}${r.bar.closed ? '' : ' (in progress)'}`) : null),
    r.reason ? h('p', { class: 'muted small' }, r.reason) : null,
    h('table', { class: 'mini eval-table' },
      h('thead', {}, h('tr', {}, ['condition', 'timeframe', 'value', 'compared with', 'upper', 'held', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, r.conditions.map((c) => h('tr', { 'data-condition': c.id },
        h('td', {}, c.id), h('td', {}, c.timeframe), h('td', { class: 'num value' }, num(c.value)),
        h('td', { class: 'num' }, num(c.rhs)), h('td', { class: 'num' }, num(c.rhs2)),
        h('td', {}, c.held ? '✓' : '✗'),
        h('td', { class: 'muted small' }, c.warming_up ? `warming up${c.reason ? `: ${c.reason}` : ''}` : (c.reason || '')))))),
    h('p', { class: 'muted small' }, 'A dry run on the data the server has now: nothing fires, nothing is recorded; debounce and trigger mode are not applied.'));
}

/** The alert as sent and shown: without the empty `settings` objects the form keeps ready. */
function cleaned(def) {
  return JSON.parse(JSON.stringify(def, (k, v) => (k === 'settings' && v && typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length ? undefined : v)));
}

/** Splits `conditions[0].rhs.settings.length` into the path one level up, or null. */
function parentPath(path) {
  const m = path.match(/^(.*)(\.[^.[\]]+|\[\d+\])$/);
  return m ? m[1] : null;
}

export class Editor {
  constructor({ alert, symbols, onSaved, onCancel }) {
    this.row = alert;
    this.symbols = symbols.length ? symbols : ['SIMBTC', 'SIMETH', 'SIMSOL'];
    this.def = alert ? structuredClone(alert.definition) : defaultAlert(this.symbols[0]);
    this.onSaved = onSaved;
    this.onCancel = onCancel;
    this.timer = null;
    this.seq = 0;

    this.form = h('form', { class: 'alert-form', id: 'alert-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); } });
    this.json = h('textarea', { id: 'alert-json', class: 'json-editor', spellcheck: 'false', rows: 30, 'aria-label': 'Alert JSON' });
    this.jsonError = h('div', { class: 'error small', id: 'json-error', hidden: true });
    this.general = h('ul', { class: 'form-errors', id: 'form-errors' });
    this.state = h('span', { class: 'validity', id: 'validity' });
    this.result = h('div', { id: 'eval-result' });
    this.templates = h('select', { id: 'template', class: 'small', 'aria-label': 'Start from a template' }, h('option', { value: '' }, 'Start from a template…'));
    this.json.addEventListener('input', () => this.fromJson());

    this.el = h('div', { class: 'panel editor', id: 'editor' },
      h('div', { class: 'editor-head' },
        h('h2', {}, alert ? `Edit "${alert.name}"` : 'New alert'),
        alert ? null : this.templates,
        h('span', { class: 'spacer' }), this.state),
      h('div', { class: 'editor-body' },
        h('div', { class: 'form-side' }, this.form),
        h('div', { class: 'json-side' },
          h('label', { for: 'alert-json' }, 'JSON (edit either side: they stay in step)'),
          this.json, this.jsonError)),
      this.general,
      h('div', { class: 'editor-actions' },
        h('button', { type: 'button', class: 'primary', id: 'save-alert', onclick: () => this.save() }, alert ? 'Save' : 'Create alert'),
        h('button', { type: 'button', id: 'test-now', onclick: () => this.testNow() }, 'Test now'),
        h('button', { type: 'button', class: 'ghost', id: 'validate-alert', onclick: () => this.validate() }, 'Validate'),
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'ghost', id: 'cancel-edit', onclick: () => this.onCancel() }, 'Cancel')),
      this.result);
    this.form.appendChild(h('p', { class: 'muted' }, 'Loading the catalog…'));
    this.init();
  }

  async init() {
    try {
      this.catalog = await getCatalog();
    } catch (e) {
      clear(this.form).appendChild(h('p', { class: 'error' }, `Could not load /v1/catalog: ${e.message}`));
      return;
    }
    // The caller's bots, offered for a bot action's `bot_id`.
    this.bots = await get('/bots').catch(() => []);
    this.renderForm();
    this.syncJson(true);
    this.validate();
    if (!this.row) {
      get('/templates').then((list) => {
        this.templateList = list;
        for (const t of list) this.templates.appendChild(h('option', { value: t.id }, t.name));
      }).catch(() => { this.templates.hidden = true; });
      this.templates.addEventListener('change', () => this.useTemplate(this.templates.value));
    }
  }

  destroy() { clearTimeout(this.timer); this.seq += 1; }

  useTemplate(id) {
    const t = (this.templateList || []).find((x) => x.id === id);
    if (!t) return;
    const text = JSON.stringify(t.alert)
      .replaceAll('{{SYMBOL}}', this.def.symbol || this.symbols[0])
      .replaceAll('{{TIMEFRAME}}', this.def.base_timeframe || '1m');
    this.def = JSON.parse(text);
    this.changed(true);
  }

  // ---- the model -------------------------------------------------------------------------

  /** After any change: the form (re-drawn if its shape changed), the JSON, a validation. */
  changed(rerender) {
    if (rerender) this.renderForm();
    this.syncJson(false);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.validate(), VALIDATE_AFTER_MS);
  }

  syncJson(force) {
    if (force || document.activeElement !== this.json) this.json.value = JSON.stringify(cleaned(this.def), null, 2);
  }

  fromJson() {
    let value;
    try {
      value = JSON.parse(this.json.value);
    } catch (e) {
      this.jsonError.textContent = `Not valid JSON yet: ${e.message}`;
      this.jsonError.hidden = false;
      return;
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      this.jsonError.textContent = 'The alert is a JSON object.';
      this.jsonError.hidden = false;
      return;
    }
    this.jsonError.hidden = true;
    this.def = value;
    this.changed(true);
  }

  // ---- validation, dry run, save ---------------------------------------------------------

  async validate() {
    const seq = ++this.seq;
    this.state.textContent = 'checking…';
    this.state.className = 'validity';
    try {
      const r = await post('/alerts/validate', cleaned(this.def));
      if (seq !== this.seq) return;
      this.showErrors([], r.warnings || []);
      this.state.textContent = r.warnings && r.warnings.length ? `valid, ${r.warnings.length} warning(s)` : 'valid';
      this.state.className = 'validity ok';
      return true;
    } catch (e) {
      if (seq !== this.seq) return;
      this.fail(e);
      return false;
    }
  }

  fail(e) {
    if (e instanceof ApiError && e.errors.length) {
      this.showErrors(e.errors, []);
      this.state.textContent = `${e.errors.length} error${e.errors.length > 1 ? 's' : ''}`;
    } else {
      this.showErrors([{ path: '', message: e.message }], []);
      this.state.textContent = 'error';
    }
    this.state.className = 'validity bad';
  }

  async testNow() {
    clear(this.result).appendChild(h('p', { class: 'muted' }, 'Evaluating on the current data…'));
    try {
      const r = await post('/alerts/evaluate', cleaned(this.def));
      clear(this.result).appendChild(evaluationView(r));
      this.result.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      clear(this.result);
      this.fail(e);
    }
  }

  async save() {
    try {
      const row = this.row
        ? await api('PUT', `/alerts/${this.row.id}`, cleaned(this.def))
        : await post('/alerts', cleaned(this.def));
      this.onSaved(row);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Each error next to the field its path names (or the nearest enclosing one). */
  showErrors(errors, warnings) {
    for (const el of this.el.querySelectorAll('.field-error')) el.remove();
    for (const el of this.el.querySelectorAll('[aria-invalid]')) { el.removeAttribute('aria-invalid'); el.classList.remove('invalid'); }
    clear(this.general);
    const place = (e, kind) => {
      let path = e.path || '';
      let target = null;
      while (path) {
        target = this.form.querySelector(`[data-path="${CSS.escape(path)}"]`);
        if (target) break;
        path = parentPath(path);
      }
      const note = h('div', { class: `field-error ${kind}`, 'data-error-for': e.path || '', role: 'alert' },
        path === e.path ? e.message : `${e.path}: ${e.message}`);
      if (!target) {
        this.general.appendChild(h('li', { class: kind, 'data-error-for': e.path || '' }, e.path ? `${e.path}: ${e.message}` : e.message));
        return;
      }
      if (kind === 'error') { target.setAttribute('aria-invalid', 'true'); target.classList.add('invalid'); }
      if (target.matches('input, select, textarea')) target.insertAdjacentElement('afterend', note);
      else target.insertBefore(note, target.firstChild);
    };
    for (const e of errors) place(e, 'error');
    for (const w of warnings) place(w, 'warning');
  }

  // ---- the form ----------------------------------------------------------------------------

  field(label, path, input, hint) {
    input.dataset.path = path;
    if (!input.id) input.id = `f-${path.replace(/[^a-zA-Z0-9]+/g, '-')}`;
    return h('div', { class: 'field', 'data-field': path },
      h('label', { for: input.id }, label), input, hint ? h('div', { class: 'hint' }, hint) : null);
  }

  text(obj, key, path, label, hint, rerender = false) {
    const input = h('input', { type: 'text', value: obj[key] ?? '' });
    input.addEventListener('input', () => {
      if (input.value === '') delete obj[key]; else obj[key] = input.value;
      this.changed(rerender);
    });
    return this.field(label, path, input, hint);
  }

  number(obj, key, path, label, hint, attrs = {}) {
    const input = h('input', { type: 'number', step: 'any', value: obj[key] ?? '', ...attrs });
    input.addEventListener('input', () => {
      const v = input.value.trim();
      if (v === '') delete obj[key];
      else obj[key] = Number(v);
      this.changed(false);
    });
    return this.field(label, path, input, hint);
  }

  choice(obj, key, path, label, options, { hint, rerender = true, blank, onchange } = {}) {
    const list = blank ? [{ value: '', label: blank }, ...options] : [...options];
    const current = obj[key] ?? '';
    // A value the catalog does not list (an alias, a typo from the JSON) stays selectable.
    if (current !== '' && !list.some((o) => String(typeof o === 'string' ? o : o.value) === String(current))) {
      list.push({ value: current, label: `${current} (as written)` });
    }
    const input = select({}, list, current);
    input.addEventListener('change', () => {
      if (input.value === '') delete obj[key]; else obj[key] = input.value;
      if (onchange) onchange(input.value);
      this.changed(rerender);
    });
    return this.field(label, path, input, hint);
  }

  timeframes(withSame) {
    const tfs = this.catalog.timeframes.filter((t) => t.available).map((t) => t.name);
    return withSame ? ['same', ...tfs] : tfs;
  }

  indicatorInfo(name) {
    if (!name) return null;
    const n = String(name).toLowerCase();
    return this.catalog.indicators.find((i) => i.name.toLowerCase() === n || i.aliases.some((a) => a.toLowerCase() === n)) || null;
  }

  operatorInfo(name) {
    const n = String(name || '');
    return this.catalog.operators.find((o) => o.name === n || o.aliases.includes(n)) || null;
  }

  /** The inputs of an indicator's settings (or an operator's) at `base.settings`. */
  settingsFields(owner, settings, path, infos) {
    if (!infos.length) return [];
    owner.settings = owner.settings && typeof owner.settings === 'object' ? owner.settings : {};
    const s = owner.settings;
    return infos.map((info) => {
      // The key as written (an alias such as `period`), else the catalog's.
      const key = [info.key, ...(info.aliases || [])].find((k) => k in s) || info.key;
      const p = `${path}.settings.${key}`;
      const hint = `${info.description}; default ${info.default}`;
      if (info.kind === 'integer' || info.kind === 'number') {
        return this.number(s, key, p, info.key, hint, {
          placeholder: String(info.default),
          step: info.kind === 'integer' ? '1' : 'any',
        });
      }
      return this.choice(s, key, p, info.key, info.options || [], { hint, blank: `default (${info.default})`, rerender: false });
    });
  }

  /** Indicator, component and settings of an operand (`cond` itself or its `rhs`). */
  indicatorFields(obj, path, label) {
    const info = this.indicatorInfo(obj.indicator);
    const out = [this.choice(obj, 'indicator', `${path}.indicator`, label,
      this.catalog.indicators.map((i) => ({ value: i.name, label: i.name })), {
        hint: info ? info.usage : undefined,
        onchange: (v) => {
          const next = this.indicatorInfo(v);
          obj.settings = {};
          if (next) {
            for (const s of next.settings) if (s.kind === 'integer' || s.kind === 'number') obj.settings[s.key] = s.default;
            obj.component = next.components[0];
          }
          if (next && next.components.length <= 1) delete obj.component;
          if (!Object.keys(obj.settings).length) delete obj.settings;
        },
      })];
    if (info && info.components.length > 1) {
      out.push(this.choice(obj, 'component', `${path}.component`, 'component', info.components, { blank: 'choose…', rerender: false }));
    }
    if (info) out.push(...this.settingsFields(obj, obj.settings, path, info.settings));
    return out;
  }

  renderForm() {
    const c = this.catalog;
    const d = this.def;
    const form = clear(this.form);
    const names = (list) => list.map((x) => ({ value: x.name, label: x.name }));

    form.appendChild(h('fieldset', { class: 'grid-2' }, h('legend', {}, 'Alert'),
      this.text(d, 'name', 'name', 'name'),
      this.text(d, 'symbol', 'symbol', 'symbol', 'e.g. SIMBTC on the embedded market'),
      this.choice(d, 'base_timeframe', 'base_timeframe', 'base timeframe', this.timeframes(false)),
      this.choice(d, 'conditionLogic', 'conditionLogic', 'conditions are joined with', c.logic, { blank: 'AND (default)', rerender: false })));
    const datalist = h('datalist', { id: 'symbols' }, this.symbols.map((s) => h('option', { value: s })));
    form.appendChild(datalist);
    const symbolInput = form.querySelector('[data-path="symbol"]');
    if (symbolInput) symbolInput.setAttribute('list', 'symbols');

    const conditions = Array.isArray(d.conditions) ? d.conditions : (d.conditions = []);
    const list = h('div', { class: 'conditions', 'data-path': 'conditions' });
    conditions.forEach((cond, i) => list.appendChild(this.conditionCard(cond, i, conditions)));
    form.appendChild(h('fieldset', {}, h('legend', {}, 'Conditions'), list,
      h('button', {
        type: 'button', class: 'ghost small', id: 'add-condition',
        onclick: () => {
          conditions.push({ id: `c${conditions.length + 1}`, type: 'price', operator: '>', compareWith: 'value', compareValue: 0, timeframe: 'same' });
          this.changed(true);
        },
      }, '+ Add condition')));

    const trigger = h('fieldset', { class: 'grid-2' }, h('legend', {}, 'When it fires'),
      this.choice(d, 'trigger', 'trigger', 'trigger mode', names(c.trigger_modes), {
        blank: 'once_per_bar (default)', rerender: false,
        hint: (c.trigger_modes.find((t) => t.name === d.trigger) || {}).description,
      }),
      this.number(d, 'debounce_bars', 'debounce_bars', 'debounce bars', `${c.limits.debounce_bars[0]}–${c.limits.debounce_bars[1]}`),
      this.text(d, 'message', 'message', 'message', 'placeholders: {{symbol}} {{close}} {{<condition id>.value}} …'));
    form.appendChild(trigger);
    form.appendChild(this.actionFields());
  }

  conditionCard(cond, i, conditions) {
    const path = `conditions[${i}]`;
    const c = this.catalog;
    const remove = h('button', {
      type: 'button', class: 'ghost small danger', title: 'Remove this condition',
      onclick: () => { conditions.splice(i, 1); this.changed(true); },
    }, 'Remove');
    if (!cond || typeof cond !== 'object' || Array.isArray(cond.conditions)) {
      const n = cond && Array.isArray(cond.conditions) ? cond.conditions.length : 0;
      return h('div', { class: 'condition group', 'data-path': path },
        h('div', { class: 'condition-head' }, h('strong', {}, `Group (${(cond && (cond.logic || cond.conditionLogic)) || 'AND'}) of ${n} conditions`), h('span', { class: 'spacer' }), remove),
        h('p', { class: 'muted small' }, 'Nested groups are edited in the JSON editor.'));
    }
    const op = this.operatorInfo(cond.operator);
    const needs = op ? op.needs : 'comparand';
    const card = h('div', { class: 'condition', 'data-path': path, 'data-index': i });
    card.appendChild(h('div', { class: 'condition-head' }, h('strong', {}, `Condition ${i + 1}`), h('span', { class: 'spacer' }), remove));
    const grid = h('div', { class: 'grid-3' });
    card.appendChild(grid);
    grid.append(
      this.text(cond, 'id', `${path}.id`, 'id', 'names it in messages and results', false),
      this.choice(cond, 'type', `${path}.type`, 'type', c.condition_types.map((t) => t.name), {
        onchange: (v) => {
          if (v !== 'indicator') { delete cond.indicator; delete cond.component; delete cond.settings; }
          if (v === 'indicator' && !cond.indicator) { cond.indicator = 'RSI'; cond.settings = { length: 14 }; }
          if (v !== 'price') delete cond.source;
        },
      }),
      this.choice(cond, 'timeframe', `${path}.timeframe`, 'timeframe', this.timeframes(true), { blank: 'same (default)', rerender: false }));
    if ((cond.type || 'indicator') === 'indicator') {
      grid.append(...this.indicatorFields(cond, path, 'indicator'));
    } else if (cond.type === 'price') {
      grid.append(this.choice(cond, 'source', `${path}.source`, 'price', c.price_sources, { blank: 'close (default)', rerender: false }));
    }
    grid.append(this.choice(cond, 'operator', `${path}.operator`, 'operator',
      c.operators.map((o) => ({ value: o.name, label: o.name })), {
        hint: op ? op.description : undefined,
        onchange: (v) => {
          const next = this.operatorInfo(v);
          if (!next) return;
          if (next.needs === 'percent') { cond.compareWith = 'value'; if (typeof cond.compareValue !== 'number') cond.compareValue = 1; }
          if (next.needs === 'operand' && (cond.compareWith || 'value') === 'value') { cond.compareWith = 'price'; delete cond.compareValue; }
        },
      }));

    if (needs !== 'percent') {
      const friendly = { value: 'a value', indicator_component: 'another indicator', price: 'the price', volume: 'the volume' };
      const compareOptions = c.compare_with.map((x) => x.name).filter((n) => needs !== 'operand' || n !== 'value')
        .map((n) => ({ value: n, label: friendly[n] || n }));
      grid.appendChild(this.choice(cond, 'compareWith', `${path}.compareWith`, 'compare with', compareOptions, {
        blank: 'a value (default)',
        hint: (c.compare_with.find((x) => x.name === (cond.compareWith || 'value')) || {}).description,
        onchange: (v) => {
          if (v === 'indicator_component' && !cond.rhs) cond.rhs = { indicator: 'EMA', settings: { length: 20 } };
          if (v !== 'indicator_component') delete cond.rhs;
          if (v !== 'value' && v !== '') { delete cond.compareValue; delete cond.lowerBound; delete cond.upperBound; }
        },
      }));
    }
    const cw = cond.compareWith || 'value';
    if (needs === 'percent') {
      grid.appendChild(this.number(cond, 'compareValue', `${path}.compareValue`, 'percent', 'a change of this many percent'));
    } else if (cw === 'value' && needs === 'channel') {
      grid.append(this.number(cond, 'lowerBound', `${path}.lowerBound`, 'lower bound'),
        this.number(cond, 'upperBound', `${path}.upperBound`, 'upper bound'));
    } else if (cw === 'value') {
      grid.appendChild(this.number(cond, 'compareValue', `${path}.compareValue`, 'value'));
    } else if (cw === 'indicator_component') {
      cond.rhs = cond.rhs && typeof cond.rhs === 'object' ? cond.rhs : {};
      const rhs = h('div', { class: 'rhs grid-3', 'data-path': `${path}.rhs` },
        h('div', { class: 'rhs-title' }, 'compared with this indicator'),
        ...this.indicatorFields(cond.rhs, `${path}.rhs`, 'indicator'),
        this.choice(cond.rhs, 'timeframe', `${path}.rhs.timeframe`, 'its timeframe', this.timeframes(true), { blank: 'the condition\'s', rerender: false }));
      card.appendChild(rhs);
    }
    if (op && op.settings.length) {
      card.appendChild(h('div', { class: 'grid-3 op-settings' }, ...this.settingsFields(cond, cond.settings, path, op.settings)));
    }
    return card;
  }

  actionFields() {
    const c = this.catalog;
    const d = this.def;
    const box = h('fieldset', { class: 'grid-2' }, h('legend', {}, 'Action'));
    if (Array.isArray(d.actions)) {
      box.append(h('div', { 'data-path': 'actions' }, h('p', { class: 'muted small' }, `${d.actions.length} actions: edit them in the JSON editor.`)));
      return box;
    }
    d.action = d.action && typeof d.action === 'object' ? d.action : { type: 'notify' };
    const a = d.action;
    const info = c.action_types.find((x) => x.type === a.type);
    box.appendChild(this.choice(a, 'type', 'action.type', 'type', c.action_types.map((x) => x.type), {
      hint: info ? info.description : undefined,
      onchange: (v) => {
        for (const k of Object.keys(a)) if (k !== 'type') delete a[k];
        if (v === 'bot_trigger') a.action_type = c.bot_action_types[0];
      },
    }));
    for (const f of info ? info.fields : []) {
      if (f.name === 'type') continue;
      const hint = `${f.required ? 'required' : 'optional'}: ${f.description}`;
      if (f.name === 'action_type') box.appendChild(this.choice(a, f.name, `action.${f.name}`, f.name, c.bot_action_types, { hint, rerender: false }));
      else if (f.name === 'dca_index') box.appendChild(this.number(a, f.name, `action.${f.name}`, f.name, hint, { step: '1' }));
      else box.appendChild(this.text(a, f.name, `action.${f.name}`, f.name, hint));
    }
    const botInput = box.querySelector('[data-path="action.bot_id"]');
    if (botInput && this.bots && this.bots.length) {
      botInput.setAttribute('list', 'bot-ids');
      box.appendChild(h('datalist', { id: 'bot-ids' }, this.bots.map((b) => h('option', { value: b.id }, `${b.name} (${b.pair})`))));
    }
    return box;
  }
}
