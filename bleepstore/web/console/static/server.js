/* #/server: component health, live charts, disks, queue and cluster, from successive
 * polls of /console/api/server every 2 s (rates are deltas of the summed counters).
 *
 * Invariants: one poll timer at a time, stopped by stopServer() on every route change;
 * charts are SVG built here (no library), the last POINTS samples, newest on the right.
 */
import {api, bytes, failed, h, heading, table} from './core.js';

const POLL_MS = 2000, POINTS = 60;
let pollTimer = null;
export function stopServer() {
  clearInterval(pollTimer);
  pollTimer = null;
}

const CHARTS = [
  ['requests', 'Requests/s', [['req', 'requests']], (v) => v.toFixed(1)],
  ['errors', 'Errors/s', [['err', 'errors']], (v) => v.toFixed(2)],
  ['bytes', 'Bytes/s in and out', [['bin', 'in'], ['bout', 'out']], (v) => bytes(Math.round(v)) + '/s'],
  ['latency', 'Mean latency (ms)', [['lat', 'latency']], (v) => v.toFixed(1) + ' ms'],
];

export function viewServer(view) {
  const st = {prev: null, points: []};
  const version = h('p', {id: 'server-version'});
  const health = h('tbody');
  const charts = h('div', {class: 'charts', id: 'charts'});
  const disks = h('div', {id: 'disks'});
  const extra = h('div', {id: 'server-extra'});
  view.append(heading('Server'), version,
    table('health', 'Component health', ['Component', 'Status', 'Details'], health),
    h('h2', {}, 'Activity (last 2 minutes, every 2 s)'), charts, h('h2', {}, 'Disk'), disks, extra);
  charts.append(h('p', {}, 'Collecting samples…'));
  const tick = async () => {
    try {
      const d = await api('GET', 'server');
      if (!version.isConnected) return;
      version.textContent = `BleepStore ${d.version || ''} · overall: ${(d.health && d.health.status) || 'unknown'}`;
      paintHealth(health, (d.health && d.health.checks) || {});
      sample(st, d.metrics);
      paintCharts(charts, st, !!d.metrics);
      paintDisks(disks, d.disk || []);
      extra.replaceChildren(...[['queue', 'Event queue', d.queue], ['cluster', 'Cluster', d.cluster]]
        .filter(([, , v]) => v).map(([id, title, v]) => h('section', {id: id + '-section'}, h('h2', {}, title), kvTable(id, v))));
    } catch (e) { failed(e); }
  };
  pollTimer = setInterval(tick, POLL_MS);
  return tick();
}

const fmt = (v) => (v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
function paintHealth(tbody, checks) {
  tbody.replaceChildren(...Object.entries(checks).map(([name, c]) => {
    const rest = Object.entries(c || {}).filter(([k]) => k !== 'status').map(([k, v]) => `${k}: ${fmt(v)}`).join(' · ');
    const s = (c && c.status) || 'unknown';
    return h('tr', {'data-component': name}, h('th', {scope: 'row'}, name),
      h('td', {}, h('span', {class: 'badge ' + (/^(ok|up|pass|healthy)$/i.test(s) ? 'good' : 'bad')}, s)), h('td', {}, rest));
  }));
}
function sample(st, m) {
  if (!m) return;
  const now = performance.now();
  if (st.prev) {
    const dt = (now - st.prev.t) / 1000, d = (k) => Math.max(0, (m[k] || 0) - (st.prev.m[k] || 0));
    const n = d('latency_count');
    st.points.push({req: d('requests_total') / dt, err: (d('errors_4xx_total') + d('errors_5xx_total')) / dt,
      bin: d('bytes_in_total') / dt, bout: d('bytes_out_total') / dt, lat: n ? (d('latency_sum_s') / n) * 1000 : 0});
    if (st.points.length > POINTS) st.points.shift();
  }
  st.prev = {t: now, m};
}
function paintCharts(box, st, has) {
  if (!has) { box.replaceChildren(h('p', {}, 'Metrics are not enabled on this server.')); return; }
  if (!st.points.length) return;
  const W = 300, H = 90, pts = st.points;
  box.replaceChildren(...CHARTS.map(([id, title, series, f]) => {
    const max = Math.max(1e-9, ...series.flatMap(([k]) => pts.map((p) => p[k])));
    const svg = h('svg:svg', {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img',
      id: 'chart-' + id, 'data-points': String(pts.length), class: 'chart',
      'aria-label': `${title}: now ${series.map(([k, n]) => `${n} ${f(pts[pts.length - 1][k])}`).join(', ')}; peak ${f(max)}`});
    svg.append(h('svg:line', {x1: 0, y1: H - 1, x2: W, y2: H - 1, class: 'axis'}));
    series.forEach(([k], i) => svg.append(h('svg:polyline', {class: 's' + i, 'vector-effect': 'non-scaling-stroke',
      points: pts.map((p, j) => `${(((POINTS - pts.length + j) * W) / (POINTS - 1)).toFixed(1)},${(H - 3 - (p[k] / max) * (H - 8)).toFixed(1)}`).join(' ')})));
    return h('figure', {class: 'card'}, h('figcaption', {}, title + ' — ',
      series.map(([k, n], i) => h('span', {class: 'key k' + i}, `${n}: ${f(pts[pts.length - 1][k])} `)), `(peak ${f(max)})`), svg);
  }));
}
function paintDisks(box, disks) {
  box.replaceChildren(...(disks.length ? disks.map((d) => {
    const p = d.total ? Math.round((d.used / d.total) * 100) : 0;
    return h('div', {class: 'disk field'}, h('label', {for: 'disk-' + d.name}, `${d.name} (${d.path})`),
      h('progress', {id: 'disk-' + d.name, max: String(d.total || 1), value: String(d.used || 0)}),
      h('span', {}, `${bytes(d.used)} used of ${bytes(d.total)} (${p} %), ${bytes(d.free)} free`));
  }) : [h('p', {}, 'No disk information.')]));
}
function kvTable(id, obj) {
  const rows = [];
  for (const [k, v] of Object.entries(obj)) {
    if (Array.isArray(v) && v.length && typeof v[0] === 'object') {
      const cols = [...new Set(v.flatMap((o) => Object.keys(o || {})))];
      rows.push(h('tr', {}, h('th', {scope: 'row'}, k), h('td', {}, table(`${id}-${k}`, k, cols,
        v.map((o) => h('tr', {}, cols.map((c) => h('td', {}, fmt(o[c])))))))));
    } else rows.push(h('tr', {}, h('th', {scope: 'row'}, k), h('td', {}, fmt(v))));
  }
  return h('table', {class: 'list kv', id: id + '-table'}, h('tbody', {}, rows));
}
