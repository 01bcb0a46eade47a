// Flowcast web UI: one page, hash routes, polling the coordinator's JSON API every 2 s.
//   #/                                   jobs and nodes
//   #/jobs/<job>                         one job: state, job graph, processes, checkpoints, devices
//   #/jobs/<job>/devices/<device>        observed vs predicted charts of one device (uPlot)
// Every string from the server is put into the DOM as text (textContent / text nodes), never
// as HTML. Bundled by ../build.sh into dist/app.js.
import uPlot from 'uplot';

const POLL_MS = 2000;
const SEARCH_DEBOUNCE_MS = 200;
const DEVICE_LIMIT = 50;
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

const enc = encodeURIComponent;

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const jobHref = (job) => `#/jobs/${enc(job)}`;
const deviceHref = (job, device) => `#/jobs/${enc(job)}/devices/${enc(device)}`;

// ---------------------------------------------------------------------------------------------
// Formatting

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const DASH = '–';

function fmtNum(v, digits = 0) {
  if (!isNum(v)) return DASH;
  return v.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const fmtRate = (v) => fmtNum(v, 1);

function fmtShare(v) {
  if (!isNum(v)) return DASH;
  const p = v * 100;
  if (p > 0 && p < 1) return '<1%';
  return `${Math.round(p)}%`;
}

function fmtBytes(b) {
  if (!isNum(b)) return DASH;
  if (b < 1e6) return `${fmtNum(b / 1e3, 1)} kB`;
  if (b < 1e9) return `${fmtNum(b / 1e6, 1)} MB`;
  return `${fmtNum(b / 1e9, 2)} GB`;
}

const pad2 = (n) => String(n).padStart(2, '0');

// Local HH:MM:SS; with the date in front when it is not today (replayed data can be old).
function fmtTime(ms) {
  if (!isNum(ms)) return DASH;
  const d = new Date(ms);
  const hms = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hms}`;
}

function fmtDurationMs(ms) {
  if (!isNum(ms)) return DASH;
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60e3) return `${fmtNum(ms / 1e3, 1)} s`;
  const two = (big, bigUnit, small, smallUnit) => {
    const b = Math.floor(a / big);
    const r = Math.floor((a % big) / small);
    return `${ms < 0 ? '-' : ''}${b} ${bigUnit}${r ? ` ${r} ${smallUnit}` : ''}`;
  };
  if (a < 3600e3) return two(60e3, 'min', 1e3, 's');
  if (a < 86400e3) return two(3600e3, 'h', 60e3, 'min');
  return two(86400e3, 'd', 3600e3, 'h');
}

const fmtSeconds = (s) => (isNum(s) ? fmtDurationMs(s * 1000) : DASH);

function fmtAge(ms) {
  if (!isNum(ms)) return DASH;
  return `${fmtDurationMs(Math.max(0, Date.now() - ms))} ago`;
}

function fmtParallelism(p) {
  if (p == null) return DASH;
  if (typeof p === 'string') return p;
  if (typeof p === 'object' && 'fixed' in p) return `fixed ${p.fixed}`;
  return JSON.stringify(p);
}

// [0,1,2,3,7] -> "0–3, 7"; anything that is not a list of integers is just joined.
function fmtList(list) {
  if (list == null) return DASH;
  if (!Array.isArray(list)) return String(list);
  if (list.length === 0) return DASH;
  if (!list.every((x) => Number.isInteger(x))) return list.map(String).join(', ');
  const s = [...list].sort((a, b) => a - b);
  const out = [];
  let start = s[0];
  let prev = s[0];
  for (const x of s.slice(1).concat([NaN])) {
    if (x === prev + 1) {
      prev = x;
      continue;
    }
    out.push(start === prev ? `${start}` : `${start}–${prev}`);
    start = x;
    prev = x;
  }
  return out.join(', ');
}

function fmtKeyGroups(groups) {
  if (!Array.isArray(groups) || groups.length === 0) return DASH;
  return groups.map((g) => (Array.isArray(g) && g.length === 2 ? `${g[0]}–${g[1]}` : String(g))).join(', ');
}

const fmtCount = (v) => (Array.isArray(v) ? String(v.length) : isNum(v) ? fmtNum(v) : v == null ? DASH : String(v));

// `last_heartbeat_ms`: a Unix time in ms when it looks like one, else an age in ms.
function fmtHeartbeat(v) {
  if (!isNum(v)) return DASH;
  return v > 1e12 ? fmtAge(v) : `${fmtDurationMs(v)} ago`;
}

function stateBadge(state, cls = 'badge') {
  return h('span', { class: `${cls} state-${String(state).replace(/[^a-z-]/gi, '')}`, text: state ?? DASH });
}

// ---------------------------------------------------------------------------------------------
// API

class Unauthorized extends Error {}

async function api(path) {
  let res;
  try {
    res = await fetch(path, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    });
  } catch (e) {
    throw new Error(`cannot reach the coordinator (${path}): ${e.message}`);
  }
  if (res.status === 401) {
    stopPolling();
    location.assign('/ui/login');
    throw new Unauthorized('not logged in');
  }
  let body = null;
  const text = await res.text();
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    if (res.ok) throw new Error(`${path}: answer is not JSON`);
  }
  if (!res.ok) {
    const msg = body && typeof body.error === 'string' ? body.error : `${res.status} ${res.statusText}`;
    const err = new Error(`${path}: ${msg}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// Runs the loaders concurrently; each result is {ok, value} or {ok:false, error}.
async function settle(promises) {
  const rs = await Promise.allSettled(promises);
  return rs.map((r) => (r.status === 'fulfilled' ? { ok: true, value: r.value } : { ok: false, error: r.reason }));
}

// ---------------------------------------------------------------------------------------------
// Page chrome: breadcrumbs, error banner, "updated" stamp

const els = {};

function setCrumbs(items) {
  const nav = els.crumbs;
  nav.replaceChildren();
  items.forEach(([label, href], i) => {
    if (i > 0) nav.append(h('span', { class: 'sep', text: '›' }));
    nav.append(href ? h('a', { href, text: label }) : h('span', { text: label }));
  });
}

function showError(err) {
  if (err instanceof Unauthorized) return;
  els.error.textContent = err && err.message ? err.message : String(err);
  els.error.hidden = false;
}

function clearError() {
  els.error.hidden = true;
  els.error.textContent = '';
}

function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', { text: title }), ...children);
}

