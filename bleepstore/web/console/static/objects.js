/* #/b/<bucket>/<prefix>: one folder of a bucket (delimiter "/"), 200 keys a page with a
 * stack of continuation tokens (never the whole bucket: a million keys page like ten),
 * prefix search, multi-delete (DeleteObjects, 1000 keys a request), the details panel
 * (HEAD, ACL, versions), downloads and share links (presigned by the console API).
 */
import {S3NS, api, ask, base, btn, bytes, copy, dec, enc, field, guard, h, heading, kids, s3,
  s3url, say, table, text, when, xmlEsc} from './core.js';
import {b64, md5} from './md5.js';
import {dropzone, enqueue, hooks} from './uploads.js';

const PAGE = 200, BATCH = 1000;

const B = {bucket: null, prefix: '', search: '', tokens: [''], page: 0, reload: null};
const bucketHash = (bucket, prefix) => '#/b/' + encodeURIComponent(bucket) + '/' + enc(prefix || '');

export async function viewBucket(view, bEnc, pEnc) {
  const bucket = dec(bEnc), prefix = dec(pEnc);
  if (B.bucket !== bucket || B.prefix !== prefix) Object.assign(B, {bucket, prefix, search: '', tokens: [''], page: 0});
  const selected = new Set();
  const crumbs = h('ol', {}, h('li', {}, h('a', {href: '#/buckets'}, 'Buckets')),
    h('li', {}, prefix ? h('a', {href: bucketHash(bucket, '')}, bucket) : h('span', {'aria-current': 'page'}, bucket)));
  const segs = prefix.split('/').filter(Boolean);
  segs.forEach((s, i) => crumbs.append(h('li', {}, i === segs.length - 1 ? h('span', {'aria-current': 'page'}, s)
    : h('a', {href: bucketHash(bucket, segs.slice(0, i + 1).join('/') + '/')}, s))));
  const search = h('input', {id: 'search', type: 'search', value: B.search, autocomplete: 'off',
    placeholder: 'name starts with…'});
  const files = h('input', {id: 'upload-files', type: 'file', multiple: true, class: 'file'});
  const folder = h('input', {id: 'upload-folder', type: 'file', multiple: true, webkitdirectory: true, class: 'file'});
  const delSel = btn('Delete selected', () => ask(view, `Delete ${selected.size} selected object(s)?`,
    'Delete objects', () => deleteMany(bucket, [...selected]), delSel), {id: 'delete-selected', class: 'danger', disabled: true});
  const all = h('input', {type: 'checkbox', id: 'select-all', 'aria-label': 'Select all objects on this page'});
  const tbody = h('tbody');
  const prev = btn('Previous page', () => { B.page--; guard(load); }, {id: 'prev-page', disabled: true});
  const next = btn('Next page', () => { B.page++; guard(load); }, {id: 'next-page', disabled: true});
  const pageNo = h('span', {id: 'page-number'});
  const details = h('aside', {id: 'details', class: 'card details', 'aria-label': 'Object details', hidden: true});
  const listing = h('section', {id: 'listing', class: 'dropzone', 'aria-label': 'Objects'},
    table('objects', 'Objects and folders', [all, 'Name', 'Size', 'Last modified', 'Actions'], tbody),
    h('div', {class: 'pager'}, prev, pageNo, next),
    h('p', {class: 'hint'}, 'Drop files or folders here to upload them into this folder.'));
  let timer = null;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => searchNow(), 300); });
  const searchNow = () => { clearTimeout(timer); B.search = search.value; B.tokens = ['']; B.page = 0; guard(load); };
  const onFiles = (input) => () => {
    enqueue(bucket, Array.from(input.files, (f) => ({file: f, key: prefix + (f.webkitRelativePath || f.name)})));
    input.value = '';
  };
  files.addEventListener('change', onFiles(files));
  folder.addEventListener('change', onFiles(folder));
  all.addEventListener('change', () => {
    for (const c of tbody.querySelectorAll('input[type=checkbox]')) { c.checked = all.checked; c.dispatchEvent(new Event('change')); }
  });
  dropzone(listing, bucket, prefix);

  view.append(h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, crumbs), heading(prefix ? `${bucket} / ${prefix}` : bucket),
    h('div', {class: 'toolbar card'},
      h('form', {class: 'inline', role: 'search', onsubmit: (e) => { e.preventDefault(); searchNow(); }},
        field('Filter by name prefix', search), h('button', {type: 'submit'}, 'Filter')),
      h('div', {class: 'inline'}, files, h('label', {for: 'upload-files', class: 'button'}, 'Upload files'),
        folder, h('label', {for: 'upload-folder', class: 'button'}, 'Upload folder'),
        btn('Refresh', () => guard(load), {id: 'refresh'}), delSel)),
    h('div', {class: 'split'}, listing, details));

  function row(o) {
    const name = o.key.slice(prefix.length);
    const box = h('input', {type: 'checkbox', 'aria-label': `Select ${name}`});
    box.addEventListener('change', () => {
      if (box.checked) selected.add(o.key); else selected.delete(o.key);
      delSel.disabled = !selected.size;
      delSel.textContent = selected.size ? `Delete selected (${selected.size})` : 'Delete selected';
    });
    const open = (share) => guard(() => showDetails(details, bucket, o.key, share));
    return h('tr', {'data-key': o.key}, h('td', {}, box),
      h('th', {scope: 'row'}, btn(name, () => open(false), {class: 'link act-details'})),
      h('td', {class: 'num'}, bytes(o.size)), h('td', {}, when(o.modified)),
      h('td', {class: 'actions'},
        btn('Download', () => guard(() => download(bucket, o.key)), {class: 'small act-download', 'aria-label': `Download ${name}`}),
        btn('Share', () => open(true), {class: 'small act-share', 'aria-label': `Share ${name}`}),
        btn('Delete', (e) => ask(view, `Delete “${o.key}”?`, 'Delete object', async () => {
          await s3('DELETE', s3url(bucket, o.key));
          say(`Deleted “${o.key}”.`);
          if (details.dataset.key === o.key) details.hidden = true;
          await load();
        }, e.target), {class: 'small danger act-delete', 'aria-label': `Delete ${name}`})));
  }

  async function load() {
    prev.disabled = next.disabled = true;  // one page turn at a time: the token stack stays exact
    const token = B.tokens[B.page];
    const {doc} = await s3('GET', s3url(bucket, null, {'list-type': '2', delimiter: '/', 'encoding-type': 'url',
      'max-keys': String(PAGE), prefix: B.prefix + B.search, 'continuation-token': token || undefined}));
    const root = doc.documentElement;
    const folders = kids(root, 'CommonPrefixes').map((c) => dec(text(c, 'Prefix')));
    const objects = kids(root, 'Contents').map((c) => ({key: dec(text(c, 'Key')), size: text(c, 'Size'),
      modified: text(c, 'LastModified')})).filter((o) => o.key !== prefix);
    const nextToken = text(root, 'NextContinuationToken');
    B.tokens.length = B.page + 1;
    if (text(root, 'IsTruncated') === 'true' && nextToken) B.tokens.push(nextToken);
    selected.clear();
    all.checked = false;
    delSel.disabled = true;
    delSel.textContent = 'Delete selected';
    tbody.replaceChildren(...folders.map((f) => h('tr', {class: 'folder', 'data-prefix': f}, h('td', {}),
      h('th', {scope: 'row'}, h('a', {href: bucketHash(bucket, f)}, f.slice(prefix.length))),
      h('td', {class: 'num'}, 'folder'), h('td', {}), h('td', {}))), ...objects.map(row));
    if (!folders.length && !objects.length) {
      tbody.append(h('tr', {}, h('td', {colspan: '5'}, B.search ? 'Nothing starts with that.'
        : 'This folder is empty: drop files or folders here, or use Upload.')));
    }
    prev.disabled = B.page === 0;
    next.disabled = B.tokens.length <= B.page + 1;
    pageNo.textContent = `Page ${B.page + 1}`;
  }
  B.reload = (b) => { if (b === bucket && listing.isConnected) guard(load); };
  await load();
}

