// The operator page: every event with its line, admission rate and ETA
// accuracy over the last two minutes, and the two levers an operator pulls
// during a sale: pause/resume and the admission rate.
//
// The admin token lives in sessionStorage only: it dies with the tab and is
// never written anywhere another tab or a later visitor could read it.

const TOKEN_KEY = 'wr:admin-token';
/** samples kept per event (the feed sends about one per second) */
const SAMPLES = 120;
const WINDOW_MS = 120_000;
const W = 120;
const H = 36;
const PAD = 2;
const SVG_NS = 'http://www.w3.org/2000/svg';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const int = new Intl.NumberFormat();
const dec = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** @type {Map<string, { el: HTMLElement, samples: any[], state: string, rate: number }>} */
const events = new Map();
let token = '';
let feed = null;
let feedTimer = 0;
let feedAttempt = 0;

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// API

async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'the gateway could not be reached');
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    // empty or not JSON
  }
  if (!res.ok) throw new ApiError(res.status, json?.error?.code ?? `HTTP_${res.status}`, json?.error?.message ?? `HTTP ${res.status}`);
  return json;
}

// ---------------------------------------------------------------------------
// sign in / out

async function signIn(candidate) {
  token = candidate;
  $('login-error').hidden = true;
  let list;
  try {
    list = await api('GET', '/api/v1/admin/events');
  } catch (err) {
    token = '';
    const msg =
      err.status === 401
        ? 'That admin token was refused.'
        : err.status === 404
          ? 'The admin API is not enabled on this gateway (ADMIN_TOKEN is not set).'
          : `Could not load the events: ${err.message}.`;
    showLogin(msg);
    if (err.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('login').hidden = true;
  $('dash').hidden = false;
  $('signout').hidden = false;
  $('feed').hidden = false;
  for (const e of list?.events ?? []) upsert(e);
  renderEmpty();
  openFeed();
}

function showLogin(message) {
  $('login').hidden = false;
  $('dash').hidden = true;
  $('signout').hidden = true;
  $('feed').hidden = true;
  const e = $('login-error');
  e.textContent = message ?? '';
  e.hidden = !message;
  $('admin-token').focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = '';
  closeFeed();
  events.clear();
  $('events').replaceChildren();
  showLogin(message);
}

// ---------------------------------------------------------------------------
// live feed

function setFeed(state) {
  const f = $('feed');
  f.dataset.state = state;
  f.textContent = state === 'live' ? 'live · updating every second' : state === 'connecting' ? 'connecting…' : 'offline · reconnecting…';
}

function openFeed() {
  closeFeed();
  const u = new URL('/api/v1/admin/ws', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.searchParams.set('token', token); // browsers cannot send headers on a WebSocket
  setFeed('connecting');
  let s;
  try {
    s = new WebSocket(u);
  } catch {
    scheduleFeed();
    return;
  }
  feed = s;
  s.onopen = () => {
    feedAttempt = 0;
    setFeed('live');
  };
  s.onmessage = (ev) => {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (m?.type === 'event' && typeof m.event_id === 'string') onSample(m);
  };
  s.onclose = (ev) => {
    if (feed !== s) return;
    feed = null;
    if (ev.code === 4401) {
      signOut('That admin token was refused.');
      return;
    }
    scheduleFeed();
  };
}

function scheduleFeed() {
  setFeed('offline');
  const cap = Math.min(10_000, 1000 * 2 ** feedAttempt++);
  feedTimer = setTimeout(async () => {
    // catch up on events created while we were away, then listen again
    try {
      const list = await api('GET', '/api/v1/admin/events');
      for (const e of list?.events ?? []) upsert(e);
      renderEmpty();
    } catch (err) {
      if (err.status === 401) return signOut('That admin token was refused.');
    }
    if (token) openFeed();
  }, cap / 2 + (Math.random() * cap) / 2);
}

function closeFeed() {
  clearTimeout(feedTimer);
  if (feed) {
    const s = feed;
    feed = null;
    s.onclose = s.onmessage = s.onopen = null;
    s.close();
  }
}

// ---------------------------------------------------------------------------
// events

function renderEmpty() {
  $('empty').hidden = events.size > 0;
}

/** Creates the event's card if it is new; updates its figures. */
function upsert(e) {
  let ev = events.get(e.event_id);
  if (!ev) {
    const tpl = /** @type {HTMLTemplateElement} */ ($('event-template'));
    const el = /** @type {HTMLElement} */ (tpl.content.firstElementChild.cloneNode(true));
    el.dataset.eventId = e.event_id;
    el.querySelector('.event-id').textContent = e.event_id;
    const headingId = `ev-${e.event_id}`;
    el.querySelector('.event-id').id = headingId;
    el.querySelector('article').setAttribute('aria-labelledby', headingId);
    ev = { el, samples: [], state: e.state, rate: e.rate };
    events.set(e.event_id, ev);
    wireCard(e.event_id, ev);
    // keep the list sorted by event id
    const list = $('events');
    const next = [...list.children].find((c) => /** @type {HTMLElement} */ (c).dataset.eventId > e.event_id);
    list.insertBefore(el, next ?? null);
    renderEmpty();
  }
  if (typeof e.state === 'string') ev.state = e.state;
  if (typeof e.rate === 'number') ev.rate = e.rate;
  const q = (sel) => ev.el.querySelector(sel);
  q('.event-state').textContent = ev.state;
  q('.event-state').dataset.state = ev.state;
  q('.f-in-line').textContent = int.format(e.in_line ?? 0);
  q('.f-waiting').textContent = int.format(e.waiting ?? 0);
  q('.f-ready').textContent = int.format(e.ready ?? 0);
  const toggle = q('.toggle');
  toggle.textContent = ev.state === 'open' ? 'Pause admissions' : 'Resume admissions';
  toggle.setAttribute('aria-describedby', `ev-${e.event_id}`);
  // do not overwrite what the operator is typing
  const input = /** @type {HTMLInputElement} */ (q('.rate-input'));
  if (document.activeElement !== input && input.dataset.dirty !== '1') input.value = String(ev.rate);
  return ev;
}

function wireCard(id, ev) {
  const q = (sel) => ev.el.querySelector(sel);
  const msg = q('.event-msg');
  const input = /** @type {HTMLInputElement} */ (q('.rate-input'));
  input.addEventListener('input', () => {
    input.dataset.dirty = '1';
  });
  q('.toggle').addEventListener('click', async (e) => {
    const btn = /** @type {HTMLButtonElement} */ (e.currentTarget);
    const state = ev.state === 'open' ? 'paused' : 'open';
    btn.disabled = true;
    try {
      const r = await api('PUT', `/api/v1/admin/events/${encodeURIComponent(id)}`, { state });
      ev.state = r.state;
      upsert({ event_id: id, state: r.state, rate: r.rate, ...latestCounts(ev) });
      msg.textContent = r.state === 'open' ? 'Admissions resumed.' : 'Admissions paused: people keep their places.';
    } catch (err) {
      if (err.status === 401) return signOut('That admin token was refused.');
      msg.textContent = `Could not change the state: ${err.message}.`;
    } finally {
      btn.disabled = false;
    }
  });
  wireNotice(id, ev, msg);
  q('.rate-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const rate = Number(input.value);
    if (!Number.isFinite(rate) || rate < 0.001 || rate > 100000) {
      msg.textContent = 'The rate must be between 0.001 and 100000 admissions per second.';
      input.focus();
      return;
    }
    try {
      const r = await api('PUT', `/api/v1/admin/events/${encodeURIComponent(id)}`, { rate });
      input.dataset.dirty = '';
      upsert({ event_id: id, state: r.state, rate: r.rate, ...latestCounts(ev) });
      msg.textContent = `Rate set to ${dec.format(r.rate)} per second. The ETA history restarts at the new rate.`;
    } catch (err) {
      if (err.status === 401) return signOut('That admin token was refused.');
      msg.textContent = `Could not set the rate: ${err.message}.`;
    }
  });
}

/** The operator's message: English and Korean, published to every open page of the event. */
function wireNotice(id, ev, msg) {
  const q = (sel) => ev.el.querySelector(sel);
  const en = /** @type {HTMLTextAreaElement} */ (q('.notice-en'));
  const ko = /** @type {HTMLTextAreaElement} */ (q('.notice-ko'));
  const show = (m) => {
    en.value = m?.en ?? '';
    ko.value = m?.ko ?? '';
  };
  api('GET', `/api/v1/admin/events/${encodeURIComponent(id)}`).then(
    (r) => show(r.message),
    () => undefined, // an event only seen in the feed (not configured yet) has no message
  );
  const publish = async (message, done) => {
    try {
      const r = await api('PUT', `/api/v1/admin/events/${encodeURIComponent(id)}`, { message });
      show(r.message);
      msg.textContent = done;
    } catch (err) {
      if (err.status === 401) return signOut('That admin token was refused.');
      msg.textContent = `Could not change the message: ${err.message}.`;
    }
  };
  q('.notice-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const m = {};
    if (en.value.trim()) m.en = en.value.trim();
    if (ko.value.trim()) m.ko = ko.value.trim();
    if (!m.en && !m.ko) {
      msg.textContent = 'Write the message in at least one language, or remove it.';
      en.focus();
      return;
    }
    void publish(m, 'Message published: open pages show it now.');
  });
  q('.notice-remove').addEventListener('click', () => void publish(null, 'Message removed from every open page.'));
}

function latestCounts(ev) {
  const s = ev.samples.at(-1);
  return s ? { in_line: s.inLine, waiting: s.waiting, ready: s.ready } : {};
}

function onSample(m) {
  const ev = upsert({ event_id: m.event_id, state: m.state, rate: m.rate?.configured, in_line: m.in_line, waiting: m.waiting, ready: m.ready });
  ev.samples.push({
    t: typeof m.t === 'number' ? m.t : Date.now(),
    inLine: m.in_line,
    waiting: m.waiting,
    ready: m.ready,
    configured: m.rate?.configured ?? null,
    measured: m.rate?.['1m'] ?? null,
    accuracy: m.eta_accuracy_p50_sec ?? null,
  });
  const newest = ev.samples.at(-1).t;
  while (ev.samples.length > SAMPLES || (ev.samples.length && newest - ev.samples[0].t > WINDOW_MS)) ev.samples.shift();
  const q = (sel) => ev.el.querySelector(sel);
  q('.f-rate').textContent = `${dec.format(m.rate?.configured ?? 0)} / ${m.rate?.['1m'] == null ? '–' : dec.format(m.rate['1m'])}`;
  q('.f-conf').textContent = `${Math.round((m.eta_confidence ?? 0) * 100)} %`;
  q('.f-acc').textContent = m.eta_accuracy_p50_sec == null ? 'no data yet' : `${dec.format(m.eta_accuracy_p50_sec)} s`;
  drawCharts(ev);
}

// ---------------------------------------------------------------------------
// sparklines

function drawCharts(ev) {
  const s = ev.samples;
  const q = (sel) => ev.el.querySelector(sel);
  spark(q('[data-chart="line"]'), s, [{ key: 'inLine', cls: 'series-main' }], 'Queue length', (v) => int.format(v));
  spark(
    q('[data-chart="rate"]'),
    s,
    [
      { key: 'configured', cls: 'series-ref' },
      { key: 'measured', cls: 'series-main' },
    ],
    'Admissions per second, measured over 1 minute',
    (v) => dec.format(v),
  );
  spark(q('[data-chart="accuracy"]'), s, [{ key: 'accuracy', cls: 'series-alt' }], 'Median ETA error in seconds', (v) => `${dec.format(v)} s`);
}

/**
 * One small line chart (time on x, 0..peak on y). The x axis spans the data
 * held, at least 10 s and at most two minutes, so a fresh page is not a dot
 * at the right edge. Missing values (null) break the line instead of
 * pretending to be zero.
 */
function spark(svg, samples, series, label, fmt) {
  const newest = samples.at(-1)?.t ?? Date.now();
  const span = Math.min(WINDOW_MS, Math.max(10_000, newest - (samples[0]?.t ?? newest)));
  const x = (t) => W - ((newest - t) / span) * W;
  let peak = 0;
  for (const sm of samples) for (const se of series) if (typeof sm[se.key] === 'number') peak = Math.max(peak, sm[se.key]);
  const top = peak > 0 ? peak * 1.15 : 1; // headroom: a flat series is not drawn on the edge
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);

  const nodes = [];
  const base = document.createElementNS(SVG_NS, 'line');
  base.setAttribute('x1', '0');
  base.setAttribute('x2', String(W));
  base.setAttribute('y1', String(H - PAD));
  base.setAttribute('y2', String(H - PAD));
  base.setAttribute('class', 'axis');
  base.setAttribute('vector-effect', 'non-scaling-stroke');
  nodes.push(base);
  for (const se of series) {
    let d = '';
    let pen = false;
    for (const sm of samples) {
      const v = sm[se.key];
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(sm.t).toFixed(2)} ${y(v).toFixed(2)} `;
      pen = true;
    }
    if (!d) continue;
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d.trim());
    path.setAttribute('class', se.cls);
    // the chart is stretched to its box; keep lines crisp and even
    path.setAttribute('vector-effect', 'non-scaling-stroke');
    nodes.push(path);
  }
  svg.replaceChildren(...nodes);

  const main = series.at(-1).key;
  const last = [...samples].reverse().find((sm) => typeof sm[main] === 'number')?.[main];
  svg.setAttribute(
    'aria-label',
    last === undefined ? `${label}: no data yet` : `${label}: now ${fmt(last)}, peak ${fmt(peak)} in the last two minutes`,
  );
}

// ---------------------------------------------------------------------------

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('admin-token'));
  const t = input.value.trim();
  input.value = '';
  if (t) void signIn(t);
});
$('signout').addEventListener('click', () => signOut());

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void signIn(saved);
else showLogin();
