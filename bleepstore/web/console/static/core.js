/* The console's shared core: DOM building, messages, errors, and the two HTTP clients
 * (the console's JSON API and the S3 API of the same origin).
 *
 * Invariants: nodes are built with DOM calls and textContent, never innerHTML, so user data
 * (bucket names, keys, metadata) never becomes markup; the CSRF token lives only in
 * `state.session` (module memory), and every request sends it; a network failure is a
 * Failure with status 0, like an XHR's, so callers handle one kind of error.
 */
export const SVG = 'http://www.w3.org/2000/svg';
export const S3NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
/** session: {access_key, display_name, is_admin, csrf_token, expires_at} or null;
 * sticky: the status message survives the next route change; onLost: back to #/login. */
export const state = {session: null, sticky: false, onLost: () => {}};
export const $ = (id) => document.getElementById(id);

// --- DOM helpers ---------------------------------------------------------------------

/** h('button', {class: 'x', onclick: fn, text: 'Go'}, ...children): one element. */
export function h(tag, attrs, ...kids) {
  const el = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) if (c != null && c !== false) el.append(c);
  return el;
}
export const th = (text) => h('th', {scope: 'col'}, text);
/** A data table: `heads` are column headings (text or nodes), `body` rows or a tbody. */
export const table = (id, caption, heads, body) => h('table', {class: 'list', id}, h('caption', {}, caption),
  h('thead', {}, h('tr', {}, heads.map(th))), body instanceof Node ? body : h('tbody', {}, body));
export const field = (label, input, hint) => h('div', {class: 'field'},
  h('label', {for: input.id}, label), input, hint || null);
export const btn = (text, onclick, attrs) => h('button', Object.assign({type: 'button', onclick}, attrs), text);
export const heading = (text) => h('h1', {tabindex: '-1'}, text);

export function say(msg, isError, keep) {
  const s = $('status');
  s.textContent = msg || '';
  s.className = 'status' + (msg ? (isError ? ' error' : ' ok') : '');
  state.sticky = !!keep;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
export function bytes(n) {
  n = Number(n) || 0;
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : String(n)) + ' ' + UNITS[i];
}
export function when(v) {
  if (v == null || v === '') return '';
  const d = typeof v === 'number' ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
  return isNaN(d) ? String(v) : d.toLocaleString();
}
export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
export function dec(s) { try { return decodeURIComponent(s); } catch (e) { return s; } }
export const enc = (key) => key.split('/').map(encodeURIComponent).join('/');
export const base = (key) => key.replace(/\/+$/, '').split('/').pop() || key;
export const xmlEsc = (s) => s.replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');

// --- errors ------------------------------------------------------------------------------

export class Failure extends Error {
  constructor(status, code, message, data) {
    super(message);
    Object.assign(this, {status, code, data});
  }
}
const FRIENDLY = {
  BucketNotEmpty: 'The bucket is not empty: delete its objects first',
  BucketAlreadyOwnedByYou: 'You already own a bucket with this name',
  BucketAlreadyExists: 'This bucket name is taken: choose another one',
  NoSuchBucket: 'The bucket does not exist (any more)',
  NoSuchKey: 'The object does not exist (any more)',
  NoSuchUpload: 'The upload was aborted or completed elsewhere: retry starts it over',
  AccessDenied: 'Access denied',
};
// a HEAD error has no body: its status is all there is
const STATUS_CODE = {403: 'AccessDenied', 404: 'NotFound', 412: 'PreconditionFailed'};

/** A Failure from an S3 error response (XML <Error><Code/><Message/>, or none for HEAD). */
export function s3Failure(status, body) {
  let code = STATUS_CODE[status] || 'HTTP' + status, msg = 'HTTP status ' + status;
  const doc = body ? parseXml(body) : null;
  if (doc && doc.documentElement.localName === 'Error') {
    code = text(doc.documentElement, 'Code') || code;
    msg = text(doc.documentElement, 'Message') || msg;
  }
  return new Failure(status, code, FRIENDLY[code] ? `${FRIENDLY[code]} (${code})`
    : `${code}: ${msg}`);
}

