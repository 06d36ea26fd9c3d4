// Tarmac web installer: plain JavaScript, no build step. Renders the JSON API and the SSE
// event stream (the same typed events the terminal renders). Renders are batched: at most
// one every 100 ms, whatever the event rate.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const RENDER_GAP_MS = 100;
const PAGE_SIZE = 50;
const ROLE_ORDER = { master: 0, agent: 1, agent_public: 2 };
const ROLE_LABEL = { master: 'master', agent: 'agent', agent_public: 'public agent' };
const BAD = ['failed', 'unreachable', 'timed-out', 'cancelled', 'skipped', 'unfinished', 'reverted', 'unconfirmed', 'untouched'];
const STATUS_ORDER = { failed: 0, unreachable: 0, 'timed-out': 0, reverted: 0, unconfirmed: 0, cancelled: 1, skipped: 1, unfinished: 1, untouched: 1, running: 2, pending: 3, ok: 4, unchanged: 4 };
// Runs made of several fleets (one per wave and step): rows keep each host's latest state.
const DAYTWO = ['backup', 'restore', 'remove-hosts', 'replace-master'];
const MULTI_FLEET = ['upgrade', 'rollback'];

const STAGES = {
  preflight: {
    title: 'Preflight', verb: 'Run preflight', prev: null, next: 'deploy',
    desc: 'Checks every host for its role before anything is installed: OS and architecture, systemd, free disk, ports, clock offset, sudo and required commands.',
  },
  deploy: {
    title: 'Deploy', verb: 'Deploy', prev: 'preflight', next: 'postflight',
    desc: 'Every host pulls the artifacts from this machine, verifies hashes and the signature, and installs its role. Hosts already on the package list are reported unchanged.',
  },
  postflight: {
    title: 'Postflight', verb: 'Run postflight', prev: 'deploy', next: 'done',
    desc: 'Waits until every node check and the cluster checks pass (etcd quorum, prometheus sees every node), up to the deadline.',
  },
  status: {
    title: 'Audit', verb: 'Run audit', prev: null, next: null, back: 'done',
    desc: 'Compares every host with the cluster package list: active generation and packages, unit states, failed checks. Drift is flagged.',
  },
  uninstall: {
    title: 'Uninstall', verb: 'Uninstall…', prev: null, next: null, back: 'done',
    desc: 'Stops and removes everything Tarmac put on the hosts. State directories are kept unless you purge them.',
  },
  upgrade: {
    title: 'Upgrade', verb: 'Start upgrade', prev: null, next: null, back: 'done',
    desc: 'Rolls the cluster to the package list genconf wrote last: masters one at a time, each gated on the cluster checks, then agents in batches. Each host fetches first, switches atomically and reverts by itself unless confirmed in time.',
  },
  rollback: {
    title: 'Rollback', verb: 'Roll back…', prev: null, next: null, back: 'done',
    desc: 'Brings every host back to its previous generation (or the one you name), in the same order as an upgrade: masters one at a time gated on the cluster checks, then agents in batches.',
  },
  daytwo: {
    title: 'Day two', verb: 'Day two', prev: null, next: null, back: 'done',
    desc: 'Back up and restore the quorum store, remove hosts, replace a master. After a membership change config.yaml is edited, genconf runs again, new hosts install and the others roll with a confirm-or-revert upgrade, then postflight.',
  },
  'install-prereqs': {
    title: 'Install prerequisites', verb: 'Install prerequisites', prev: null, next: null, back: 'preflight',
    desc: 'Detects apt, dnf or yum on every host and installs what the distribution needs.',
  },
};

const S = {
  state: null,          // StateView from /api/v1/state, kept current by events
  seq: 0,               // last event id folded into state
  offset: 0,            // server clock - browser clock (ms)
  loading: false,
  buffer: [],
  es: null,
  connected: false,
  page: '',
  schema: null,
  config: null,
  journals: {},         // stage -> run view built from its journal
  filters: { role: '', status: '', q: '' },
  pageNo: 0,
  override: {},
  renderTimer: null,
  lastRender: 0,
  validateTimer: null,
  validateSeq: 0,
};

// ---------------------------------------------------------------------------------------
// helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
const now = () => Date.now() + S.offset;

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + ' s';
  const m = Math.floor(s / 60);
  return m + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
}

function fmtTime(unixMs) {
  if (!unixMs) return '';
  return new Date(unixMs).toLocaleString();
}

async function api(method, path, body) {
  const opt = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (method !== 'GET') opt.headers['X-Tarmac-CSRF'] = CSRF;
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch('/api/v1' + path, opt);
  } catch (e) {
    return { ok: false, status: 0, data: { error: 'the server cannot be reached: ' + e.message } };
  }
  const ct = r.headers.get('content-type') || '';
  const data = ct.includes('json') ? await r.json() : await r.text();
  if (r.status === 401) banner('Your session has ended (signed out, idle too long, or older than its lifetime). Open a new login URL from the terminal running `tarmac web` (kill -USR1 <pid> prints one).', 'error');
  return { ok: r.ok, status: r.status, data };
}

function errorText(data) {
  if (!data) return 'unknown error';
  if (typeof data === 'string') return data;
  let s = data.error || 'error';
  if (data.errors && Object.keys(data.errors).length) {
    s += '\n' + Object.entries(data.errors).map(([k, m]) => '• ' + k + ': ' + m).join('\n');
  }
  return s;
}

let toastTimer = null;
function toast(text, kind) {
  const t = $('#toast');
  t.textContent = text;
  t.className = 'toast ' + (kind || 'info');
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, kind === 'error' ? 9000 : 4000);
}

function banner(text, kind) {
  const b = $('#banner');
  if (!text) { b.hidden = true; return; }
  b.textContent = text;
  b.className = 'banner ' + (kind || 'warn');
  b.hidden = false;
}

function modal(title, body) {
  $('#modal-title').textContent = title;
  const mb = $('#modal-body');
  mb.replaceChildren(body);
  $('#modal').hidden = false;
}

function closeModal() { $('#modal').hidden = true; }

// ---------------------------------------------------------------------------------------
// the event stream and the run state: host rows come from the server's fold (each entry
// carries the rows it changed); only run-level fields are kept here


function label(o) {
  if (!o) return 'unfinished';
  return o.status === 'timed_out' ? 'timed-out' : o.status;
}

function describe(o) {
  if (!o) return null;
  switch (o.status) {
    case 'failed':
      if (o.exit_code !== undefined && o.exit_code !== null) return 'exit ' + o.exit_code + ': ' + o.message.trim();
      if (o.signal) return 'signal ' + o.signal + ': ' + o.message.trim();
      return o.message.trim();
    case 'unreachable': return o.message;
    case 'timed_out': return 'timed out after ' + (o.after_ms / 1000).toFixed(1) + 's';
    case 'skipped': return o.reason;
    default: return null;
  }
}

function indexRun(run) {
  run._index = {};
  (run.hosts || []).forEach((r, i) => { run._index[r.host] = i; });
}

function multiFleet(run) {
  return run.state === 'running' && MULTI_FLEET.includes(run.stage);
}

function applyEvent(run, ev) {
  switch (ev.type) {
    case 'stage_started':
      // A rolling run's fleets keep the run's stage (a rollback's fleets may say `upgrade`).
      if (!(multiFleet(run) && MULTI_FLEET.includes(ev.stage))) run.stage = ev.stage;
      break;
    case 'stage_finished':
      if (!multiFleet(run)) run.summary = ev.summary;
      break;
    case 'notice':
      run.notices.push({ level: ev.level, message: ev.message, unix_ms: now() });
      if (run.notices.length > 100) run.notices.shift();
      break;
    default:
      break;
  }
}

function applyRun(run, c) {
  if (c.state === 'started') {
    for (const k of Object.keys(run)) delete run[k];
    Object.assign(run, {
      state: 'running', stage: c.stage, retry: c.retry, started_unix_ms: c.started_unix_ms,
      run_id: null, base_run_id: c.base_run_id || null, finished_unix_ms: null, summary: null, error: null, hosts: [], checks: {},
      report: null, notices: [], _index: {}, phase: null, fleets: 0,
    });
  } else if (c.state === 'finished') {
    run.state = c.error ? 'error' : 'finished';
    run.finished_unix_ms = c.finished_unix_ms;
    if (c.summary) run.summary = c.summary;
    run.error = c.error || null;
    if (c.checks) run.checks = c.checks;
    run.report = c.report || null;
  }
}

/** The server's rows an entry changed (`all`: the whole list). */
function applyRows(run, d) {
  if (!d) return;
  if (d.all) { run.hosts = []; run._index = {}; }
  for (const r of d.rows) {
    const i = run._index[r.host];
    if (i === undefined) { run._index[r.host] = run.hosts.length; run.hosts.push(r); } else run.hosts[i] = r;
  }
  run.phase = d.phase;
  run.fleets = d.fleets;
  run.run_id = d.run_id;
}

function ingest(en) {
  if (S.loading || !S.state) { S.buffer.push(en); return; }
  if (en.id <= S.seq) return;
  S.seq = en.id;
  if (en.kind === 'event') {
    applyEvent(S.state.run, en.data);
  } else {
    applyRun(S.state.run, en.data);
    if (en.data.state === 'finished') setTimeout(loadState, 200);
  }
  applyRows(S.state.run, en.rows);
}

async function loadState() {
  S.loading = true;
  const r = await api('GET', '/state');
  if (r.ok) {
    S.state = r.data;
    S.seq = r.data.seq;
    S.offset = r.data.now_unix_ms - Date.now();
    indexRun(S.state.run);
    // Journals of finished runs never change; drop the rest so they are read again.
    for (const k of Object.keys(S.journals)) {
      if (!(k.startsWith('run:') && S.journals[k].state === 'finished')) delete S.journals[k];
    }
  }
  S.loading = false;
  const buf = S.buffer;
  S.buffer = [];
  for (const en of buf) ingest(en);
  if (!S.es) connect();
  schedule(true);
}

