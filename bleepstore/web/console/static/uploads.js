/* Uploads: drag and drop (files and folders) and file inputs feed one queue. Files over
 * 8 MiB go multipart (8 MiB parts, 3 in flight), smaller ones one PUT; both with
 * XMLHttpRequest, the only browser API with upload progress.
 *
 * Invariants: at most INFLIGHT requests run at once; `it.gen` changes on every cancel or
 * failure, so late callbacks of an older attempt never touch the item; a failed part is
 * retried RETRIES times with backoff, then the file fails keeping its upload id and the
 * parts already stored, so Retry resumes; Cancel aborts the XHRs and the multipart upload.
 */
import {$, Failure, btn, bytes, csrf, h, s3, s3Failure, s3url, say, sleep, text, xmlEsc, failed, guard, S3NS}
  from './core.js';

const PART = 8 * 1024 * 1024, INFLIGHT = 3, RETRIES = 3;
/** hooks.done(bucket): a file landed in `bucket` (the listing refreshes). */
export const hooks = {done: () => {}};

const U = {items: [], weight: 0, seq: 0};

export function dropzone(el, bucket, prefix) {
  const has = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  el.addEventListener('dragover', (e) => { if (has(e)) { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; el.classList.add('drag'); } });
  el.addEventListener('dragleave', (e) => { if (!el.contains(e.relatedTarget)) el.classList.remove('drag'); });
  el.addEventListener('drop', (e) => {
    e.preventDefault();
    el.classList.remove('drag');
    // NOTE: the item list is only valid during the event: take the entries now, walk later.
    const entries = Array.from(e.dataTransfer.items || [], (i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    const plain = entries.length ? [] : Array.from(e.dataTransfer.files, (f) => ({file: f, key: prefix + f.name}));
    guard(async () => {
      const out = [];
      for (const entry of entries) await walk(entry, out);
      enqueue(bucket, plain.concat(out.map((o) => ({file: o.file, key: prefix + o.path}))));
    });
  });
}
async function walk(entry, out) {
  if (entry.isFile) {
    out.push({file: await new Promise((ok, no) => entry.file(ok, no)), path: entry.fullPath.replace(/^\/+/, '')});
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((ok, no) => reader.readEntries(ok, no));
      if (!batch.length) break;
      for (const child of batch) await walk(child, out);
    }
  }
}

export function enqueue(bucket, list) {
  if (!list.length) return;
  for (const {file, key} of list) {
    const it = {id: ++U.seq, bucket, key, file, size: file.size, state: 'queued', done: {}, loaded: {},
      uploadId: null, xhrs: new Set(), gen: 0, error: ''};
    it.bar = h('progress', {max: '100', value: '0', 'aria-label': `Upload progress of ${key}`});
    it.note = h('span', {class: 'note'});
    it.cancel = btn('Cancel', () => cancel(it), {class: 'small', 'aria-label': `Cancel upload of ${key}`});
    it.retry = btn('Retry', () => { it.state = 'queued'; paint(it); pump(); }, {class: 'small', 'aria-label': `Retry upload of ${key}`, hidden: true});
    it.li = h('li', {'data-key': key, 'data-state': 'queued'}, h('span', {class: 'name'}, key), it.bar, it.note,
      h('span', {class: 'actions'}, it.cancel, it.retry));
    U.items.push(it);
    uploadsPanel().querySelector('ul').append(it.li);
    paint(it);
  }
  say(`Uploading ${list.length} file(s) to “${bucket}”…`);
  pump();
}

function uploadsPanel() {
  const sec = $('uploads');
  if (!sec.firstChild) {
    sec.append(h('h2', {}, 'Uploads'), h('div', {class: 'inline'},
      h('label', {for: 'upload-total'}, 'Total'), h('progress', {id: 'upload-total', max: '100', value: '0'}),
      h('span', {id: 'upload-total-text'}, '0 %'),
      btn('Clear finished', () => {
        U.items = U.items.filter((it) => { const keep = !['done', 'cancelled'].includes(it.state); if (!keep) it.li.remove(); return keep; });
        if (!U.items.length) { sec.hidden = true; sec.replaceChildren(); } else paintTotal();
      }, {id: 'uploads-clear'})), h('ul', {class: 'uploads-list'}));
  }
  sec.hidden = false;
  return sec;
}

function sent(it) {
  if (it.state === 'done') return it.size;
  let n = 0;
  for (const p of Object.keys(it.done)) n += Math.min(PART, it.size - (p - 1) * PART);
  for (const v of Object.values(it.loaded)) n += v;
  return Math.min(n, it.size);
}
const pct = (a, b, finished) => (finished ? 100 : b ? Math.min(99, Math.floor((a / b) * 100)) : 0);

function paint(it) {
  const p = pct(sent(it), it.size, it.state === 'done');
  it.bar.value = p;
  it.li.dataset.state = it.state;
  it.note.textContent = {queued: 'waiting', uploading: `${p} % of ${bytes(it.size)}`, done: `done · ${bytes(it.size)}`,
    failed: `failed: ${it.error}`, cancelled: 'cancelled'}[it.state];
  it.cancel.hidden = !['queued', 'uploading', 'failed'].includes(it.state);
  it.retry.hidden = !['failed', 'cancelled'].includes(it.state);
  paintTotal();
}
function paintTotal() {
  const live = U.items.filter((it) => it.state !== 'cancelled');
  const finished = live.length > 0 && live.every((it) => it.state === 'done');
  const p = pct(live.reduce((n, it) => n + sent(it), 0), live.reduce((n, it) => n + it.size, 0), finished);
  const bar = $('upload-total');
  if (!bar) return;
  bar.value = p;
  $('upload-total-text').textContent = `${p} %` + (finished ? ' · all done' : '');
}

function pump() {
  for (const it of U.items) {
    if (it.state !== 'queued') continue;
    const w = it.size > PART ? INFLIGHT : 1;
    if (U.weight && U.weight + w > INFLIGHT) break;
    U.weight += w;
    run(it, w);
  }
}

async function run(it, w) {
  const gen = ++it.gen;
  it.state = 'uploading';
  it.error = '';
  paint(it);
  try {
    if (it.size > PART) await multipart(it, gen); else await single(it, gen);
    if (it.gen !== gen) return;
    it.state = 'done';
    it.loaded = {};
    refreshSoon(it.bucket);
    if (U.items.every((x) => !['queued', 'uploading'].includes(x.state))) say('Uploads finished.');
  } catch (e) {
    if (it.gen !== gen) return;
    it.gen++;
    abortAll(it);
    it.state = 'failed';
    it.error = e.message;
    if (e.code === 'NoSuchUpload') { it.uploadId = null; it.done = {}; }
    say(`Upload of “${it.key}” failed: ${e.message}. Retry resumes it.`, true);
    if (e.status === 401 || e.status === 403) failed(e);
  } finally {
    U.weight -= w;
    paint(it);
    pump();
  }
}

let refreshTimer = null;
function refreshSoon(bucket) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => hooks.done(bucket), 250);
}