function table(id, headers, tbody) {
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { id }, h('thead', null, h('tr', null, headers.map((t) => (Array.isArray(t) ? h('th', { class: t[1], text: t[0] }) : h('th', { text: t }))))), tbody),
  );
}

function emptyRow(cols, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: cols, text }));
}

function errorRow(cols, err) {
  return h('tr', { class: 'empty' }, h('td', { colspan: cols, class: 'error-text', text: err.message }));
}

// ---------------------------------------------------------------------------------------------
// Overview: jobs and nodes

const JOB_COLS = ['Job', 'State', 'Parallelism', ['Workers', 'num'], ['Attempt', 'num'], ['Restarts', 'num'], 'Submitted', 'Reason'];
const NODE_COLS = ['Node', 'Host', ['Slots (free / total)', 'num'], 'Alive', 'Last heartbeat', ['Clock offset', 'num'], ['Processes', 'num']];

function overviewView(ctx, root) {
  setCrumbs([['Jobs', null]]);
  const jobsBody = h('tbody');
  const nodesBody = h('tbody');
  root.append(section('Jobs', table('jobs-table', JOB_COLS, jobsBody)), section('Nodes', table('nodes-table', NODE_COLS, nodesBody)));

  return {
    async refresh() {
      const [jobs, nodes] = await settle([api('/v1/jobs'), api('/v1/nodes')]);
      if (!ctx.alive()) return;
      if (jobs.ok) {
        const list = Array.isArray(jobs.value) ? jobs.value : [];
        jobsBody.replaceChildren(...(list.length ? list.map(jobRow) : [emptyRow(JOB_COLS.length, 'No jobs.')]));
      } else jobsBody.replaceChildren(errorRow(JOB_COLS.length, jobs.error));
      if (nodes.ok) {
        const list = Array.isArray(nodes.value) ? nodes.value : [];
        nodesBody.replaceChildren(...(list.length ? list.map(nodeRow) : [emptyRow(NODE_COLS.length, 'No nodes.')]));
      } else nodesBody.replaceChildren(errorRow(NODE_COLS.length, nodes.error));
      const bad = [jobs, nodes].find((r) => !r.ok);
      if (bad) throw bad.error;
    },
  };
}

function jobRow(j) {
  return h(
    'tr',
    { class: 'job-row', dataset: { job: j.id } },
    h('td', null, h('a', { href: jobHref(j.id), text: j.id })),
    h('td', { class: 'job-state' }, stateBadge(j.state)),
    h('td', { text: fmtParallelism(j.parallelism) }),
    h('td', { class: 'num', text: fmtCount(j.workers) }),
    h('td', { class: 'num', text: fmtCount(j.attempt) }),
    h('td', { class: 'num', text: fmtCount(j.restarts) }),
    h('td', { text: fmtTime(j.submitted_unix_ms) }),
    h('td', { class: 'reason', text: j.reason ?? '' }),
  );
}