function connect() {
  const es = new EventSource('/api/v1/events?after=' + S.seq);
  es.addEventListener('open', () => { S.connected = true; renderConn(); });
  es.addEventListener('error', () => { S.connected = false; renderConn(); });
  es.addEventListener('batch', (e) => {
    for (const en of JSON.parse(e.data)) ingest(en);
    schedule();
  });
  es.addEventListener('reset', () => { loadState(); });
  S.es = es;
}

// Render at most once per RENDER_GAP_MS.
function schedule(full) {
  if (full) S.fullRender = true;
  if (S.renderTimer) return;
  const wait = Math.max(0, RENDER_GAP_MS - (Date.now() - S.lastRender));
  S.renderTimer = setTimeout(() => {
    S.renderTimer = null;
    S.lastRender = Date.now();
    update();
  }, wait);
}

function renderConn() {
  const c = $('#conn');
  c.textContent = S.connected ? 'live' : 'reconnecting…';
  c.className = 'conn ' + (S.connected ? 'ok' : 'bad');
}

// ---------------------------------------------------------------------------------------
// navigation

function stageOk(stage) {
  if (MULTI_FLEET.includes(stage)) {
    // The last upgrade/rollback finished and every host is on its target.
    const u = S.state && S.state.upgrade;
    return !!(u && u.operation === stage && u.finished && !u.stopped && u.hosts.length
      && u.hosts.every((x) => x.status === 'ok' || x.status === 'unchanged'));
  }
  const st = S.state && S.state.stages[stage];
  if (!st || !st.ok) return false;
  // An uninstall after deploy/postflight undoes them.
  const un = S.state.stages.uninstall;
  if ((stage === 'deploy' || stage === 'postflight') && un && un.started_unix >= st.started_unix && un.run_id !== st.run_id) return false;
  return true;
}

function route() {
  const page = (location.hash.replace(/^#\/?/, '') || 'configure').split('?')[0];
  return ['configure', 'preflight', 'deploy', 'postflight', 'done', 'status', 'uninstall', 'install-prereqs', 'upgrade', 'rollback', 'daytwo'].includes(page) ? page : 'configure';
}

async function navigate() {
  const page = route();
  S.page = page;
  S.pageNo = 0;
  S.filters = { role: '', status: '', q: '' };
  const main = $('#page');
  main.dataset.page = page;
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  if (!S.state) await loadState();
  if (page === 'configure') await pageConfigure(main);
  else if (page === 'done') await pageDone(main);
  else pageStage(main, page);
  update();
}

function renderNav() {
  const order = ['configure', 'preflight', 'deploy', 'postflight', 'done'];
  for (const a of $$('#steps a')) {
    const p = a.dataset.page;
    a.classList.toggle('active', p === S.page);
    let st = '';
    if (p === 'configure') st = S.state && S.state.serve ? 'ok' : '';
    else if (STAGES[p]) {
      const r = S.state && S.state.stages[p];
      st = r ? (r.ok ? 'ok' : 'bad') : '';
      const run = S.state && S.state.run;
      if (run && run.state === 'running' && run.stage === p) st = 'running';
    } else if (p === 'done') st = stageOk('postflight') ? 'ok' : '';
    a.dataset.status = st;
    void order;
  }
}

function update() {
  if (!S.state) return;
  renderConn();
  renderNav();
  const busy = S.state.busy;
  const run = S.state.run;
  if (busy && busy.by !== 'this server' && !(run && run.state === 'running')) {
    const hd = busy.holder;
    banner('Another tarmac run holds the run lock' + (hd ? ': pid ' + hd.pid + ' on ' + hd.host + ' (' + hd.command + ')' : '') + '. Stages cannot start until it finishes.', 'warn');
  } else if (run && run.state === 'running' && S.page !== run.stage && !(S.page === 'configure' && run.stage === 'genconf')) {
    const b = $('#banner');
    b.replaceChildren(document.createTextNode((STAGES[run.stage] ? STAGES[run.stage].title : run.stage) + ' is running. '), h('a', { href: '#/' + run.stage }, 'Watch it'));
    b.className = 'banner info';
    b.hidden = false;
  } else {
    banner(null);
  }
  if (STAGES[S.page]) updateStage(S.page);
  else if (S.page === 'configure') updateGenconf();
  S.fullRender = false;
}

// ---------------------------------------------------------------------------------------
// stage pages

/** A run's journal as a view (loaded once, in the background). */
function journalView(runId) {
  const key = 'run:' + runId;
  if (S.journals[key]) return S.journals[key];
  if (!S.journals['loading:' + runId]) {
    S.journals['loading:' + runId] = true;
    api('GET', '/runs/' + encodeURIComponent(runId)).then((r) => {
      if (r.ok) {
        S.journals[key] = fromJournal(r.data);
        schedule();
      }
    });
  }
  return null;
}

/** A retry re-runs the failed hosts of an earlier run: show every host of that run, with the
 * retried ones replaced by their live rows. */
function mergeRetry(base, run) {
  const live = {};
  for (const r of run.hosts || []) live[r.host] = r;
  const hosts = base.hosts.map((r) => live[r.host] || Object.assign({}, r, { run_id: base.run_id }));
  for (const r of run.hosts || []) if (!base.hosts.some((b) => b.host === r.host)) hosts.push(r);
  return Object.assign({}, run, { hosts });
}

function viewFor(stage) {
  const run = S.state.run;
  if (stage === 'daytwo') return isDayTwoRun(run) && run.state !== 'idle' ? run : null;
  if (run && run.stage === stage && run.state !== 'idle') {
    if (run.base_run_id) {
      const base = journalView(run.base_run_id);
      if (base) return mergeRetry(base, run);
    }
    return run;
  }
  if (MULTI_FLEET.includes(stage)) return fromUpgradeState(S.state.upgrade, stage);
  const last = S.state.stages[stage];
  if (!last) return null;
  return journalView(last.run_id);
}

/** The last upgrade or rollback as genconf/state/upgrade.json records it. */
function fromUpgradeState(u, stage) {
  if (!u || u.operation !== stage) return null;
  return {
    state: u.finished ? 'finished' : 'unfinished', stage, run_id: u.run_id || null,
    summary: null, checks: {}, notices: [], report: null, fromJournal: true,
    error: u.stopped ? stage + ' stopped: ' + u.stopped : null,
    started_unix_ms: u.started_unix ? u.started_unix * 1000 : null, finished_unix_ms: null,
    target: u.target,
    hosts: u.hosts.map((x) => ({ host: x.host, role: x.role, status: x.status, step: null, last_line: null, failed_step: null, message: null })),
  };
}

function fromJournal(rec) {
  // The server folds the journal into rows with the same HostRows fold as the live view.
  const hosts = (rec.rows || []).map((r) => Object.assign({}, r, {
    tail: ((rec.hosts || {})[r.host] || {}).tail || [],
  }));
  return {
    state: rec.finished_unix ? 'finished' : 'unfinished', stage: rec.stage, run_id: rec.run_id,
    summary: rec.summary || null, hosts, checks: {}, notices: [], error: null, report: null,
    started_unix_ms: rec.started_unix * 1000, finished_unix_ms: rec.finished_unix ? rec.finished_unix * 1000 : null,
    fromJournal: true,
  };
}

function sortRows(rows) {
  return rows.slice().sort((a, b) =>
    (STATUS_ORDER[a.status] ?? 5) - (STATUS_ORDER[b.status] ?? 5)
    || (ROLE_ORDER[a.role] ?? 9) - (ROLE_ORDER[b.role] ?? 9)
    || a.host.localeCompare(b.host, undefined, { numeric: true }));
}

function statusClass(s) {
  if (s === 'ok' || s === 'unchanged') return 'ok';
  if (s === 'running') return 'running';
  if (s === 'pending') return 'pending';
  return 'bad';
}

function canRun(stage) {
  const info = STAGES[stage];
  if (stage === 'daytwo') return { ok: true };
  if (!S.state.serve && stage !== 'uninstall' && stage !== 'status' && stage !== 'install-prereqs' && stage !== 'rollback') {
    return { ok: false, why: 'Run genconf first (Configure → Save & generate).' };
  }
  if (S.state.serve && S.state.serve.matches_config === false && ['preflight', 'deploy', 'postflight', 'upgrade'].includes(stage)) {
    return { ok: false, why: 'config.yaml changed since genconf/serve/ was generated: Save & generate again.' };
  }
  if (info.prev && !stageOk(info.prev) && !S.override[stage]) {
    return { ok: false, why: STAGES[info.prev].title + ' has not passed on every host.', overridable: true };
  }
  return { ok: true };
}

function pageStage(main, stage) {
  const info = STAGES[stage];
  const opts = h('div', { class: 'opts' });
  if (stage === 'preflight') {
    opts.append(h('label', { class: 'inline' }, 'Ignore checks ', h('input', { id: 'opt-ignore', type: 'text', placeholder: 'e.g. clock, disk', size: 22 })));
  }
  if (stage === 'preflight' || stage === 'deploy') {
    opts.append(h('label', { class: 'inline' }, h('input', { id: 'opt-push', type: 'checkbox' }), ' push over SSH (hosts cannot reach this machine)'));
  }
  if (stage === 'postflight') {
    opts.append(h('label', { class: 'inline' }, 'Wait up to ', h('input', { id: 'opt-timeout', type: 'text', value: '900', size: 5, inputmode: 'numeric' }), ' s'));
  }
  if (stage === 'uninstall') {
    opts.append(h('label', { class: 'inline' }, h('input', { id: 'opt-purge', type: 'checkbox' }), ' also delete state directories (purge)'));
  }
  if (stage === 'rollback') {
    opts.append(h('label', { class: 'inline' }, 'To generation ', h('input', { id: 'opt-to', type: 'text', placeholder: 'previous', size: 8, inputmode: 'numeric' })));
  }
  if (MULTI_FLEET.includes(stage)) {
    opts.append(
      h('label', { class: 'inline', title: 'Agents at once: a number or a percentage of the agents. Masters always go one at a time.' }, 'Batch ', h('input', { id: 'opt-batch', type: 'text', value: (S.state && S.state.default_batch) || '', size: 5 })),
      h('label', { class: 'inline', title: 'Agents that may fail before the run stops: a number or a percentage.' }, 'Max failures ', h('input', { id: 'opt-max-failures', type: 'text', value: '0', size: 4 })),
      h('label', { class: 'inline', title: 'How long node and cluster checks may take to pass after a switch.' }, 'Checks within ', h('input', { id: 'opt-check-timeout', type: 'text', value: '300', size: 5, inputmode: 'numeric' }), ' s'));
  }
  if (stage === 'daytwo') {
    // The rollout after a membership change (remove hosts, replace master).
    opts.append(
      h('label', { class: 'inline', title: 'Rollout after a membership change: agents at once, a number or a percentage. Masters always go one at a time.' }, 'Batch ', h('input', { id: 'dt-batch', type: 'text', value: (S.state && S.state.default_batch) || '', size: 5 })),
      h('label', { class: 'inline', title: 'How long node and cluster checks may take to pass during the rollout.' }, 'Checks within ', h('input', { id: 'dt-check-timeout', type: 'text', value: '300', size: 5, inputmode: 'numeric' }), ' s'),
      h('label', { class: 'inline', title: 'A switched host reverts by itself unless the installer confirms it within this window.' }, 'Confirm window ', h('input', { id: 'dt-confirm-window', type: 'text', value: '120', size: 5, inputmode: 'numeric' }), ' s'),
      h('label', { class: 'inline', title: 'Do not take a snapshot of the quorum store before the rollout touches masters.' }, h('input', { id: 'dt-no-backup', type: 'checkbox' }), ' no snapshot first'));
  }
  if (stage === 'upgrade') {
    opts.append(
      h('label', { class: 'inline', title: 'A switched host reverts by itself unless the installer confirms it within this window.' }, 'Confirm window ', h('input', { id: 'opt-confirm-window', type: 'text', value: '120s', size: 6 })),
      h('label', { class: 'inline', title: 'Continue the interrupted upgrade recorded in genconf/state/upgrade.json.' }, h('input', { id: 'opt-resume', type: 'checkbox' }), ' resume the interrupted upgrade'));
  }
  const actions = h('div', { class: 'actions' },
    stage === 'daytwo' ? null : h('button', { id: 'run-stage', class: 'primary', onclick: () => startStage(stage, false) }, info.verb),
    stage === 'upgrade' ? h('button', { id: 'show-plan', onclick: showPlan }, 'Plan…') : null,
    stage === 'daytwo' ? dayTwoActions() : null,
    h('button', { id: 'retry-failed', hidden: MULTI_FLEET.includes(stage) || stage === 'daytwo', onclick: () => startStage(stage, true) }, 'Retry failed hosts'),
    h('button', { id: 'cancel-run', class: 'danger', onclick: cancelRun }, 'Cancel run'),
    stage === 'preflight' ? h('button', { id: 'prereqs', class: 'ghost', onclick: () => { location.hash = '#/install-prereqs'; } }, 'Install prerequisites…') : null,
    opts);
  const filters = h('div', { class: 'filters' },
    h('label', {}, 'Role ', h('select', { id: 'flt-role', onchange: (e) => { S.filters.role = e.target.value; S.pageNo = 0; schedule(); } },
      h('option', { value: '' }, 'all'), h('option', { value: 'master' }, 'master'), h('option', { value: 'agent' }, 'agent'), h('option', { value: 'agent_public' }, 'public agent'))),
    h('label', {}, 'Status ', h('select', { id: 'flt-status', onchange: (e) => { S.filters.status = e.target.value; S.pageNo = 0; schedule(); } },
      h('option', { value: '' }, 'all'), h('option', { value: 'bad' }, 'not ok'), h('option', { value: 'running' }, 'running'), h('option', { value: 'pending' }, 'pending'), h('option', { value: 'ok' }, 'ok'))),
    h('label', {}, 'Host ', h('input', { id: 'flt-q', type: 'search', placeholder: 'filter', size: 16, oninput: (e) => { S.filters.q = e.target.value.trim(); S.pageNo = 0; schedule(); } })));
  // Rows, pager and buttons are built once and updated in place, so a click never lands on
  // an element a render just replaced.
  const tbody = h('tbody', {});
  for (let i = 0; i < PAGE_SIZE; i++) {
    tbody.append(h('tr', { hidden: true },
      h('td', { class: 'mono' }), h('td', {}), h('td', {}), h('td', {}, h('span', { class: 'pill' })),
      h('td', { class: 'num' }), h('td', { class: 'last' }),
      h('td', {}, h('button', { class: 'link host-log', onclick: (e) => showHostRow(e.target.closest('tr').dataset.host) }, 'log'))));
  }
  tbody.append(h('tr', { id: 'empty-row' }, h('td', { colspan: 7, class: 'muted' }, 'No hosts yet.')));
  const next = info.next
    ? h('div', { id: 'next' },
      h('button', { id: 'next-stage', class: 'primary', disabled: true, onclick: () => { location.hash = '#/' + info.next; } }, 'Next: ' + (info.next === 'done' ? 'Done' : STAGES[info.next].title) + ' →'),
      h('span', { id: 'next-note', class: 'muted' }),
      h('button', { id: 'next-override', class: 'link', onclick: () => { S.override[info.next] = true; location.hash = '#/' + info.next; } }, '(continue anyway)'))
    : h('div', { id: 'next' }, h('a', { href: '#/' + info.back }, '← back to ' + (info.back === 'done' ? 'Done' : STAGES[info.back].title)));
  main.replaceChildren(
    stage === 'daytwo' ? dayTwoCard() : '',
    h('section', { class: 'card' },
      h('h1', {}, info.title),
      h('p', { class: 'muted' }, info.desc),
      h('div', { id: 'gate', class: 'gate', hidden: true }),
      actions,
      h('div', { id: 'run-status', class: 'run-status' }),
      h('div', { id: 'run-error', class: 'run-error', hidden: true }),
      h('div', { id: 'bars', class: 'bars' })),
    h('section', { class: 'card' },
      h('div', { class: 'table-head' }, h('h2', {}, 'Hosts'), filters),
      h('div', { class: 'table-wrap' },
        h('table', { id: 'hosts', class: 'hosts' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Host'), h('th', {}, 'Role'), h('th', {}, 'Step'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Elapsed'), h('th', {}, 'Last output'), h('th', {}, ''))),
          tbody)),
      h('div', { id: 'pager', class: 'pager' },
        h('span', { id: 'pager-info', class: 'muted' }),
        h('button', { id: 'pager-prev', class: 'ghost', onclick: () => { S.pageNo = Math.max(0, S.pageNo - 1); schedule(); } }, '‹ prev'),
        h('span', { id: 'pager-page' }),
        h('button', { id: 'pager-next', class: 'ghost', onclick: () => { S.pageNo++; schedule(); } }, 'next ›'))),
    h('section', { class: 'card next-card' }, next));
}