function abortAll(it) {
  for (const x of [...it.xhrs]) x.abort();
  it.xhrs.clear();
  it.loaded = {};
}

function cancel(it) {
  it.gen++;
  it.state = 'cancelled';
  abortAll(it);
  if (it.uploadId) {
    const id = it.uploadId;
    it.uploadId = null;
    it.done = {};
    s3('DELETE', s3url(it.bucket, it.key, {uploadId: id})).catch(failed);
  }
  paint(it);
  pump();
}

/** Worth another try: network errors, 5xx, 408/429, RequestTimeout; never a cancel. */
const retryable = (e) => !(e instanceof Failure) || (e.code !== 'Aborted' && (e.status === 0
  || e.status >= 500 || e.status === 408 || e.status === 429 || e.code === 'RequestTimeout'));

/** fn() up to 1 + RETRIES times, backing off 0.5 s, 1 s, 2 s, while `gen` is current. */
async function retry(it, gen, part, fn) {
  for (let n = 0; ; n++) {
    try { return await fn(); } catch (e) {
      delete it.loaded[part];
      if (it.gen !== gen || n >= RETRIES || !retryable(e)) throw e;
      await sleep(500 * 2 ** n);
      if (it.gen !== gen) throw e;
    }
  }
}

/** PUT with XMLHttpRequest (fetch has no upload progress); resolves with the xhr. */
function put(it, url, body, headers, part) {
  return new Promise((ok, no) => {
    const x = new XMLHttpRequest();
    const end = (f) => () => { it.xhrs.delete(x); f(); };
    x.open('PUT', url);
    x.setRequestHeader('x-bleepstore-csrf', csrf());
    for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
    x.upload.onprogress = (e) => { it.loaded[part] = e.loaded; paint(it); };
    x.onload = end(() => (x.status >= 200 && x.status < 300 ? ok(x) : no(s3Failure(x.status, x.responseText))));
    x.onerror = end(() => no(new Failure(0, 'NetworkError', 'network error')));
    x.onabort = end(() => no(new Failure(0, 'Aborted', 'cancelled')));
    it.xhrs.add(x);
    x.send(body);
  });
}