function nodeRow(n) {
  return h(
    'tr',
    { class: 'node-row', dataset: { node: n.id } },
    h('td', { text: n.id }),
    h('td', { text: n.host ?? DASH }),
    h('td', { class: 'num', text: `${fmtCount(n.free_slots)} / ${fmtCount(n.slots)}` }),
    h('td', null, h('span', { class: `badge ${n.alive ? 'state-running' : 'state-failed'}`, text: n.alive ? 'alive' : 'down' })),
    h('td', { text: fmtHeartbeat(n.last_heartbeat_ms) }),
    h('td', { class: 'num', text: isNum(n.clock_offset_ms) ? `${n.clock_offset_ms > 0 ? '+' : ''}${fmtNum(n.clock_offset_ms)} ms` : DASH }),
    h('td', { class: 'num', text: fmtCount(n.processes) }),
  );
}

// ---------------------------------------------------------------------------------------------
// Job view

const PROC_COLS = [['#', 'num'], 'Node', 'Host', 'Ports (data / metrics / control)', 'Workers', 'Partitions', 'Key groups', 'Status'];
const CKPT_COLS = [['Id', 'num'], 'Kind', 'Age', ['Size', 'num'], ['Duration', 'num']];
const lastQuery = new Map(); // job -> device search text, kept across routes