/** Set a cell's text only when it changed. */
function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

function setClass(el, cls) {
  if (el.className !== cls) el.className = cls;
}

function showHostRow(host) {
  const view = viewFor(S.page);
  if (!view) return;
  const r = (view.hosts || []).find((x) => x.host === host);
  if (r) showHost(view, r);
}

function updateStage(stage) {
  const main = $('#page');
  const info = STAGES[stage];
  const view = viewFor(stage);
  const live = S.state.run;
  const running = live && live.state === 'running';
  const runningHere = running && (live.stage === stage || (stage === 'daytwo' && isDayTwoRun(live)));
  const last = S.state.stages[stage];
  const gate = canRun(stage);
  const busyOther = S.state.busy && S.state.busy.by !== 'this server' && !running;

  main.dataset.runState = view ? view.state : 'idle';
  main.dataset.runId = (view && view.run_id) || '';
  main.dataset.stageOk = stageOk(stage) && !runningHere ? 'true' : 'false';

  const g = $('#gate');
  const gateKey = !gate.ok && !runningHere ? gate.why : '';
  if (g.dataset.key === gateKey) {
    // unchanged
  } else if (gateKey) {
    g.dataset.key = gateKey;
    g.hidden = false;
    const parts = [h('span', {}, gate.why + ' ')];
    if (gate.overridable) {
      parts.push(h('a', { href: '#/' + info.prev }, 'Go to ' + STAGES[info.prev].title));
      parts.push(' or ');
      parts.push(h('button', { id: 'override', class: 'link', onclick: () => { S.override[stage] = true; schedule(); } }, 'run anyway (override)'));
    } else {
      parts.push(h('a', { href: '#/configure' }, 'Go to Configure'));
    }
    g.replaceChildren(...parts);
  } else {
    g.dataset.key = '';
    g.hidden = true;
  }
  $('#run-stage').disabled = running || !gate.ok || busyOther;
  if ($('#show-plan')) $('#show-plan').disabled = running || !S.state.serve;
  $('#retry-failed').disabled = running || busyOther || !last || last.unsuccessful.length === 0;
  $('#retry-failed').textContent = last && last.unsuccessful.length ? 'Retry ' + last.unsuccessful.length + ' failed host' + (last.unsuccessful.length === 1 ? '' : 's') : 'Retry failed hosts';
  $('#cancel-run').hidden = !runningHere;

  // Status line.
  const rs = $('#run-status');
  const err = $('#run-error');
  if (!view) {
    rs.replaceChildren(h('span', { class: 'muted' }, 'Not run yet.'));
    err.hidden = true;
  } else {
    const rows = view.hosts || [];
    const done = rows.filter((r) => r.status !== 'pending' && r.status !== 'running').length;
    const okN = rows.filter((r) => r.status === 'ok' || r.status === 'unchanged').length;
    let text;
    if (view.state === 'running' && MULTI_FLEET.includes(stage)) {
      const step = (view.notices || []).filter((n) => n.message.startsWith(stage + ': step ')).slice(-1)[0];
      text = 'Running: ' + okN + ' of ' + rows.length + ' hosts ' + (stage === 'upgrade' ? 'upgraded' : 'rolled back') + (step ? ' · ' + step.message.slice(stage.length + 2) : '') + (view.phase ? ' · ' + view.phase : '') + ', started ' + fmtTime(view.started_unix_ms);
    } else if (view.state === 'running') text = 'Running' + (view.retry ? ' (retry of failed hosts)' : '') + ': ' + done + ' of ' + rows.length + ' hosts done, started ' + fmtTime(view.started_unix_ms);
    else if (view.state === 'error') text = 'The run stopped with an error.';
    else text = (view.fromJournal ? 'Last run ' : 'Finished: ') + okN + ' of ' + rows.length + ' hosts ok' + (view.finished_unix_ms ? ' · ' + fmtTime(view.finished_unix_ms) : '');
    const cls = view.state === 'running' ? 'running' : (view.state === 'finished' && okN === rows.length && rows.length > 0 ? 'ok' : 'bad');
    rs.replaceChildren(h('span', { class: 'pill ' + cls }, view.state === 'running' ? 'running' : (cls === 'ok' ? 'all ok' : (view.state === 'unfinished' ? 'unfinished' : 'not ok'))), ' ', text,
      view.run_id ? h('span', { class: 'muted small' }, ' · run ' + view.run_id) : null);
    const stopped = view.report && view.report.state && view.report.state.stopped;
    const errText = view.error || (stopped ? stage + ' stopped: ' + stopped + '\nHosts not ok kept (or went back to) their previous generation: fix the cause, then start again.' : null);
    if (errText) {
      err.hidden = false;
      err.replaceChildren(h('pre', {}, errText));
    } else {
      err.hidden = true;
    }
  }

  // Aggregate bars per role.
  const bars = $('#bars');
  const rows = (view && view.hosts) || [];
  const byRole = {};
  for (const r of rows) {
    const k = r.role || 'other';
    const b = byRole[k] || (byRole[k] = { total: 0, ok: 0, bad: 0, running: 0, pending: 0 });
    b.total++;
    b[statusClass(r.status)]++;
  }
  const barEls = Object.keys(byRole).sort((a, b) => (ROLE_ORDER[a] ?? 9) - (ROLE_ORDER[b] ?? 9)).map((role) => {
    const b = byRole[role];
    const bar = h('div', { class: 'bar', title: b.ok + ' ok, ' + b.bad + ' not ok, ' + b.running + ' running, ' + b.pending + ' pending' });
    for (const k of ['ok', 'bad', 'running', 'pending']) {
      if (!b[k]) continue;
      const seg = h('div', { class: 'seg ' + k });
      seg.style.width = (100 * b[k] / b.total) + '%';
      bar.append(seg);
    }
    return h('div', { class: 'bar-row', dataset: { role } },
      h('div', { class: 'bar-label' }, ROLE_LABEL[role] || role),
      bar,
      h('div', { class: 'bar-count' }, b.ok + '/' + b.total + ' ok' + (b.bad ? ' · ' + b.bad + ' not ok' : '') + (b.running ? ' · ' + b.running + ' running' : '')));
  });
  bars.replaceChildren(...barEls);

  // Table: failed first, filtered, paginated.
  let list = sortRows(rows);
  const f = S.filters;
  if (f.role) list = list.filter((r) => r.role === f.role);
  if (f.status) list = list.filter((r) => statusClass(r.status) === f.status);
  if (f.q) list = list.filter((r) => r.host.includes(f.q));
  const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
  if (S.pageNo >= pages) S.pageNo = pages - 1;
  const slice = list.slice(S.pageNo * PAGE_SIZE, (S.pageNo + 1) * PAGE_SIZE);
  const t = now();
  const trs = $$('#hosts tbody tr:not(#empty-row)');
  trs.forEach((tr, i) => {
    const r = slice[i];
    if (!r) { if (!tr.hidden) tr.hidden = true; return; }
    tr.hidden = false;
    const sc = statusClass(r.status);
    const bad = sc === 'bad';
    setClass(tr, 'st-' + sc);
    if (tr.dataset.host !== r.host) tr.dataset.host = r.host;
    if (tr.dataset.status !== r.status) tr.dataset.status = r.status;
    const td = tr.children;
    setText(td[0], r.host);
    setText(td[1], ROLE_LABEL[r.role] || r.role || '');
    setText(td[2], bad && r.failed_step ? r.failed_step : (r.step || ''));
    const pill = td[3].firstChild;
    setClass(pill, 'pill ' + sc);
    setText(pill, r.status);
    const elapsed = r.status === 'running' && r.started_unix_ms ? t - r.started_unix_ms : r.duration_ms;
    setText(td[4], fmtMs(elapsed));
    const checks = view && view.checks && view.checks[r.host];
    const failedChecks = checks ? checks.filter((c) => !c.passed).map((c) => c.name) : [];
    if (bad && (r.message || failedChecks.length)) {
      setClass(td[5], 'last errmsg');
      setText(td[5], failedChecks.length ? 'failed checks: ' + failedChecks.join(', ') : r.message.split('\n')[0]);
    } else {
      setClass(td[5], 'last');
      const audit = view && view.report && view.report.hosts && view.report.hosts[r.host];
      if (audit && audit.status) {
        const st = audit.status;
        const units = Object.values(st.units || {});
        const pb = audit.placed_by || {};
        const placed = pb.kind === 'entry' ? ' · placed by #' + pb.seq + ' ' + pb.op + (pb.revert ? ' (reverted)' : '')
          : pb.kind === 'self-install' ? ' · self-install' : pb.kind === 'unfinished-run' ? ' · run ' + pb.run : '';
        const standing = audit.standing === 'interim' ? ' · expected for now (unfinished run)' : ' · no drift';
        setText(td[5], 'generation ' + (st.generation || '—') + ' · ' + (st.active || []).length + ' packages · units ' + units.filter((u) => u === 'active').length + '/' + units.length + ' active' + standing + placed);
      } else {
        setText(td[5], r.last_line || '');
      }
    }
    td[5].title = td[5].textContent;
    const btn = td[6].firstChild;
    btn.hidden = !(view && view.run_id);
    setText(btn, bad ? 'error & log' : 'log');
  });
  const empty = $('#empty-row');
  empty.hidden = slice.length > 0;
  setText(empty.firstChild, rows.length ? 'No host matches the filters.' : 'No hosts yet.');
  setText($('#pager-info'), list.length ? (S.pageNo * PAGE_SIZE + 1) + '–' + Math.min(list.length, (S.pageNo + 1) * PAGE_SIZE) + ' of ' + list.length + (list.length !== rows.length ? ' (of ' + rows.length + ')' : '') : '');
  setText($('#pager-page'), ' page ' + (S.pageNo + 1) + ' / ' + pages + ' ');
  $('#pager-prev').disabled = S.pageNo === 0;
  $('#pager-next').disabled = S.pageNo >= pages - 1;

  // Next stage.
  if (info.next) {
    const ok = stageOk(stage) && !runningHere;
    $('#next-stage').disabled = !ok;
    setText($('#next-note'), ok ? ' every host passed.' : ' unlocked when every host passed ');
    $('#next-override').hidden = ok;
  }

  // A running host's elapsed time ticks.
  if (runningHere) setTimeout(() => schedule(), 1000);
}