async function deleteMany(bucket, keys) {
  let deleted = 0;
  const errs = [];
  for (let i = 0; i < keys.length; i += BATCH) {
    const body = '<Delete xmlns="' + S3NS + '"><Quiet>true</Quiet>' + keys.slice(i, i + BATCH)
      .map((k) => `<Object><Key>${xmlEsc(k)}</Key></Object>`).join('') + '</Delete>';
    const raw = new TextEncoder().encode(body);
    const {doc} = await s3('POST', s3url(bucket, null, {delete: null}),
      {body: raw, headers: {'content-type': 'application/xml', 'content-md5': b64(md5(raw))}});
    const bad = kids(doc.documentElement, 'Error');
    bad.forEach((e) => errs.push(`${text(e, 'Key')}: ${text(e, 'Code')}`));
    deleted += Math.min(BATCH, keys.length - i) - bad.length;
  }
  say(`Deleted ${deleted} object(s).` + (errs.length ? ` Not deleted: ${errs.join(', ')}` : ''), errs.length > 0);
  if (B.reload) B.reload(bucket);
}

async function download(bucket, key) {
  const {url} = await api('POST', 'presign', {bucket, key, expires_s: 300, download: true});
  const a = h('a', {href: url, download: base(key), class: 'sr'}, 'download');
  document.body.append(a);
  a.click();
  a.remove();
  say(`Downloading “${base(key)}”…`);
}