function jobView(ctx, root, job) {
  setCrumbs([['Jobs', '#/'], [`Job ${job}`, null]]);

  const stateEl = h('span');
  const titleState = h('span', { class: 'title-state' });
  const fields = {};
  const field = (key, label, id) => {
    const dd = h('dd', { id, text: DASH });
    fields[key] = dd;
    return h('div', { class: 'field' }, h('dt', { text: label }), dd);
  };
  const summary = h(
    'dl',
    { class: 'summary' },
    field('state', 'State', 'job-state'),
    field('attempt', 'Attempt', 'job-attempt'),
    field('restarts', 'Restarts', 'job-restarts'),
    field('parallelism', 'Parallelism'),
    field('shape', 'Workers / processes / threads'),
    field('topic', 'Topic (partitions)'),
    field('model', 'Model'),
    field('submitted', 'Submitted'),
    field('rescale', 'Last rescale pause'),
    field('watermark', 'Watermark', 'watermark'),
    field('lag', 'Watermark lag', 'watermark-lag'),
    field('reason', 'Reason', 'job-reason'),
  );
  fields.state.replaceChildren(stateEl);

  const graphBox = h('div', { class: 'graph', id: 'job-graph' });
  const graphNote = h('p', { class: 'muted small' });
  const graphErr = h('p', { class: 'error-text', hidden: true });
  const procBody = h('tbody');
  const ckptBody = h('tbody');
  const accBody = h('tbody');
  const accNote = h('p', { class: 'muted small' });
  const accSection = section('Forecast accuracy', accNote, table('accuracy-table', ACC_COLS, accBody));
  accSection.hidden = true;

  const search = h('input', {
    type: 'search',
    id: 'device-search',
    placeholder: 'Search devices by id…',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-label': 'Search devices',
  });
  search.value = lastQuery.get(job) ?? '';
  const devSource = h('p', { id: 'device-source', class: 'muted small' });
  const devSummary = h('p', { id: 'device-summary', class: 'small' });
  const devList = h('ul', { id: 'device-results', class: 'device-results' });

  root.append(
    h('h2', { class: 'page-title' }, `Job ${job} `, titleState),
    section('Status', summary),
    section('Job graph', graphNote, graphErr, h('div', { class: 'graph-scroll' }, graphBox)),
    accSection,
    section('Processes', table('processes-table', PROC_COLS, procBody)),
    section('Checkpoints', table('checkpoints-table', CKPT_COLS, ckptBody)),
    section('Devices', search, devSource, devSummary, devList),
  );

  const graph = createGraph(graphBox);

  // Device search: server-side, debounced, stale answers dropped.
  let searchSeq = 0;
  let debounce = null;
  let lastDevKey = null;
  async function searchDevices() {
    const seq = ++searchSeq;
    const q = search.value.trim();
    lastQuery.set(job, search.value);
    const res = await api(`/v1/jobs/${enc(job)}/devices?q=${enc(q)}&limit=${DEVICE_LIMIT}`);
    if (seq !== searchSeq || !ctx.alive()) return;
    setText(devSource, res.source ?? '');
    const devices = Array.isArray(res.devices) ? res.devices : [];
    const total = isNum(res.total) ? res.total : devices.length;
    let text = `${fmtNum(total)} device${total === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}`;
    if (res.truncated || devices.length < total) text += ` — showing the first ${fmtNum(devices.length)}; refine the search`;
    setText(devSummary, text);
    const key = JSON.stringify(devices);
    if (key === lastDevKey) return;
    lastDevKey = key;
    devList.replaceChildren(
      ...devices.map((d) =>
        h(
          'li',
          null,
          h('a', { class: 'device-link', href: deviceHref(job, d.device), text: d.device }),
          h('span', { class: 'muted small', text: ` ${fmtNum(d.windows)} windows · last ${fmtTime(d.last_window_end_ms)}` }),
        ),
      ),
    );
  }
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = null;
      searchDevices().catch(showError);
    }, SEARCH_DEBOUNCE_MS);
  });

  return {
    destroy() {
      clearTimeout(debounce);
      graph.destroy();
    },
    async refresh() {
      const tasks = [api(`/v1/jobs/${enc(job)}`), api(`/v1/jobs/${enc(job)}/graph`)];
      if (debounce == null) tasks.push(searchDevices());
      const [detail, gr, dev] = await settle(tasks);
      if (!ctx.alive()) return;

      if (detail.ok) {
        const j = detail.value;
        stateEl.replaceChildren(stateBadge(j.state));
        titleState.replaceChildren(stateBadge(j.state));
        setText(fields.attempt, fmtCount(j.attempt));
        setText(fields.restarts, fmtCount(j.restarts));
        setText(fields.parallelism, fmtParallelism(j.parallelism));
        setText(fields.shape, `${fmtCount(j.workers)} / ${fmtCount(j.processes)} / ${fmtCount(j.threads)}`);
        setText(fields.topic, j.topic ? `${j.topic} (${fmtCount(j.partitions)})` : DASH);
        setText(fields.model, j.model && j.model.sha256 ? `sha256 ${String(j.model.sha256).slice(0, 12)}…` : 'none');
        fields.model.title = j.model && j.model.sha256 ? String(j.model.sha256) : '';
        setText(fields.submitted, isNum(j.submitted_unix_ms) ? `${fmtTime(j.submitted_unix_ms)} (${fmtAge(j.submitted_unix_ms)})` : DASH);
        setText(fields.rescale, isNum(j.last_rescale_pause_ms) ? fmtDurationMs(j.last_rescale_pause_ms) : DASH);
        setText(fields.reason, j.reason ?? DASH);
        if (!gr.ok) setText(fields.watermark, fmtTime(j.watermark_ms));

        const placement = Array.isArray(j.placement) ? j.placement : [];
        procBody.replaceChildren(...(placement.length ? placement.map(procRow) : [emptyRow(PROC_COLS.length, 'No processes placed.')]));
        const cps = Array.isArray(j.checkpoints) ? [...j.checkpoints] : [];
        cps.sort((a, b) => (b.created_unix_ms ?? 0) - (a.created_unix_ms ?? 0));
        ckptBody.replaceChildren(...(cps.length ? cps.map(checkpointRow) : [emptyRow(CKPT_COLS.length, 'No checkpoints yet.')]));
      }

      if (gr.ok) {
        const g = gr.value;
        graphErr.hidden = true;
        setText(fields.watermark, fmtTime(g.watermark_ms));
        setText(fields.lag, fmtSeconds(g.watermark_lag_s));
        setText(
          graphNote,
          `Sampled ${fmtTime(g.sampled_unix_ms)}` +
            (isNum(g.interval_s) ? ` over the last ${fmtNum(g.interval_s, 1)} s.` : ' — first sample: rates appear with the next one.') +
            ' Busy: share of wall time its workers spent running the operator; blocked: share spent waiting for room in a full sink queue (backpressure).',
        );
        graph.update(g);
        const acc = g.accuracy;
        accSection.hidden = !acc;
        if (acc) {
          setText(
            accNote,
            `Devices whose model’s rolling error is below (ahead) or above (behind) persistence’s, devices the guard serves persistence, ` +
              `and the share of the ${fmtNum(acc.predictions_total)} forecasts so far that persistence spoke for.`,
          );
          accBody.replaceChildren(...(acc.features || []).map((f) => accuracyRow(f, acc.predictions_total)));
        }
      } else {
        graphErr.hidden = false;
        setText(graphErr, `Job graph unavailable: ${gr.error.message}`);
      }

      const bad = [detail, gr, dev].find((r) => r && !r.ok);
      if (bad) throw bad.error;
    },
  };
}