/** The options of an upgrade or rollback from the page. */
function rollingBody(stage) {
  const body = {
    batch: $('#opt-batch').value.trim() || undefined,
    max_failures: $('#opt-max-failures').value.trim() || '0',
  };
  const ct = $('#opt-check-timeout').value.trim();
  if (ct && !/^\d+$/.test(ct)) { toast('Checks within: a number of seconds', 'error'); return null; }
  if (ct) body.check_timeout_secs = Number(ct);
  if (stage === 'upgrade') {
    body.confirm_window = $('#opt-confirm-window').value.trim() || '120s';
    body.resume = $('#opt-resume').checked;
  } else {
    const to = $('#opt-to').value.trim();
    if (to && !/^\d+$/.test(to)) { toast('To generation: a generation number (or empty for the previous one)', 'error'); return null; }
    if (to) body.to = Number(to);
  }
  return body;
}

async function startRolling(stage) {
  const body = rollingBody(stage);
  if (!body) return;
  if (stage === 'rollback') {
    if (!window.confirm('Switch every host of config.yaml back to ' + (body.to !== undefined ? 'generation ' + body.to : 'its previous generation') + ', masters one at a time?')) return;
    body.confirm = true;
  }
  const r = await api('POST', '/' + stage, body);
  if (!r.ok) {
    toast(errorText(r.data), 'error');
    if (r.status === 409) loadState();
    return;
  }
  toast(STAGES[stage].title + ' started', 'info');
}

async function showPlan() {
  const batch = $('#opt-batch') ? $('#opt-batch').value.trim() : '';
  const pre = h('pre', { id: 'plan-text', class: 'log' }, 'Reading every host\'s active packages…');
  const body = h('div', {}, pre);
  modal('Upgrade plan', body);
  const r = await api('POST', '/upgrade/plan', batch ? { batch } : {});
  if (!r.ok) {
    pre.className = 'err-pre';
    pre.textContent = errorText(r.data);
    return;
  }
  pre.textContent = r.data.text;
  const errs = r.data.hosts.filter((x) => x.error);
  if (errs.length) {
    body.append(h('h3', {}, 'Hosts that could not be inspected'),
      h('ul', { id: 'plan-errors' }, errs.map((x) => h('li', {}, h('code', {}, x.host), ': ' + x.error))));
  }
  body.append(h('div', { class: 'actions' },
    h('button', { id: 'plan-start', class: 'primary', onclick: () => { closeModal(); startRolling('upgrade'); } }, 'Start upgrade')));
}