const ctype = (it) => ({'content-type': it.file.type || 'application/octet-stream'});

async function single(it, gen) {
  await retry(it, gen, 1, () => put(it, s3url(it.bucket, it.key), it.file, ctype(it), 1));
}

async function multipart(it, gen) {
  if (!it.uploadId) {
    const {doc} = await retry(it, gen, 0, () => s3('POST', s3url(it.bucket, it.key, {uploads: null}), {headers: ctype(it)}));
    const id = text(doc.documentElement, 'UploadId');
    if (it.gen !== gen) {
      s3('DELETE', s3url(it.bucket, it.key, {uploadId: id})).catch(() => {});
      throw new Failure(0, 'Aborted', 'cancelled');
    }
    Object.assign(it, {uploadId: id, done: {}});
  }
  const count = Math.ceil(it.size / PART), todo = [];
  for (let p = 1; p <= count; p++) if (!it.done[p]) todo.push(p);
  let i = 0;
  const worker = async () => {
    while (i < todo.length && it.gen === gen) {
      const p = todo[i++], start = (p - 1) * PART;
      const url = s3url(it.bucket, it.key, {partNumber: String(p), uploadId: it.uploadId});
      const x = await retry(it, gen, p, () => put(it, url, it.file.slice(start, start + PART), {}, p));
      if (it.gen !== gen) return;
      it.done[p] = x.getResponseHeader('ETag');
      delete it.loaded[p];
      paint(it);
    }
  };
  await Promise.all(Array.from({length: Math.min(INFLIGHT, todo.length)}, worker));
  if (it.gen !== gen) throw new Failure(0, 'Aborted', 'cancelled');
  const body = `<CompleteMultipartUpload xmlns="${S3NS}">` + Object.keys(it.done).map(Number).sort((a, b) => a - b)
    .map((p) => `<Part><PartNumber>${p}</PartNumber><ETag>${xmlEsc(it.done[p] || '')}</ETag></Part>`).join('')
    + '</CompleteMultipartUpload>';
  await retry(it, gen, 0, () => s3('POST', s3url(it.bucket, it.key, {uploadId: it.uploadId}),
    {body, headers: {'content-type': 'application/xml'}}));
  it.uploadId = null;
}

/** True while a file is queued or uploading (leaving the page would lose it). */
export const busy = () => U.items.some((it) => it.state === 'uploading' || it.state === 'queued');