const ACC_COLS = ['Feature', ['Model ahead', 'num'], ['Model behind', 'num'], ['Guarded', 'num'], ['Served by persistence', 'num']];

function accuracyRow(f, predictions) {
  const share = isNum(f.persistence_served_total) && isNum(predictions) && predictions > 0 ? f.persistence_served_total / predictions : null;
  return h(
    'tr',
    { class: 'accuracy-row', dataset: { feature: f.feature } },
    h('td', { text: f.feature }),
    h('td', { class: 'num', text: fmtNum(f.ahead_devices) }),
    h('td', { class: 'num', text: fmtNum(f.behind_devices) }),
    h('td', { class: 'num', text: fmtNum(f.guarded_devices) }),
    h('td', { class: 'num', text: fmtShare(share) }),
  );
}

function procRow(p) {
  const ports = [p.data_port, p.metrics_port, p.control_port].map((x) => (x == null ? DASH : String(x))).join(' / ');
  return h(
    'tr',
    { class: 'process-row' },
    h('td', { class: 'num', text: fmtCount(p.index) }),
    h('td', { text: p.node ?? DASH }),
    h('td', { text: p.host ?? DASH }),
    h('td', { text: ports }),
    h('td', { text: fmtList(p.workers) }),
    h('td', { text: fmtList(p.partitions) }),
    h('td', { text: fmtKeyGroups(p.key_groups) }),
    h('td', null, stateBadge(p.status)),
  );
}

function checkpointRow(c) {
  return h(
    'tr',
    { class: 'checkpoint-row', dataset: { checkpoint: c.id } },
    h('td', { class: 'num', text: String(c.id) }),
    h('td', null, h('span', { class: `badge kind-${c.kind === 'savepoint' ? 'savepoint' : 'checkpoint'}`, text: c.kind })),
    h('td', { text: fmtAge(c.created_unix_ms), title: fmtTime(c.created_unix_ms) }),
    h('td', { class: 'num', text: fmtBytes(c.bytes) }),
    h('td', { class: 'num', text: isNum(c.duration_ms) ? fmtDurationMs(c.duration_ms) : 'in progress' }),
  );
}

// ---------------------------------------------------------------------------------------------
// Job graph: one box per operator on a CSS grid, arrows drawn in an SVG overlay.
// Columns are the longest-path depth from a source; dead-letters and late-data hang below the
// operator that feeds them.

const SIDE_KINDS = new Set(['dead-letters', 'late-data']);

function layoutGraph(ops, edges) {
  const byId = new Map(ops.map((o) => [o.id, o]));
  const order = [];
  const seen = new Set();
  const add = (id) => {
    if (!seen.has(id)) {
      seen.add(id);
      order.push(id);
    }
  };
  for (const [a, b] of edges) {
    add(a);
    add(b);
  }
  for (const o of ops) add(o.id);
  const isSide = (id) => SIDE_KINDS.has(byId.get(id)?.kind);
  const parents = new Map(order.map((id) => [id, []]));
  for (const [a, b] of edges) parents.get(b).push(a);

  // Longest-path depth over the main (non-side) operators; guards against cycles.
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    const ps = parents.get(id).filter((p) => !isSide(p) || isSide(id));
    const d = ps.length ? Math.max(...ps.map((p) => depthOf(p) + 1)) : 0;
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  const cols = new Map();
  const place = new Map();
  const push = (col, id) => {
    if (!cols.has(col)) cols.set(col, []);
    cols.get(col).push(id);
  };
  for (const id of order) if (!isSide(id)) push(depthOf(id), id);
  for (const id of order) {
    if (!isSide(id)) continue;
    const ps = parents.get(id).filter((p) => !isSide(p));
    push(ps.length ? Math.max(...ps.map(depthOf)) : 0, id);
  }
  for (const [col, ids] of cols) ids.forEach((id, row) => place.set(id, { col, row }));
  return { order, place };
}