async function startStage(stage, retry) {
  if (MULTI_FLEET.includes(stage) && !retry) { await startRolling(stage); return; }
  let body = {};
  if (stage === 'uninstall') {
    const purge = $('#opt-purge') && $('#opt-purge').checked;
    if (!window.confirm('Remove Tarmac and stop its services on every host of config.yaml' + (purge ? ', deleting the state directories' : '') + '?')) return;
    body = { confirm: true, purge };
  }
  if (stage === 'preflight' && $('#opt-ignore')) {
    body.ignore_checks = $('#opt-ignore').value.split(',').map((s) => s.trim()).filter(Boolean);
  }
  if ($('#opt-push')) body.push = $('#opt-push').checked;
  if (stage === 'postflight' && $('#opt-timeout')) {
    const n = parseInt($('#opt-timeout').value, 10);
    if (n > 0) body.timeout_secs = n;
  }
  const r = retry ? await api('POST', '/stages/' + stage + '/retry') : await api('POST', '/stages/' + stage, body);
  if (!r.ok) {
    toast(errorText(r.data), 'error');
    if (r.status === 409) loadState();
    return;
  }
  toast((STAGES[stage] ? STAGES[stage].title : stage) + (retry ? ': retrying failed hosts' : ' started'), 'info');
}

async function cancelRun() {
  const r = await api('POST', '/run/cancel');
  if (!r.ok) toast(errorText(r.data), 'error');
}

async function showHost(view, r) {
  const body = h('div', {});
  body.append(h('dl', { class: 'kv' },
    h('dt', {}, 'Role'), h('dd', {}, ROLE_LABEL[r.role] || r.role || ''),
    h('dt', {}, 'Status'), h('dd', {}, h('span', { class: 'pill ' + statusClass(r.status) }, r.status)),
    r.failed_step ? [h('dt', {}, 'Failed step'), h('dd', {}, r.failed_step)] : null,
    h('dt', {}, 'Elapsed'), h('dd', {}, fmtMs(r.duration_ms))));
  if (r.message) body.append(h('h3', {}, 'Error'), h('pre', { class: 'err-pre' }, r.message));
  const checks = view.checks && view.checks[r.host];
  if (checks && checks.length) {
    body.append(h('h3', {}, 'Checks'), h('table', { class: 'checks' }, h('tbody', {}, checks.map((c) =>
      h('tr', { class: c.passed ? 'st-ok' : 'st-bad' }, h('td', {}, c.passed ? 'PASS' : 'FAIL'), h('td', {}, c.name), h('td', { class: 'mono small' }, c.detail || ''))))));
  }
  const runId = r.run_id || view.run_id;
  const pre = h('pre', { id: 'log-text', class: 'log' }, 'Loading the log…');
  body.append(h('h3', {}, 'Full log ', h('a', { href: '/api/v1/runs/' + encodeURIComponent(runId) + '/logs/' + encodeURIComponent(r.host), target: '_blank', rel: 'noopener' }, '(open raw)')), pre);
  modal(r.host + ' · ' + (view.stage || ''), body);
  const lr = await api('GET', '/runs/' + encodeURIComponent(runId) + '/logs/' + encodeURIComponent(r.host));
  pre.textContent = lr.ok ? lr.data : errorText(lr.data);
  pre.scrollTop = pre.scrollHeight;
}

// ---------------------------------------------------------------------------------------
// configure

const MAIN_KEYS = {
  hosts: ['master_list', 'agent_list', 'public_agent_list'],
  cluster: ['cluster_name', 'bootstrap_url'],
  ssh: ['ssh_user', 'ssh_port', 'ssh_host_key_policy'],
};
const MANAGED = ['ssh_key_path', 'ip_detect_filename'];
const LIST_TYPES = ['host_list', 'ip_list', 'list'];
const NUM_TYPES = ['int', 'port'];

const DEFAULT_IP_DETECT = '#!/bin/sh\n# Print this host\'s cluster IP address (the one the other hosts reach it on).\nset -e\nip -4 -o route get 1.1.1.1 | sed -n \'s/.* src \\([0-9.]*\\).*/\\1/p\'\n';

function fieldValue(el) {
  const p = S.schemaByName[el.dataset.key];
  const v = el.value;
  if (p.secret) {
    if (v === '') return S.config.secrets_set.includes(p.name) ? '**HIDDEN**' : null;
    return v;
  }
  if (LIST_TYPES.includes(p.type)) {
    const items = v.split('\n').map((s) => s.trim()).filter(Boolean);
    return items.length ? items : null;
  }
  if (v.trim() === '') return null;
  if (p.type === 'bool') return v === 'true';
  if (NUM_TYPES.includes(p.type) || p.type === 'bytes' || p.type === 'duration') {
    if (/^-?\d+$/.test(v.trim())) return Number(v.trim());
    return v.trim();
  }
  if (p.type === 'dict') {
    try { return JSON.parse(v); } catch (e) { return v; }
  }
  return p.type === 'string' && p.multiline ? v : v.trim();
}

function initialValue(key) {
  const vals = (S.config && S.config.values) || {};
  return vals[key] === undefined ? null : vals[key];
}

function changedSet() {
  const set = {};
  for (const el of $$('[data-key]', $('#cfg-form'))) {
    const k = el.dataset.key;
    const v = fieldValue(el);
    if (JSON.stringify(v) !== JSON.stringify(initialValue(k))) set[k] = v;
  }
  return set;
}

function fieldFor(p) {
  const id = 'f-' + p.name;
  const init = initialValue(p.name);
  let input;
  const ph = p.example !== null && p.example !== undefined ? p.example : p.default;
  if (LIST_TYPES.includes(p.type)) {
    input = h('textarea', { id, rows: p.name === 'master_list' ? 3 : 3, spellcheck: 'false', placeholder: Array.isArray(ph) && ph.length ? ph.join('\n') : 'one per line' });
    input.value = Array.isArray(init) ? init.join('\n') : (init === null ? '' : String(init));
  } else if (p.type === 'bool' || p.type === 'enum') {
    const choices = p.type === 'bool' ? ['true', 'false'] : (p.values || []);
    input = h('select', { id },
      h('option', { value: '' }, 'default' + (p.default !== null && p.default !== undefined ? ' (' + p.default + ')' : '')),
      choices.map((c) => h('option', { value: c }, c)));
    input.value = init === null ? '' : String(init);
  } else if (p.secret) {
    input = h('input', { id, type: 'password', autocomplete: 'new-password', placeholder: S.config.secrets_set.includes(p.name) ? '•••••• stored — type to replace' : '' });
  } else if (p.multiline) {
    input = h('textarea', { id, rows: 4 });
    input.value = init === null ? '' : String(init);
  } else {
    input = h('input', { id, type: 'text', spellcheck: 'false', inputmode: NUM_TYPES.includes(p.type) ? 'numeric' : null,
      placeholder: ph === null || ph === undefined ? (p.default_expr ? 'calculated' : '') : (typeof ph === 'object' ? JSON.stringify(ph) : String(ph)) });
    input.value = init === null ? '' : (typeof init === 'object' ? JSON.stringify(init) : String(init));
  }
  input.dataset.key = p.name;
  input.addEventListener('input', validateSoon);
  input.addEventListener('change', validateSoon);
  const req = p.required ? h('span', { class: 'req', title: 'required' }, '*') : null;
  return h('div', { class: 'field', dataset: { field: p.name } },
    h('label', { for: id }, p.name, req, h('span', { class: 'type' }, p.type + (p.secret ? ', secret' : ''))),
    input,
    h('div', { class: 'help' }, p.description),
    h('div', { class: 'err', dataset: { for: p.name } }));
}