/** Show an error; a refused session (401, or 403 with a dead session) goes to login. */
export async function failed(e) {
  if (e instanceof Failure && (e.status === 401 || e.status === 403) && state.session) {
    if (!(await sessionAlive())) return state.onLost();
  }
  say(e && e.message ? e.message : String(e), true);
}
export async function guard(fn) {
  try { return await fn(); } catch (e) { await failed(e); }
}
async function sessionAlive() {
  try { await api('GET', 'session'); return true; } catch (e) { return !(e.status === 401 || e.status === 403); }
}

// --- the console API (JSON) and the S3 API (XML) --------------------------------------------

export const csrf = () => (state.session ? state.session.csrf_token : '');
/** fetch() whose network failure is a Failure (status 0, retryable) like an XHR's. */
async function send(url, init) {
  try { return await fetch(url, Object.assign({credentials: 'same-origin', cache: 'no-store'}, init)); } catch (e) {
    throw new Failure(0, 'NetworkError', 'network error: the server could not be reached');
  }
}

export async function api(method, path, body) {
  const headers = {'x-bleepstore-csrf': csrf()};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await send('/console/api/' + path, {method, headers,
    body: body === undefined ? undefined : JSON.stringify(body)});
  const raw = await r.text();
  let data = null;
  try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
  if (!r.ok) {
    throw new Failure(r.status, (data && data.error) || 'http_' + r.status,
      (data && data.message) || `${r.status} ${r.statusText}`, data);
  }
  return data;
}

const parseXml = (s) => new DOMParser().parseFromString(s, 'application/xml');
/** Direct children of `node` named `name` (any namespace). */
export const kids = (node, name) => Array.from(node.children).filter((c) => c.localName === name);
export const text = (node, name) => { const c = kids(node, name)[0]; return c ? c.textContent : ''; };

export function s3url(bucket, key, params) {
  let url = '/' + encodeURIComponent(bucket) + (key != null ? '/' + enc(key) : '');
  if (params) {
    url += '?' + Object.entries(params).filter(([, v]) => v !== undefined)
      .map(([k, v]) => (v === null ? k : `${k}=${encodeURIComponent(v)}`)).join('&');
  }
  return url;
}

/** One S3 request with the session cookie and the CSRF header; throws a Failure. */
export async function s3(method, url, opts) {
  opts = opts || {};
  const headers = Object.assign({'x-bleepstore-csrf': csrf()}, opts.headers);
  const r = await send(url, {method, headers, body: opts.body});
  const body = method === 'HEAD' ? '' : await r.text();
  if (!r.ok) throw s3Failure(r.status, body);
  const doc = body.trimStart().startsWith('<') ? parseXml(body) : null;
  // NOTE: S3 may answer 200 with an <Error> body (CompleteMultipartUpload, CopyObject).
  if (doc && doc.documentElement.localName === 'Error') throw s3Failure(r.status, body);
  return {r, doc};
}

/** An inline confirmation (no window.confirm: it blocks, and is not styleable). */
export function ask(view, message, yes, onYes, back) {
  const old = $('confirm');
  if (old) old.remove();
  const done = () => { box.remove(); if (back && back.isConnected) back.focus(); };
  const box = h('div', {id: 'confirm', class: 'confirm', role: 'alertdialog',
    'aria-labelledby': 'confirm-text'},
  h('p', {id: 'confirm-text'}, message),
  btn(yes, () => { box.remove(); guard(onYes); }, {id: 'confirm-yes', class: 'danger'}),
  btn('Cancel', done, {id: 'confirm-no'}));
  box.addEventListener('keydown', (e) => { if (e.key === 'Escape') done(); });
  view.querySelector('h1').after(box);
  $('confirm-yes').focus();
}

export async function copy(input) {
  try { await navigator.clipboard.writeText(input.value); } catch (e) {
    input.focus();
    input.select();
    document.execCommand('copy');
  }
  say('Copied to the clipboard.');
}
