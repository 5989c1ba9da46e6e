// The dashboard's entry point: sign-in, the navigation between pages, the live event stream.

import { session, demoToken, get, ApiError } from './api.js';
import { h, clear, toast } from './dom.js';
import { live } from './live.js';
import * as alerts from './alerts.js';
import * as livePage from './live.js';
import * as chart from './chart.js';
import * as bots from './bots.js';
import * as deliveries from './deliveries.js';

const pages = { alerts, live: livePage, chart, bots, deliveries };
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOutButton = document.getElementById('sign-out');
let unmount = null;
let generation = 0;
let verifying = false; // a token being tried on the sign-in page: its 401 is shown there

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, ...rest] = hash.split('/');
  return { name: pages[name] ? name : 'alerts', arg: rest.join('/') };
}

async function render() {
  const mine = ++generation;
  if (typeof unmount === 'function') unmount();
  unmount = null;
  clear(main);
  if (!session.token) {
    nav.hidden = true;
    signOutButton.hidden = true;
    live.stop();
    renderSignIn();
    return;
  }
  nav.hidden = false;
  signOutButton.hidden = false;
  live.start();
  const { name, arg } = route();
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.route === name);
  document.body.dataset.page = name;
  const container = h('section', { class: `page page-${name}`, id: `page-${name}` });
  main.appendChild(container);
  try {
    const done = await pages[name].mount(container, { arg });
    // Another page was asked for meanwhile: this one is already gone.
    if (mine !== generation) { if (typeof done === 'function') done(); return; }
    unmount = done;
  } catch (e) {
    container.appendChild(h('p', { class: 'error' }, `Could not load this page: ${e.message}`));
  }
}

function renderSignIn() {
  document.body.dataset.page = 'sign-in';
  const tokenInput = h('textarea', {
    id: 'token-input', rows: 4, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'eyJhbGciOiJIUzI1NiIs… (a Supabase access token, or `alert-runner token`)',
  });
  const message = h('p', { class: 'error', id: 'sign-in-error', hidden: true });
  const fail = (text) => { message.textContent = text; message.hidden = false; };

  async function signIn(token) {
    session.set(token);
    verifying = true;
    try {
      await get('/alerts?limit=1');
    } catch (e) {
      session.clear();
      fail(e instanceof ApiError && e.status === 401
        ? `This token was refused: ${e.message}`
        : `Could not reach the API: ${e.message}`);
      return;
    } finally {
      verifying = false;
    }
    if (location.hash === '#/alerts') render();
    else location.hash = '#/alerts';
  }

  const demoButton = h('button', {
    type: 'button', id: 'demo-sign-in', class: 'primary',
    onclick: async () => {
      demoButton.disabled = true;
      try {
        const token = await demoToken();
        if (!token) fail('This server offers no demo token: it is not running the embedded default. Paste a token instead.');
        else await signIn(token);
      } catch (e) {
        fail(`Could not get a demo token: ${e.message}`);
      } finally {
        demoButton.disabled = false;
      }
    },
  }, 'Use the demo token');

  main.appendChild(h('section', { class: 'sign-in panel', id: 'sign-in' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' },
      'Paste an API token (a Supabase JWT for this server\'s project), or, on the embedded default ',
      h('code', {}, 'alert-runner serve'), ', use the demo user\'s token.'),
    h('div', { class: 'row' }, demoButton),
    h('label', { for: 'token-input' }, 'Token'),
    tokenInput,
    h('div', { class: 'row' },
      h('button', {
        type: 'button', id: 'token-sign-in',
        onclick: () => {
          const t = tokenInput.value.trim();
          if (!t) fail('Paste a token first.');
          else signIn(t);
        },
      }, 'Sign in with this token')),
    message,
    h('p', { class: 'muted small' },
      'The token stays in this tab (sessionStorage) and is sent only to this server.')));
}

signOutButton.addEventListener('click', () => {
  session.clear();
  history.replaceState(null, '', location.pathname);
  render();
});

window.addEventListener('unauthorized', () => {
  if (!session.token || verifying) return;
  session.clear();
  toast('Your token was refused (expired?): sign in again.', 'error');
  render();
});

window.addEventListener('hashchange', render);
render();