async function pageConfigure(main) {
  if (!S.schema) {
    const r = await api('GET', '/schema');
    S.schema = r.ok ? r.data : [];
    S.schemaByName = Object.fromEntries(S.schema.map((p) => [p.name, p]));
  }
  const r = await api('GET', '/config');
  if (!r.ok) { main.replaceChildren(h('pre', { class: 'err-pre' }, errorText(r.data))); return; }
  S.config = r.data;
  const cfg = S.config;
  const byName = S.schemaByName;
  const used = new Set([...MAIN_KEYS.hosts, ...MAIN_KEYS.cluster, ...MAIN_KEYS.ssh]);
  const section = (title, keys, extra) => h('fieldset', { class: 'group' }, h('legend', {}, title), keys.filter((k) => byName[k]).map((k) => fieldFor(byName[k])), extra || null);
  const distKeys = S.schema.filter((p) => p.origin === 'distribution').map((p) => p.name);
  const advKeys = S.schema.filter((p) => p.origin === 'installer' && !used.has(p.name)).map((p) => p.name);

  const key = cfg.ssh_key;
  const keyBox = h('div', { class: 'field', dataset: { field: 'ssh_key' } },
    h('label', { for: 'ssh-key-file' }, 'SSH private key', h('span', { class: 'type' }, 'write-only')),
    h('div', { id: 'ssh-key-status', class: key.present && key.fingerprint ? 'ok-text' : 'muted' },
      key.present ? (key.fingerprint ? 'Stored at ' + key.path + ' · ' + key.fingerprint : 'Stored at ' + key.path + ' · ' + (key.problem || '')) : 'No key uploaded yet' + (key.path ? ' (expected at ' + key.path + ')' : '') + '.'),
    h('input', { id: 'ssh-key-file', type: 'file' }),
    h('textarea', { id: 'ssh-key-text', rows: 3, spellcheck: 'false', placeholder: '…or paste the private key (-----BEGIN OPENSSH PRIVATE KEY----- …)' }),
    h('div', {}, h('button', { id: 'ssh-key-upload', onclick: uploadKey }, 'Upload key')),
    h('div', { class: 'help' }, 'Stored 0600 in genconf/ and never shown again. No passphrase.'),
    h('div', { class: 'err', dataset: { for: 'ssh_key_path' } }));
  const kh = cfg.known_hosts;
  const khText = h('textarea', { id: 'known-hosts-text', rows: 3, spellcheck: 'false', placeholder: 'host key lines, as `ssh-keyscan HOST` prints them' });
  khText.value = kh.text || '';
  const khBox = h('div', { class: 'field', dataset: { field: 'known_hosts' } },
    h('label', { for: 'known-hosts-text' }, 'Known host keys', h('span', { class: 'type' }, 'ssh_known_hosts')),
    h('div', { id: 'known-hosts-status', class: kh.entries ? 'ok-text' : 'muted' },
      kh.problem ? kh.problem : kh.present ? kh.entries + ' host key' + (kh.entries === 1 ? '' : 's') + ' in ' + kh.path : 'No known_hosts file yet' + (kh.path ? ' (' + kh.path + ')' : '') + '. With ssh_host_key_policy strict every host must be listed.'),
    khText,
    h('div', {}, h('button', { id: 'known-hosts-save', onclick: saveKnownHosts }, 'Save host keys')),
    h('div', { class: 'err', dataset: { for: 'ssh_known_hosts' } }));
  const sudoBox = h('div', { class: 'field' },
    h('label', { for: 'sudo-password' }, 'sudo password', h('span', { class: 'type' }, 'memory only')),
    h('input', { id: 'sudo-password', type: 'password', autocomplete: 'new-password', placeholder: cfg.sudo_password_set ? '•••••• set — type to replace' : 'only for a non-root ssh_user without passwordless sudo' }),
    h('div', {}, h('button', { id: 'sudo-set', onclick: setSudo }, 'Set'), ' ', h('button', { class: 'ghost', onclick: () => { $('#sudo-password').value = ''; setSudo(); } }, 'Forget')));
  const ip = cfg.ip_detect;
  const ipText = h('textarea', { id: 'ip-detect-text', rows: 6, spellcheck: 'false', class: 'mono' });
  ipText.value = ip.script || DEFAULT_IP_DETECT;
  const ipBox = h('fieldset', { class: 'group' }, h('legend', {}, 'ip-detect'),
    h('div', { class: 'field' },
      h('label', { for: 'ip-detect-text' }, 'Script that prints the host\'s cluster IP address'),
      h('div', { id: 'ip-detect-status', class: ip.present ? 'ok-text' : 'muted' }, ip.problem ? ip.problem : ip.present ? 'Saved at ' + ip.path : 'Not saved yet: check the script below and save it.'),
      ipText,
      h('div', {}, h('button', { id: 'ip-detect-save', onclick: saveIpDetect }, 'Save script')),
      h('div', { class: 'err', dataset: { for: 'ip_detect_filename' } }),
      h('div', { class: 'err', dataset: { for: 'ip_detect_contents' } })));

  const form = h('div', { id: 'cfg-form', class: 'form' },
    h('div', { class: 'cols' },
      h('div', {}, section('Hosts by role', MAIN_KEYS.hosts), section('Cluster', MAIN_KEYS.cluster)),
      h('div', {}, section('SSH', MAIN_KEYS.ssh, [keyBox, khBox, sudoBox]), ipBox)),
    distKeys.length ? h('details', { class: 'group', open: true }, h('summary', {}, 'Distribution parameters (' + distKeys.length + ')'), h('div', { class: 'grid' }, distKeys.map((k) => fieldFor(byName[k])))) : null,
    h('details', { class: 'group' }, h('summary', {}, 'Installer settings (advanced)'), h('div', { class: 'grid' }, advKeys.map((k) => fieldFor(byName[k])))));

  const yamlText = h('textarea', { id: 'yaml-text', rows: 24, spellcheck: 'false', class: 'mono' });
  yamlText.value = cfg.yaml;
  yamlText.addEventListener('input', validateSoon);
  const yaml = h('div', { id: 'cfg-yaml', hidden: true },
    h('p', { class: 'muted' }, 'genconf/config.yaml as saved. Secret values show as **HIDDEN**: leave that to keep the stored value.'),
    yamlText,
    h('div', { id: 'yaml-diags', class: 'diags' }));

  const tabs = h('div', { class: 'tabs' },
    h('button', { id: 'tab-form', class: 'tab active', onclick: () => switchTab('form') }, 'Form'),
    h('button', { id: 'tab-yaml', class: 'tab', onclick: () => switchTab('yaml') }, 'YAML'));

  main.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h1', {}, 'Configure'), tabs),
      h('p', { class: 'muted' }, 'Everything is validated as you type; Save writes ' + (S.state ? '' : '') + 'genconf/config.yaml atomically. Generate builds genconf/serve/ (config packages, package list, install.sh) from it.'),
      h('div', { id: 'cfg-general', class: 'general-errors', hidden: true }),
      form, yaml),
    h('section', { class: 'card sticky-actions' },
      h('div', { class: 'actions' },
        h('button', { id: 'save', onclick: () => saveConfig(false) }, 'Save'),
        h('button', { id: 'save-genconf', class: 'primary', onclick: () => saveConfig(true) }, 'Save & generate'),
        h('span', { id: 'valid-state', class: 'muted' }),
        h('span', { class: 'spacer' }),
        h('button', { id: 'next-stage', class: 'primary', onclick: () => { location.hash = '#/preflight'; } }, 'Next: Preflight →')),
      h('div', { id: 'genconf-status', class: 'genconf-status' })));
  S.cfgTab = 'form';
  showValidation(cfg.validation);
  if (S.state) updateGenconf();
}

function switchTab(tab) {
  S.cfgTab = tab;
  $('#tab-form').classList.toggle('active', tab === 'form');
  $('#tab-yaml').classList.toggle('active', tab === 'yaml');
  $('#cfg-form').hidden = tab !== 'form';
  $('#cfg-yaml').hidden = tab !== 'yaml';
  if (tab === 'form') {
    // Pick up what was saved from the editor.
    pageConfigure($('#page'));
  } else {
    validateNow();
  }
}

function currentUpdate() {
  return S.cfgTab === 'yaml' ? { yaml: $('#yaml-text').value } : { set: changedSet() };
}

function validateSoon() {
  clearTimeout(S.validateTimer);
  S.validateTimer = setTimeout(validateNow, 350);
}

async function validateNow() {
  const mySeq = ++S.validateSeq;
  const r = await api('POST', '/config/validate', currentUpdate());
  if (mySeq !== S.validateSeq || S.page !== 'configure') return; // a newer call is on its way
  if (r.ok) showValidation(r.data);
  else showValidation({ valid: false, errors: r.data.errors || { 'config.yaml': errorText(r.data) }, diagnostics: r.data.diagnostics || [], warnings: [] });
}

function showValidation(v) {
  const page = $('#page');
  if (!page || page.dataset.page !== 'configure') return;
  page.dataset.valid = v.valid ? 'true' : 'false';
  const hints = {};
  for (const d of v.diagnostics || []) if (d.hint && !hints[d.key]) hints[d.key] = d.hint;
  const shown = new Set();
  for (const el of $$('.err[data-for]')) {
    const k = el.dataset.for;
    const msg = v.errors[k];
    el.replaceChildren();
    if (msg) {
      shown.add(k);
      el.append(h('span', {}, msg));
      if (hints[k]) el.append(h('span', { class: 'hint' }, 'hint: ' + hints[k]));
    }
    const f = el.closest('.field');
    if (f) f.classList.toggle('invalid', !!msg);
  }
  const general = $('#cfg-general');
  const rest = Object.entries(v.errors).filter(([k]) => !shown.has(k) || S.cfgTab === 'yaml');
  if (rest.length && S.cfgTab === 'form') {
    general.hidden = false;
    general.replaceChildren(h('strong', {}, 'Other problems'), h('ul', {}, rest.map(([k, m]) => h('li', {}, h('code', {}, k), ': ' + m + (hints[k] ? ' — hint: ' + hints[k] : '')))));
  } else {
    general.hidden = true;
  }
  const diags = $('#yaml-diags');
  if (diags) {
    diags.replaceChildren(...(v.diagnostics || []).map((d) => h('div', { class: 'diag' },
      h('span', { class: 'loc' }, d.line ? 'line ' + d.line + ':' + d.column : '—'), ' ', h('code', {}, d.key), ': ' + d.message + (d.hint ? ' — hint: ' + d.hint : ''))));
    if (!(v.diagnostics || []).length) diags.append(h('div', { class: 'ok-text' }, v.valid ? 'Valid.' : ''));
  }
  const vs = $('#valid-state');
  if (vs) {
    const n = Object.keys(v.errors).length;
    vs.textContent = v.valid ? '✓ valid' + (v.hosts ? ' · ' + v.hosts.master + ' masters, ' + v.hosts.agent + ' agents, ' + v.hosts.agent_public + ' public agents' : '') : n + ' problem' + (n === 1 ? '' : 's');
    vs.className = v.valid ? 'ok-text' : 'err-text';
  }
}

async function saveConfig(generate) {
  const upd = currentUpdate();
  const r = await api('PUT', '/config', upd);
  if (!r.ok) {
    if (r.data && r.data.errors) showValidation({ valid: false, errors: r.data.errors, diagnostics: r.data.diagnostics || [], warnings: [] });
    toast('Not saved: ' + errorText(r.data), 'error');
    return;
  }
  S.config = r.data;
  toast('Saved genconf/config.yaml', 'info');
  loadState();
  if (S.cfgTab === 'yaml') {
    $('#yaml-text').value = r.data.yaml;
  } else {
    await pageConfigure($('#page'));
  }
  if (generate) {
    const g = await api('POST', '/stages/genconf', {});
    if (!g.ok) toast(errorText(g.data), 'error');
  }
}

function updateGenconf() {
  const box = $('#genconf-status');
  if (!box) return;
  const run = S.state.run;
  const next = $('#next-stage');
  const stale = S.state.serve && S.state.serve.matches_config === false;
  if (next) next.disabled = !S.state.serve || stale || (run.stage === 'genconf' && run.state !== 'finished');
  if (run.stage === 'genconf' && run.state === 'running') {
    box.dataset.state = 'running';
    box.replaceChildren(h('span', { class: 'pill running' }, 'generating'), ' building config packages and install.sh…');
  } else if (run.stage === 'genconf' && run.state === 'error') {
    box.dataset.state = 'error';
    box.replaceChildren(h('span', { class: 'pill bad' }, 'genconf failed'), h('pre', { class: 'err-pre' }, run.error || ''));
  } else if (stale) {
    box.dataset.state = 'stale';
    box.replaceChildren(h('span', { class: 'pill bad' }, 'out of date'), ' config.yaml changed since genconf/serve/ was generated: Save & generate again.');
  } else if (S.state.serve) {
    box.dataset.state = 'ok';
    const rep = run.stage === 'genconf' && run.report;
    box.replaceChildren(h('span', { class: 'pill ok' }, 'generated'), ' cluster package list ',
      h('code', {}, S.state.serve.package_list_id.slice(0, 12)), ' · ' + S.state.serve.packages.length + ' packages' + (rep ? ' · ' + (rep.signed ? 'signature checked' : 'unsigned build') + ' · config ' + rep.config_id.slice(0, 12) : ''));
  } else {
    box.dataset.state = 'none';
    box.replaceChildren(h('span', { class: 'muted' }, 'Not generated yet: Save & generate when the configuration is valid.'));
  }
}