function grantee(g) {
  const who = kids(g, 'Grantee')[0];
  if (!who) return '?';
  const uri = text(who, 'URI');
  return text(who, 'DisplayName') || text(who, 'ID') || text(who, 'EmailAddress') || uri.split('/').pop() || uri;
}

async function showDetails(panel, bucket, key, share) {
  panel.hidden = false;
  panel.dataset.key = key;
  panel.replaceChildren(h('h2', {tabindex: '-1'}, 'Details'), h('p', {}, 'Loading…'));
  const url = s3url(bucket, key);
  const [head, acl, vers] = await Promise.allSettled([s3('HEAD', url), s3('GET', url + '?acl'),
    s3('GET', s3url(bucket, null, {versions: null, 'encoding-type': 'url', prefix: key}))]);
  if (head.status === 'rejected') { panel.hidden = true; throw head.reason; }
  const hd = head.value.r.headers;
  const facts = [['Key', key], ['Size', `${bytes(hd.get('content-length'))} (${hd.get('content-length')} bytes)`],
    ['ETag', hd.get('etag')], ['Content-Type', hd.get('content-type')], ['Last modified', when(hd.get('last-modified'))]];
  if (hd.get('x-amz-version-id')) facts.push(['Version', hd.get('x-amz-version-id')]);
  for (const [k, v] of hd) if (k.startsWith('x-amz-meta-')) facts.push([k, v]);
  const dl = h('dl', {id: 'facts'}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v || '—')]));

  const aclPart = acl.status === 'rejected' ? h('p', {}, `Could not read the ACL: ${acl.reason.message}`)
    : table('acl', 'Access control (grants)', ['Grantee', 'Permission'], Array.from(
      acl.value.doc.getElementsByTagNameNS('*', 'Grant'),
      (g) => h('tr', {}, h('th', {scope: 'row'}, grantee(g)), h('td', {}, text(g, 'Permission')))));
  let versPart = null;
  if (vers.status === 'fulfilled') {
    const root = vers.value.doc.documentElement;
    const list = Array.from(root.children).filter((c) => (c.localName === 'Version' || c.localName === 'DeleteMarker')
      && dec(text(c, 'Key')) === key);
    if (list.length > 1 || list.some((v) => text(v, 'VersionId') !== 'null')) {
      versPart = table('versions', 'Versions', ['Version ID', 'Last modified', 'Size', 'Latest'], list.map((v) => h('tr', {},
        h('th', {scope: 'row'}, text(v, 'VersionId')), h('td', {}, when(text(v, 'LastModified'))),
        h('td', {}, v.localName === 'DeleteMarker' ? 'delete marker' : bytes(text(v, 'Size'))),
        h('td', {}, text(v, 'IsLatest') === 'true' ? 'yes' : ''))));
    }
  }
  const expiry = h('select', {id: 'share-expiry'}, h('option', {value: '3600'}, '1 hour'),
    h('option', {value: '86400'}, '1 day'), h('option', {value: '604800'}, '7 days'));
  const link = h('input', {id: 'share-url', readonly: true, placeholder: 'no link yet'});
  const note = h('p', {class: 'hint', id: 'share-note'});
  const copyBtn = btn('Copy', () => copy(link), {id: 'share-copy', disabled: true, 'aria-label': 'Copy the share link'});
  const shareForm = h('form', {id: 'share-form', class: 'inline', onsubmit: (e) => {
    e.preventDefault();
    guard(async () => {
      const r = await api('POST', 'presign', {bucket, key, expires_s: Number(expiry.value), download: false});
      link.value = r.url;
      copyBtn.disabled = false;
      note.textContent = `Anyone with this link can read the object until ${when(r.expires_at)}.`;
      link.focus();
      link.select();
    });
  }}, field('Link expires after', expiry), h('button', {type: 'submit', id: 'share-create'}, 'Create share link'));
  panel.replaceChildren(h('h2', {tabindex: '-1'}, `Details: ${base(key)}`), dl,
    h('div', {class: 'inline'},
      btn('Download', () => guard(() => download(bucket, key)), {id: 'details-download'}),
      btn('Close details', () => { panel.hidden = true; }, {id: 'details-close'})),
    h('h3', {}, 'Share link'), shareForm, h('div', {class: 'inline'}, field('Share link', link), copyBtn), note,
    h('h3', {}, 'Permissions'), aclPart, versPart);
  (share ? expiry : panel.querySelector('h2')).focus();
}

hooks.done = (bucket) => { if (B.reload) B.reload(bucket); };
