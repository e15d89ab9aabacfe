/* BleepStore web console (GitHub issue 16): the entry module (routing, login, buckets).
 *
 * NOTE: vanilla JS, no framework, no build step, no npm. The page stays as small as it can
 * be (html + js + css under 60 KB uncompressed), there is nothing to pin, audit or update,
 * it works offline, and it runs under the console's strict CSP (script-src 'self',
 * style-src 'self', nothing inline). Native ES modules keep each file small without a
 * bundler: core.js (DOM, errors, HTTP clients), md5.js, uploads.js, objects.js (a bucket's
 * folders and objects), server.js, users.js; index.html preloads them all.
 *
 * Invariants: the CSRF token lives only in module memory (core.js `state`; a reload gets it
 * back from /console/api/session); the secret key is never stored (the field is cleared
 * at every login attempt); every request to the console API and to the S3 API carries the
 * token; a 401/403 that means "no valid session" sends the user back to #/login.
 */
import {$, api, ask, btn, field, guard, h, heading, s3, s3url, say, state, table, text, when} from './core.js';
import {viewBucket} from './objects.js';
import {stopServer, viewServer} from './server.js';
import {busy} from './uploads.js';
import {viewUsers} from './users.js';

let wanted = '#/buckets';    // where to go after logging in
let expiryTimer = null;

function lost(msg) {
  if (!state.session) return;
  state.session = null;
  if (location.hash !== '#/login') wanted = location.hash || wanted;
  say(msg || 'Your session has ended: please log in again.', true, true);
  go('#/login');
}

// --- routing ---------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/login$/, viewLogin], [/^#\/buckets$/, viewBuckets], [/^#\/b\/([^/]+)\/?(.*)$/, viewBucket],
  [/^#\/server$/, viewServer], [/^#\/users$/, viewUsers],
];
function go(hash) {
  if (location.hash === hash) route(true); else location.hash = hash;
}
async function route(focus) {
  stopServer();
  const hash = location.hash || '#/buckets';
  if (!state.session && hash !== '#/login') { wanted = hash; return go('#/login'); }
  if (state.session && hash === '#/login') return go(wanted || '#/buckets');
  if (state.sticky) state.sticky = false; else say('');
  header(hash);
  const view = $('view');
  for (const [re, fn] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    view.replaceChildren();
    const work = guard(() => fn(view, ...m.slice(1)));
    const h1 = view.querySelector('h1');
    if (focus && h1) h1.focus();
    return work;
  }
  go('#/buckets');
}
function header(hash) {
  const on = !!state.session;
  $('nav').hidden = !on;
  $('logout').hidden = !on;
  $('nav-users').hidden = !(on && state.session.is_admin);
  $('whoami').textContent = on ? `${state.session.display_name || state.session.access_key}` +
    `${state.session.is_admin ? ' (admin)' : ''}` : '';
  for (const a of $('nav').querySelectorAll('a')) {
    const here = hash === a.getAttribute('href') || (a.id === 'nav-buckets' && hash.startsWith('#/b/'));
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}
function armExpiry() {
  clearTimeout(expiryTimer);
  const v = state.session && state.session.expires_at;
  if (v == null) return;
  const t = typeof v === 'number' ? (v < 1e12 ? v * 1000 : v) : Date.parse(v);
  const ms = t - Date.now();
  if (ms > 0 && ms < 30 * 86400e3) expiryTimer = setTimeout(() => lost('Your session expired: please log in again.'), ms);
}

// --- #/login -----------------------------------------------------------------------------------

function viewLogin(view) {
  const ak = h('input', {id: 'login-access-key', name: 'access_key', autocomplete: 'username',
    required: true, autocapitalize: 'off', spellcheck: 'false'});
  const sk = h('input', {id: 'login-secret', name: 'secret_key', type: 'password',
    autocomplete: 'current-password', required: true});
  const submit = h('button', {type: 'submit', id: 'login-submit'}, 'Log in');
  view.append(h('form', {id: 'login-form', class: 'card narrow', onsubmit: async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      const secret = sk.value;
      sk.value = '';
      state.session = await api('POST', 'login', {access_key: ak.value.trim(), secret_key: secret});
      armExpiry();
      say('');
      go(wanted && wanted !== '#/login' ? wanted : '#/buckets');
    } catch (err) {
      state.session = null;
      say(err.status === 401 ? err.message || 'Wrong access key or secret key.'
        : err.status === 429 ? 'Too many failed attempts: wait a minute, then try again.'
          : err.message, true);
      sk.focus();
    } finally { submit.disabled = false; }
  }}, heading('Log in'), field('Access key', ak), field('Secret key', sk), submit));
}

// --- #/buckets ---------------------------------------------------------------------------------

async function viewBuckets(view) {
  const name = h('input', {id: 'bucket-name', required: true, autocapitalize: 'off',
    spellcheck: 'false', 'aria-describedby': 'bucket-hint'});
  const tbody = h('tbody');
  async function load() {
    const {doc} = await s3('GET', '/');
    const buckets = doc.getElementsByTagNameNS('*', 'Bucket');
    tbody.replaceChildren(...Array.from(buckets, (b) => {
      const n = text(b, 'Name');
      return h('tr', {'data-bucket': n},
        h('th', {scope: 'row'}, h('a', {href: '#/b/' + encodeURIComponent(n) + '/'}, n)),
        h('td', {}, when(text(b, 'CreationDate'))),
        h('td', {}, btn('Delete', (e) => ask(view, `Delete the bucket “${n}”?`, 'Delete bucket',
          async () => {
            await s3('DELETE', s3url(n));
            say(`Bucket “${n}” deleted.`);
            await load();
          }, e.target), {class: 'danger small', 'aria-label': `Delete bucket ${n}`})));
    }));
    if (!buckets.length) tbody.append(h('tr', {}, h('td', {colspan: '3'}, 'No buckets yet.')));
  }
  view.append(heading('Buckets'),
    h('form', {id: 'create-bucket', class: 'card inline', onsubmit: (e) => {
      e.preventDefault();
      guard(async () => {
        const n = name.value.trim();
        await s3('PUT', s3url(n));
        name.value = '';
        say(`Bucket “${n}” created.`);
        await load();
      });
    }}, field('New bucket name', name, h('p', {id: 'bucket-hint', class: 'hint'},
      '3–63 characters: lowercase letters, digits, dots and hyphens.')),
    h('button', {type: 'submit', id: 'create-bucket-submit'}, 'Create bucket')),
    table('buckets', 'Your buckets', ['Name', 'Created', 'Actions'], tbody));
  await load();
}

state.onLost = lost;

// --- start ---------------------------------------------------------------------------------------

$('logout').addEventListener('click', async () => {
  try { await api('POST', 'logout'); } catch (e) {
    if (e.status !== 401 && e.status !== 403) { say(e.message, true); return; }
  }
  state.session = null;
  clearTimeout(expiryTimer);
  wanted = '#/buckets';
  say('You are logged out.', false, true);
  go('#/login');
});
// a file dropped outside the listing must not make the browser navigate away
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());
window.addEventListener('hashchange', () => route(true));
window.addEventListener('beforeunload', (e) => {
  if (busy()) e.preventDefault();
});

(async () => {
  try {
    state.session = await api('GET', 'session');
    armExpiry();
  } catch (e) {
    state.session = null;
    if (e.status !== 401 && e.status !== 403) say(`Could not reach the server: ${e.message}`, true, true);
  }
  route(false);
})();