async function uploadKey() {
  const file = $('#ssh-key-file').files[0];
  const text = file ? await file.text() : $('#ssh-key-text').value;
  if (!text.trim()) { toast('Choose a key file or paste a key first', 'error'); return; }
  const r = await api('PUT', '/ssh-key', { private_key: text });
  const err = $('.err[data-for="ssh_key_path"]');
  if (!r.ok) {
    err.textContent = errorText(r.data).split('\n').slice(-1)[0].replace(/^• ssh_key_path: /, '');
    return;
  }
  $('#ssh-key-file').value = '';
  $('#ssh-key-text').value = '';
  err.textContent = r.data.note || '';
  const st = $('#ssh-key-status');
  st.textContent = 'Stored at ' + r.data.path + ' · ' + (r.data.fingerprint || '');
  st.className = 'ok-text';
  toast('SSH key stored', 'info');
  loadState();
  const c = await api('GET', '/config');
  if (c.ok) { S.config.values = c.data.values; S.config.yaml = c.data.yaml; showValidation(c.data.validation); }
  if (S.cfgTab === 'yaml') $('#yaml-text').value = S.config.yaml;
}

async function saveKnownHosts() {
  const r = await api('PUT', '/known-hosts', { text: $('#known-hosts-text').value });
  const err = $('.err[data-for="ssh_known_hosts"]');
  if (!r.ok) { err.textContent = errorText(r.data).split('\n').slice(-1)[0].replace(/^• ssh_known_hosts: /, ''); return; }
  err.textContent = '';
  const st = $('#known-hosts-status');
  st.textContent = r.data.entries + ' host key' + (r.data.entries === 1 ? '' : 's') + ' in ' + r.data.path;
  st.className = 'ok-text';
  toast('Host keys saved', 'info');
  loadState();
  const c = await api('GET', '/config');
  if (c.ok) { S.config.values = c.data.values; S.config.yaml = c.data.yaml; }
  validateNow();
}

async function saveIpDetect() {
  const r = await api('PUT', '/ip-detect', { script: $('#ip-detect-text').value });
  if (!r.ok) { $('.err[data-for="ip_detect_filename"]').textContent = errorText(r.data); return; }
  const st = $('#ip-detect-status');
  st.textContent = 'Saved at ' + r.data.path;
  st.className = 'ok-text';
  toast('ip-detect saved', 'info');
  loadState();
  const c = await api('GET', '/config');
  if (c.ok) { S.config.values = c.data.values; S.config.yaml = c.data.yaml; S.config.ip_detect = c.data.ip_detect; }
  validateNow();
}

async function setSudo() {
  const v = $('#sudo-password').value;
  const r = await api('PUT', '/sudo-password', { password: v || null });
  if (r.ok) {
    $('#sudo-password').value = '';
    $('#sudo-password').placeholder = r.data.set ? '•••••• set — type to replace' : 'only for a non-root ssh_user without passwordless sudo';
    toast(r.data.set ? 'sudo password set (kept in memory only)' : 'sudo password forgotten', 'info');
  }
}

// ---------------------------------------------------------------------------------------
// done

async function pageDone(main) {
  const r = await api('GET', '/cluster');
  if (!r.ok) {
    main.replaceChildren(h('section', { class: 'card' }, h('h1', {}, 'Done'), h('pre', { class: 'err-pre' }, errorText(r.data)), h('a', { href: '#/configure' }, 'Go to Configure')));
    return;
  }
  const c = r.data;
  const healthy = stageOk('postflight');
  const byRole = {};
  for (const x of c.hosts) (byRole[x.role] || (byRole[x.role] = [])).push(x);
  main.dataset.healthy = healthy ? 'true' : 'false';
  main.replaceChildren(
    h('section', { class: 'card' },
      h('h1', {}, healthy ? '✓ Cluster “' + c.cluster_name + '” is installed and healthy' : 'Cluster “' + c.cluster_name + '”'),
      healthy ? h('p', {}, 'Every host passed deploy and postflight.') : h('p', { class: 'err-text' }, 'Postflight has not passed on every host yet. ', h('a', { href: '#/postflight' }, 'Go to Postflight')),
      h('div', { class: 'links' }, c.links.map((l) => h('a', { class: 'button', href: l.url, target: '_blank', rel: 'noopener noreferrer' }, l.name + ' ↗')),
        h('a', { id: 'download-logs', class: 'button', href: '/api/v1/logs/archive', download: '' }, 'Download all logs (.tar.zst)'))),
    h('section', { class: 'card' },
      h('h2', {}, 'What is installed where'),
      h('div', { class: 'cols' }, Object.keys(byRole).sort((a, b) => (ROLE_ORDER[a] ?? 9) - (ROLE_ORDER[b] ?? 9)).map((role) =>
        h('div', {}, h('h3', {}, (ROLE_LABEL[role] || role) + 's (' + byRole[role].length + ')'),
          h('table', { class: 'hosts compact' }, h('thead', {}, h('tr', {}, h('th', {}, 'Host'), h('th', {}, 'Deploy'), h('th', {}, 'Postflight'))),
            h('tbody', {}, byRole[role].map((x) => h('tr', { dataset: { host: x.host } }, h('td', { class: 'mono' }, x.host),
              h('td', {}, h('span', { class: 'pill ' + statusClass(x.deploy || 'pending') }, x.deploy || '—')),
              h('td', {}, h('span', { class: 'pill ' + statusClass(x.postflight || 'pending') }, x.postflight || '—'))))))))),
      h('h3', {}, 'Packages (cluster package list ' + (c.package_list_id ? c.package_list_id.slice(0, 12) : '—') + ')'),
      h('ul', { class: 'packages mono' }, c.packages.map((p) => h('li', {}, p)))),
    historyCard(),
    h('section', { class: 'card' },
      h('h2', {}, 'Operate'),
      h('div', { class: 'actions' },
        h('a', { class: 'button', href: '#/status' }, 'Audit hosts (status)…'),
        h('a', { id: 'go-upgrade', class: 'button', href: '#/upgrade' }, 'Upgrade…'),
        h('a', { id: 'go-rollback', class: 'button', href: '#/rollback' }, 'Roll back…'),
        h('a', { id: 'go-daytwo', class: 'button', href: '#/daytwo' }, 'Day two…'),
        h('a', { class: 'button danger', href: '#/uninstall' }, 'Uninstall…'))));
}

// The cluster ledger (GET /api/v1/history): the same entries as `tarmac history`.
function historyCard() {
  const body = h('div', { id: 'history-body' }, h('p', { class: 'muted' }, 'loading…'));
  const card = h('section', { class: 'card', id: 'history' }, h('h2', {}, 'History'), body);
  api('GET', '/history').then((r) => {
    if (!r.ok) { body.replaceChildren(h('pre', { class: 'err-pre' }, errorText(r.data))); return; }
    const es = r.data.entries || [];
    if (!es.length) { body.replaceChildren(h('p', { class: 'muted' }, 'The cluster ledger is empty.')); return; }
    const short = (t) => (t ? t.list_id.slice(0, 12) : 'none');
    body.replaceChildren(h('table', { class: 'history compact' },
      h('thead', {}, h('tr', {}, ['#', 'When (UTC)', 'Operation', 'Target', 'Result', 'Hosts', 'By'].map((x) => h('th', {}, x)))),
      h('tbody', {}, es.slice().reverse().map((e) => {
        const before = short(e.target_before), after = short(e.target_after);
        const result = e.op === 'genconf' ? 'rendered' : (e.complete ? 'complete' : 'partial');
        const hosts = Object.entries(e.hosts || {});
        return h('tr', { dataset: { seq: String(e.seq), op: e.op } },
          h('td', {}, String(e.seq)), h('td', { class: 'mono' }, e.at), h('td', {}, e.op),
          h('td', { class: 'mono' }, before !== after && e.target_before ? before + ' → ' + after : after),
          h('td', {}, h('span', { class: 'pill ' + statusClass(result === 'partial' ? 'failed' : 'ok') }, result)),
          h('td', { title: hosts.map(([k, v]) => k + ' ' + v).join('\n') }, hosts.length ? hosts.length + ' (' + hosts.filter(([, v]) => v !== 'ok' && v !== 'unchanged').length + ' not ok)' : '—'),
          h('td', {}, e.who));
      }))));
  });
  return card;
}

// ---------------------------------------------------------------------------------------
// start

// Runs started by another process (the CLI) do not reach this page's event stream: poll the
// state now and then, often while someone else holds the run lock.
function poll() {
  const other = S.state && S.state.busy && S.state.busy.by !== 'this server';
  setTimeout(async () => {
    const running = S.state && S.state.run && S.state.run.state === 'running';
    if (!running && !document.hidden) await loadState();
    poll();
  }, other ? 5000 : 30000);
}

window.addEventListener('hashchange', navigate);
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeModal(); });
// Sign out: end the session on the server, then show the sign-in page.
async function logout(e) {
  if (e) e.preventDefault();
  try {
    await fetch('/logout', { method: 'POST', headers: { 'X-Tarmac-CSRF': CSRF }, credentials: 'same-origin' });
  } catch (e) { /* the server is gone: the session is too */ }
  window.location.replace('/');
}

document.addEventListener('DOMContentLoaded', () => {
  if ($('#logout')) $('#logout').addEventListener('click', logout);
  $('#modal-close').addEventListener('click', closeModal);
  $('#modal').addEventListener('click', (e) => { if (e.target.id === 'modal') closeModal(); });
  navigate();
  poll();
});