function createGraph(container) {
  const boxes = new Map();
  const overlay = svg('svg', { class: 'graph-edges', 'aria-hidden': 'true' });
  let key = null;
  let edges = [];
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrowhead', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }));
  defs.append(marker);

  function build(g) {
    const ops = Array.isArray(g.operators) ? g.operators : [];
    edges = (Array.isArray(g.edges) ? g.edges : []).filter((e) => Array.isArray(e) && e.length === 2);
    const { order, place } = layoutGraph(ops, edges);
    const byId = new Map(ops.map((o) => [o.id, o]));
    boxes.clear();
    container.replaceChildren(overlay);
    for (const id of order) {
      const op = byId.get(id) || { id, kind: '', label: id };
      const m = {};
      const metric = (name, label, cls) => {
        const v = h('span', { class: cls });
        const row = h('div', { class: `m m-${name}` }, h('span', { class: 'ml', text: label }), v);
        m[name] = { row, v };
        return row;
      };
      const bar = (cls) => h('span', { class: `bar ${cls}` }, h('span', { class: 'fill' }));
      const busyBar = bar('bar-busy');
      const blockedBar = bar('bar-blocked');
      const box = h(
        'div',
        { class: `op kind-${String(op.kind).replace(/[^a-z-]/gi, '')}`, dataset: { op: id } },
        h('div', { class: 'op-head' }, h('span', { class: 'op-label', text: op.label || id }), h('span', { class: 'op-kind', text: op.kind || '' })),
        metric('in', 'in/s', 'in-rate'),
        metric('out', 'out/s', 'out-rate'),
        metric('busy', 'busy', 'busy'),
        busyBar,
        metric('blocked', 'blocked', 'blocked'),
        blockedBar,
        metric('dead', 'dead-lettered', 'dead-lettered'),
        metric('late', 'late', 'late'),
        metric('queued', 'queued', 'queued'),
      );
      const p = place.get(id);
      box.style.gridColumn = String(p.col + 1);
      box.style.gridRow = String(p.row + 1);
      container.append(box);
      boxes.set(id, { box, m, busyBar, blockedBar });
    }
  }

  function drawEdges() {
    const base = container.getBoundingClientRect();
    overlay.setAttribute('width', String(container.scrollWidth));
    overlay.setAttribute('height', String(container.scrollHeight));
    overlay.replaceChildren(defs);
    for (const [a, b] of edges) {
      const A = boxes.get(a);
      const B = boxes.get(b);
      if (!A || !B) continue;
      const ra = A.box.getBoundingClientRect();
      const rb = B.box.getBoundingClientRect();
      const ax = ra.left - base.left;
      const ay = ra.top - base.top;
      const bx = rb.left - base.left;
      const by = rb.top - base.top;
      let d;
      if (rb.left >= ra.right - 1) {
        // b to the right: from a's right edge to b's left edge.
        const x1 = ax + ra.width;
        const y1 = ay + Math.min(ra.height / 2, 40);
        const x2 = bx;
        const y2 = by + Math.min(rb.height / 2, 40);
        const c = Math.max(20, (x2 - x1) / 2);
        d = `M ${x1} ${y1} C ${x1 + c} ${y1}, ${x2 - c} ${y2}, ${x2} ${y2}`;
      } else if (rb.top >= ra.bottom - 1) {
        // b below a (side branch): from a's bottom to b's top.
        const x1 = ax + ra.width / 2;
        const x2 = bx + rb.width / 2;
        d = `M ${x1} ${ay + ra.height} C ${x1} ${by - 10}, ${x2} ${ay + ra.height + 10}, ${x2} ${by}`;
      } else {
        // Anything else (cycles, odd shapes): a straight line centre to centre.
        d = `M ${ax + ra.width / 2} ${ay + ra.height / 2} L ${bx + rb.width / 2} ${by + rb.height / 2}`;
      }
      overlay.append(svg('path', { d, class: 'edge', 'marker-end': 'url(#arrowhead)' }));
    }
  }

  const ro = new ResizeObserver(() => requestAnimationFrame(drawEdges));
  ro.observe(container);

  return {
    update(g) {
      const k = JSON.stringify([(g.operators || []).map((o) => [o.id, o.kind, o.label]), g.edges]);
      if (k !== key) {
        key = k;
        build(g);
      }
      for (const op of g.operators || []) {
        const b = boxes.get(op.id);
        if (!b) continue;
        const { m } = b;
        setText(m.in.v, fmtRate(op.in_per_s));
        setText(m.out.v, fmtRate(op.out_per_s));
        setText(m.busy.v, fmtShare(op.busy_share));
        setText(m.blocked.v, fmtShare(op.blocked_share));
        b.busyBar.firstChild.style.width = `${isNum(op.busy_share) ? Math.min(100, op.busy_share * 100) : 0}%`;
        b.blockedBar.firstChild.style.width = `${isNum(op.blocked_share) ? Math.min(100, op.blocked_share * 100) : 0}%`;
        setText(m.dead.v, fmtNum(op.dead_lettered_total));
        setText(m.late.v, fmtNum(op.late_total));
        setText(m.queued.v, fmtNum(op.queued));
        // Counters are shown when they say something; queued whenever the server knows it.
        m.dead.row.hidden = !(isNum(op.dead_lettered_total) && op.dead_lettered_total > 0);
        m.late.row.hidden = !(isNum(op.late_total) && op.late_total > 0);
        m.queued.row.hidden = !isNum(op.queued);
        b.box.title = `${op.id}: ${fmtNum(op.records_in_total)} records in, ${fmtNum(op.records_out_total)} out in total`;
        b.box.classList.toggle('hot', isNum(op.busy_share) && op.busy_share >= 0.8);
        b.box.classList.toggle('backpressured', isNum(op.blocked_share) && op.blocked_share >= 0.2);
      }
      requestAnimationFrame(drawEdges);
    },
    destroy() {
      ro.disconnect();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Device view: two uPlot charts, observed at the window's end, predicted at the end of the
// window it forecasts (window_end + window_ms).

const CHARTS = [
  { key: 'temperature', title: 'Temperature', unit: '°C', digits: 2 },
  { key: 'humidity', title: 'Humidity', unit: '%RH', digits: 1 },
];

function chartData(points, windowMs, key) {
  const obs = new Map();
  const pred = new Map();
  for (const p of points) {
    const end = p.window_end_ms;
    if (!isNum(end)) continue;
    const o = p.observed ? p.observed[key] : null;
    const f = p.predicted ? p.predicted[key] : null;
    if (isNum(o)) obs.set(end, o);
    if (isNum(f) && isNum(windowMs)) pred.set(end + windowMs, f);
  }
  const xs = [...new Set([...obs.keys(), ...pred.keys()])].sort((a, b) => a - b);
  return [xs.map((x) => x / 1000), xs.map((x) => obs.get(x) ?? null), xs.map((x) => pred.get(x) ?? null)];
}

// x-axis ticks as local 24-hour times; seconds only when ticks are closer than a minute, the
// date under the first tick and wherever the day changes.
function timeTicks(u, splits, axisIdx, space, incr) {
  let prevDay = null;
  return splits.map((s) => {
    if (s == null) return null;
    const d = new Date(s * 1000);
    let t = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    if (incr < 60) t += `:${pad2(d.getSeconds())}`;
    const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    if (day !== prevDay) t += `\n${day}`;
    prevDay = day;
    return t;
  });
}

function makeChart(el, spec, data) {
  const fmt = (u, v) => (v == null ? DASH : `${v.toFixed(spec.digits)} ${spec.unit}`);
  const opts = {
    width: Math.max(300, el.clientWidth),
    height: 260,
    scales: { x: { time: true } },
    series: [
      { label: 'time', value: (u, v) => (v == null ? DASH : fmtTime(v * 1000)) },
      { label: 'observed', stroke: '#1d64d8', width: 2, spanGaps: true, value: fmt, points: { size: 4 } },
      { label: 'predicted', stroke: '#d9480f', width: 2, dash: [6, 4], spanGaps: true, value: fmt, points: { size: 4 } },
    ],
    axes: [{ values: timeTicks }, { label: spec.unit, size: 56 }],
    cursor: { drag: { x: true, y: false } },
  };
  return new uPlot(opts, data, el);
}

function deviceView(ctx, root, job, device) {
  setCrumbs([['Jobs', '#/'], [`Job ${job}`, jobHref(job)], [`Device ${device}`, null]]);
  const count = h('span', { id: 'point-count', text: '…' });
  const windowInfo = h('span', { class: 'muted' });
  const next = h('p', { id: 'next-forecast', class: 'small' });
  const accuracy = h('p', { id: 'device-accuracy', class: 'small' });
  const holders = CHARTS.map((c) => ({ spec: c, el: h('div', { class: 'chart', id: `chart-${c.key}` }), chart: null }));

  root.append(
    h('h2', { class: 'page-title' }, 'Device ', h('code', { text: device })),
    section(
      'Observed vs predicted',
      h('p', { class: 'count-line' }, count, windowInfo),
      h(
        'p',
        { class: 'note small' },
        'Data comes from the predicData topic read with read_committed: it arrives in checkpoint-sized steps, with exactly-once output. ' +
          'A device appears only once it has 60 windows of history and gets its first forecast. ' +
          'Each prediction is the forecast for the next window, drawn at that window’s end (dashed); the last one is the forecast beyond the last observation.',
      ),
      next,
      accuracy,
      holders.map((x) => h('div', { class: 'chart-block' }, h('h3', { text: `${x.spec.title} (${x.spec.unit})` }), x.el)),
    ),
  );

  let lastKey = null;
  const ro = new ResizeObserver(() =>
    requestAnimationFrame(() => {
      for (const x of holders) if (x.chart && x.el.clientWidth > 0) x.chart.setSize({ width: x.el.clientWidth, height: 260 });
    }),
  );
  holders.forEach((x) => ro.observe(x.el));

  return {
    destroy() {
      ro.disconnect();
      for (const x of holders) if (x.chart) x.chart.destroy();
    },
    async refresh() {
      const d = await api(`/v1/jobs/${enc(job)}/devices/${enc(device)}`);
      if (!ctx.alive()) return;
      const points = Array.isArray(d.points) ? d.points : [];
      setText(count, `${points.length} windows`);
      setText(windowInfo, isNum(d.window_ms) ? ` of ${fmtDurationMs(d.window_ms)} each` : '');
      const last = points[points.length - 1];
      if (last && last.predicted) {
        const parts = CHARTS.map((c) => (isNum(last.predicted[c.key]) ? `${last.predicted[c.key].toFixed(c.digits)} ${c.unit}` : null)).filter(Boolean);
        setText(
          next,
          `Last window ended ${fmtTime(last.window_end_ms)}; forecast for the window ending ${fmtTime(last.window_end_ms + (d.window_ms || 0))}: ${parts.join(', ') || DASH}`,
        );
      } else setText(next, '');
      const a = d.accuracy;
      const feats = a ? CHARTS.filter((c) => a[c.key] && isNum(a[c.key].model) && isNum(a[c.key].persistence)) : [];
      setText(
        accuracy,
        feats.length
          ? `Rolling mean absolute error over ${fmtNum(a.scored)} scored forecasts (half-life ${fmtNum(a.half_life)} windows): ` +
              feats
                .map((c) => `${c.title.toLowerCase()} model ${a[c.key].model.toFixed(c.digits)} vs persistence ${a[c.key].persistence.toFixed(c.digits)} ${c.unit}`)
                .join('; ')
          : '',
      );
      // Leave the charts (and any zoom) alone when nothing changed.
      const key = JSON.stringify([d.window_ms, points.length, last]);
      if (key === lastKey) return;
      lastKey = key;
      for (const x of holders) {
        const data = chartData(points, d.window_ms, x.spec.key);
        if (x.chart) x.chart.setData(data);
        else x.chart = makeChart(x.el, x.spec, data);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Router and polling

let current = null;
let generation = 0;
let timer = null;
let stopped = false;
let running = false;

function stopPolling() {
  stopped = true;
  generation++;
  clearTimeout(timer);
}

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(safeDecode);
  if (parts[0] === 'jobs' && parts.length === 2) return { view: 'job', job: parts[1] };
  if (parts[0] === 'jobs' && parts.length === 4 && parts[2] === 'devices') return { view: 'device', job: parts[1], device: parts[3] };
  return { view: 'overview' };
}

function route() {
  if (stopped) return;
  clearTimeout(timer);
  const gen = ++generation;
  if (current && current.destroy) current.destroy();
  clearError();
  const r = parseRoute();
  const ctx = { alive: () => gen === generation };
  els.main.replaceChildren();
  if (r.view === 'job') {
    document.title = `${r.job} · Flowcast`;
    current = jobView(ctx, els.main, r.job);
  } else if (r.view === 'device') {
    document.title = `${r.device} · ${r.job} · Flowcast`;
    current = deviceView(ctx, els.main, r.job, r.device);
  } else {
    document.title = 'Flowcast';
    current = overviewView(ctx, els.main);
  }
  window.scrollTo(0, 0);
  tick(gen);
}

async function tick(gen) {
  if (gen !== generation) return;
  clearTimeout(timer);
  if (!document.hidden) {
    running = true;
    try {
      await current.refresh();
      if (gen === generation) {
        clearError();
        els.updated.textContent = `updated ${fmtTime(Date.now())}`;
      }
    } catch (e) {
      if (gen === generation) showError(e);
    } finally {
      running = false;
    }
  }
  if (gen === generation) {
    clearTimeout(timer);
    timer = setTimeout(() => tick(gen), POLL_MS);
  }
}

function start() {
  els.main = document.getElementById('main');
  els.crumbs = document.getElementById('crumbs');
  els.error = document.getElementById('error');
  els.updated = document.getElementById('last-update');
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !stopped && !running) {
      tick(generation);
    }
  });
  route();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