// ---------------------------------------------------------------------------------------
// Day two: snapshots, backup, restore, remove hosts, replace master.

/** A day-two run: its fleets (deploy, upgrade, postflight…) rename the view's stage while it
 * runs, so the run is also known by when it started. */
function isDayTwoRun(run) {
  if (!run) return false;
  if (DAYTWO.includes(run.stage)) { S.dayTwoStarted = run.started_unix_ms; return true; }
  return run.started_unix_ms != null && run.started_unix_ms === S.dayTwoStarted;
}

function dayTwoActions() {
  return h('span', { class: 'daytwo-actions' },
    h('button', { id: 'dt-backup', class: 'primary', onclick: startBackup }, 'Back up now'),
    h('label', { class: 'inline', title: 'Keep only the newest N snapshots' }, 'keep ', h('input', { id: 'dt-keep', type: 'text', size: 3, inputmode: 'numeric', placeholder: 'all' })),
    h('button', { id: 'dt-remove', onclick: removeHostsDialog }, 'Remove hosts…'),
    h('button', { id: 'dt-replace', onclick: replaceMasterDialog }, 'Replace master…'));
}

function dayTwoCard() {
  const card = h('section', { id: 'snapshots-card', class: 'card' },
    h('div', { id: 'change-banner', class: 'banner warn', hidden: true }),
    h('div', { class: 'table-head' }, h('h2', {}, 'Snapshots'), h('button', { class: 'ghost', onclick: loadSnapshots }, 'Refresh')),
    h('div', { class: 'table-wrap' }, h('table', { id: 'snapshots', class: 'hosts' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Taken'), h('th', {}, 'From'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Why'), h('th', {}, ''))),
      h('tbody', { id: 'snapshot-rows' }, h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Loading…'))))));
  setTimeout(loadSnapshots, 0);
  return card;
}

/** The rollout options of the Day two page, or null (after a toast) when one is bad. */
function dayTwoRollout() {
  const body = { no_backup: !!($('#dt-no-backup') || {}).checked };
  const batch = (($('#dt-batch') || {}).value || '').trim();
  if (batch) body.batch = batch;
  for (const [id, key, label] of [['#dt-check-timeout', 'check_timeout_secs', 'Checks within'], ['#dt-confirm-window', 'confirm_window_secs', 'Confirm window']]) {
    const v = (($(id) || {}).value || '').trim();
    if (v && !/^[1-9]\d*$/.test(v)) { toast(label + ': a number of seconds', 'error'); return null; }
    if (v) body[key] = Number(v);
  }
  return body;
}

/** The unfinished membership change, with a button that continues it. */
function showChange(change) {
  const box = $('#change-banner');
  if (!box) return;
  if (!change || !change.unfinished) { box.replaceChildren(); box.hidden = true; return; }
  box.hidden = false;
  box.dataset.step = change.step;
  box.replaceChildren(
    h('p', {}, 'Unfinished: ', h('code', {}, 'tarmac ' + change.command), ' stopped at its ', h('strong', {}, change.step), ' step (started ' + fmtTime(change.started_unix * 1000) + ', ' + change.attempts + ' attempt' + (change.attempts === 1 ? '' : 's') + '). Another membership change waits until it is finished.'),
    h('button', { id: 'dt-resume', class: 'primary', onclick: () => {
      const body = dayTwoRollout();
      if (!body) return;
      confirmDialog('Continue ' + change.command, ['Continue `tarmac ' + change.command + '` at its ' + change.step + ' step; the steps before it are not run again.'],
        'Continue', () => dayTwoPost('/change/resume', Object.assign(body, { confirm: true }), 'Continue ' + change.command));
    } }, 'Continue the unfinished change…'));
}

async function loadSnapshots() {
  const tb = $('#snapshot-rows');
  if (!tb) return;
  const r = await api('GET', '/snapshots');
  if (!r.ok) { tb.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'err' }, errorText(r.data)))); return; }
  S.snapshots = r.data;
  showChange(r.data.change);
  if (!r.data.snapshots.length) {
    tb.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No snapshots in ' + r.data.dir + ' yet.')));
    return;
  }
  tb.replaceChildren(...r.data.snapshots.slice().reverse().map((sn) => h('tr', { 'data-name': sn.name },
    h('td', { class: 'mono' }, sn.name), h('td', {}, fmtTime(sn.taken_unix * 1000)), h('td', { class: 'mono' }, sn.host),
    h('td', { class: 'num' }, String(sn.size)), h('td', {}, sn.reason),
    h('td', {}, h('button', { class: 'link danger restore', onclick: () => restoreDialog(sn) }, 'Restore…')))));
}

async function dayTwoPost(path, body, what) {
  const r = await api('POST', path, body);
  if (!r.ok) {
    toast(errorText(r.data), 'error');
    if (r.status === 409) loadState();
    return false;
  }
  toast(what + ' started', 'info');
  return true;
}

async function startBackup() {
  const keep = parseInt(($('#dt-keep') || {}).value, 10);
  if (await dayTwoPost('/backup', keep > 0 ? { keep } : {}, 'Backup')) setTimeout(loadSnapshots, 3000);
}

function confirmDialog(title, lines, verb, onOk) {
  const body = h('div', {},
    ...lines.map((l) => h('p', {}, l)),
    h('div', { class: 'actions' },
      h('button', { id: 'dt-confirm', class: 'danger', onclick: async () => { if (await onOk()) closeModal(); } }, verb),
      h('button', { class: 'ghost', onclick: closeModal }, 'Cancel')));
  modal(title, body);
}

function restoreDialog(sn) {
  const masters = (S.snapshots && S.snapshots.masters) || [];
  confirmDialog('Restore ' + sn.name, [
    'Replace the quorum store on ' + masters.length + ' masters (' + masters.join(', ') + ') with snapshot ' + sn.name + ', taken ' + fmtTime(sn.taken_unix * 1000) + ' on ' + sn.host + '.',
    'Every master must be reachable. Each keeps its previous data in member.pre-restore.',
  ], 'Restore ' + sn.name, () => dayTwoPost('/restore', { snapshot: sn.name, confirm: true }, 'Restore'));
}

function clusterHosts() {
  const seen = new Map();
  const add = (x) => { if (x && x.host && !seen.has(x.host)) seen.set(x.host, x.role || ''); };
  const run = S.state && S.state.run;
  (S.config_hosts || []).forEach(add);
  if (run && run.hosts) Object.values(run.hosts).forEach(add);
  return Array.from(seen, ([host, role]) => ({ host, role }));
}

async function configHosts() {
  const r = await api('GET', '/cluster');
  const out = [];
  if (r.ok && r.data && Array.isArray(r.data.hosts)) r.data.hosts.forEach((x) => out.push({ host: x.host, role: x.role }));
  S.config_hosts = out;
  return clusterHosts();
}

async function removeHostsDialog() {
  const hosts = await configHosts();
  const list = h('div', { id: 'dt-hosts' }, ...hosts.map((x) => h('label', { class: 'block' },
    h('input', { type: 'checkbox', value: x.host }), ' ', h('code', {}, x.host), ' ', h('span', { class: 'muted' }, ROLE_LABEL[x.role] || x.role || ''))));
  const manual = h('input', { id: 'dt-hosts-more', type: 'text', size: 30, placeholder: 'or type hosts, comma-separated' });
  const force = h('input', { id: 'dt-force', type: 'checkbox' });
  const body = h('div', {}, list, manual,
    h('label', { class: 'block' }, force, ' force: forget unreachable hosts without cleaning them'),
    h('div', { class: 'actions' }, h('button', { id: 'dt-remove-next', class: 'primary', onclick: () => {
      const picked = $$('#dt-hosts input:checked').map((e) => e.value)
        .concat(manual.value.split(',').map((v) => v.trim()).filter(Boolean));
      if (!picked.length) { toast('Pick the hosts to remove', 'error'); return; }
      confirmDialog('Remove ' + picked.join(', '), [
        'Uninstall ' + picked.join(', ') + ' where reachable, take removed masters out of the quorum, drop them from config.yaml, then genconf, roll the other hosts and run postflight.',
        force.checked ? 'Unreachable hosts are forgotten WITHOUT cleaning: their Tarmac files and units stay until the machines are wiped.' : 'If a host is unreachable nothing is changed (tick force to forget unreachable hosts without cleaning them).',
      ], 'Remove', () => { const ro = dayTwoRollout(); return ro ? dayTwoPost('/remove-hosts', Object.assign(ro, { hosts: picked, force: force.checked, confirm: true }), 'Remove hosts') : false; });
    } }, 'Remove…')));
  modal('Remove hosts', body);
}

async function replaceMasterDialog() {
  const masters = (await configHosts()).filter((x) => x.role === 'master');
  const old = h('select', { id: 'dt-old' }, ...masters.map((x) => h('option', { value: x.host }, x.host)));
  const neu = h('input', { id: 'dt-new', type: 'text', size: 24, placeholder: 'new host, e.g. 10.0.0.9' });
  modal('Replace master', h('div', {},
    h('label', { class: 'block' }, 'Old master ', old),
    h('label', { class: 'block' }, 'New host ', neu),
    h('div', { class: 'actions' }, h('button', { id: 'dt-replace-next', class: 'primary', onclick: () => {
      const o = old.value; const n = neu.value.trim();
      if (!o || !n) { toast('Pick the old master and type the new host', 'error'); return; }
      confirmDialog('Replace master ' + o, [
        'Move ' + o + "'s quorum membership to " + n + ', swap them in config.yaml, genconf, install the prerequisites and Tarmac on ' + n + ' as a master, roll the other hosts and run postflight.',
        'If ' + o + ' is unreachable it is not cleaned.',
      ], 'Replace', () => { const ro = dayTwoRollout(); return ro ? dayTwoPost('/replace-master', Object.assign(ro, { old: o, new: n, confirm: true }), 'Replace master') : false; });
    } }, 'Replace…'))));
}
