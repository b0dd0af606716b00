// The operator page: every event with its line, admission rate and ETA
// accuracy over the last two minutes, its schedule (scheduled -> prequeue ->
// open, with countdowns), its pre-queue draw (the commitment, then the seed,
// the entrants and their digest) and its end; the levers an operator pulls:
// create and schedule an event, pause/resume, the admission rate, the message
// to everyone waiting, end the sale, and delete an ended event; admission
// control: adaptive outflow (with a chart of the controller's decisions,
// polled from GET .../adaptive), a cap on active sessions and the join
// challenge, in the new-event form and on each card.
//
// The admin token lives in sessionStorage only: it dies with the tab and is
// never written anywhere another tab or a later visitor could read it.
//
// Times: the schedule is entered and shown in the operator's time zone
// (datetime-local inputs), sent as RFC 3339 with the zone's offset, and the
// countdowns run on the gateway's clock (estimated from the feed's `t`).

const TOKEN_KEY = 'wr:admin-token';
/** samples kept per event (the feed sends about one per second) */
const SAMPLES = 120;
const WINDOW_MS = 120_000;
const W = 120;
const H = 36;
const PAD = 2;
const SVG_NS = 'http://www.w3.org/2000/svg';
const STATES = ['scheduled', 'prequeue', 'open', 'paused', 'closed', 'ended'];
const REASON_RE = /^[a-z0-9_]{1,32}$/;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** a card missing from this many consecutive event lists is gone (deleted elsewhere) */
const MISSING_LISTS = 2;
/** the adaptive controller's reasons, as an operator reads them */
const REASON_TEXT = {
  healthy: 'healthy: raising',
  latency: 'latency over objective: cut',
  errors: 'errors over objective: cut',
  cooling_down: 'cooling down after a cut',
  no_data: 'not enough calls to judge',
  at_ceiling: 'at ceiling',
  at_floor: 'at floor',
};
/** decisions that cut the rate (at_floor: a cut that the floor stopped) */
const CUTS = new Set(['latency', 'errors', 'at_floor']);
/** the decision log is polled every controller step, within these bounds (ms) */
const ALOG_POLL_MIN = 1000;
const ALOG_POLL_MAX = 5000;
const ALOG_POLL_DEFAULT = 3000;
/** the adaptive charts' size when they are not laid out (hidden): they are drawn at their size in CSS pixels */
const AW = 320;
const AH = 64;

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const int = new Intl.NumberFormat();
const dec = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
const fmtWhen = new Intl.DateTimeFormat(undefined, {
  weekday: 'short',
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  timeZoneName: 'short',
});
const fmtClock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

/**
 * @typedef {{ el: HTMLElement, samples: any[], cfg: Record<string, any>, draw: any, drawAt: number, drawBusy: boolean,
 *   history: { state: string, at: number }[], missing: number, deleting: boolean,
 *   alog: any, alogAt: number, alogBusy: boolean, policy?: ReturnType<typeof policyControls>, showNotice?: (m: any) => void }} Card
 */
/** @type {Map<string, Card>} */
const events = new Map();
/** ids deleted from this page: late feed messages read before the deletion must not bring the card back */
const deletedAt = new Map();
let token = '';
let feed = null;
let feedTimer = 0;
let feedAttempt = 0;
let clockTimer = 0;
/** gateway clock minus this browser's clock, ms (from the feed) */
let skew = 0;
const now = () => Date.now() + skew;

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    /** the rest of the contract error body: reason, state, ... */
    this.details = details ?? {};
  }
}

// ---------------------------------------------------------------------------
// API

/** The admin API (with the token) or, with `pub`, a public endpoint (without it). */
async function api(method, path, body, pub = false) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { ...(pub ? {} : { Authorization: `Bearer ${token}` }), ...(body ? { 'Content-Type': 'application/json' } : {}) },
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
  if (!res.ok) {
    const e = json?.error ?? {};
    throw new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? `HTTP ${res.status}`, e);
  }
  return json;
}

const eventPath = (id) => `/api/v1/admin/events/${encodeURIComponent(id)}`;

/** The contract error, as an operator reads it: code, text and the finer reason/state. */
function describeError(err) {
  if (!(err instanceof ApiError)) return String(err?.message ?? err);
  const extra = [];
  if (err.details.reason) extra.push(`field/reason: ${err.details.reason}`);
  if (err.details.state) extra.push(`event state: ${err.details.state}`);
  if (err.details.trace_id) extra.push(`trace ${err.details.trace_id}`);
  return `${err.code}: ${err.message}${extra.length ? ` (${extra.join('; ')})` : ''}`;
}

function showError(el, text) {
  el.textContent = text ?? '';
  el.hidden = !text;
}

// ---------------------------------------------------------------------------
// times

const pad = (n, w = 2) => String(n).padStart(w, '0');

/**
 * A datetime-local value ("2026-12-24T10:00" or with seconds) read in the
 * operator's time zone, as RFC 3339 with that zone's offset at that instant.
 * null for an empty value; { error } for a time that does not exist here
 * (skipped by a clock change).
 */
function localToRfc3339(v) {
  if (!v) return null;
  const m = /^(\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(v);
  if (!m) return { error: 'is not a date and time' };
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => Number(x ?? 0));
  const dt = new Date(y, mo - 1, d, h, mi, s);
  if (dt.getFullYear() !== y || dt.getMonth() !== mo - 1 || dt.getDate() !== d || dt.getHours() !== h || dt.getMinutes() !== mi) {
    return { error: `does not exist in ${TZ} (the clocks change then)` };
  }
  const off = -dt.getTimezoneOffset();
  const a = Math.abs(off);
  const iso = `${pad(y, 4)}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(s)}${off >= 0 ? '+' : '-'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
  return { iso, ms: dt.getTime() };
}

/** An RFC 3339 time as a datetime-local value in the operator's zone. */
function isoToLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const when = (iso) => (iso ? fmtWhen.format(new Date(iso)) : '');

/** A <time> element: local time with the zone, the exact instant in its title. */
function timeEl(iso) {
  const t = document.createElement('time');
  t.dateTime = iso;
  t.title = iso;
  t.textContent = when(iso);
  return t;
}

function setTime(dd, iso, none) {
  if (iso) dd.replaceChildren(timeEl(iso));
  else dd.textContent = none;
}

/** "4 min 05 s" */
function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 172_800) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** Under each datetime-local input: what it means (local time with the zone, or why it cannot be used). */
function wireWhen(input, out) {
  const show = () => {
    const r = localToRfc3339(input.value);
    input.removeAttribute('aria-invalid');
    if (!r) out.textContent = '';
    else if (r.error) {
      out.textContent = `This time ${r.error}.`;
      input.setAttribute('aria-invalid', 'true');
    } else out.textContent = `${when(r.iso)} · ${r.iso}`;
  };
  input.addEventListener('input', show);
  input.addEventListener('change', show);
  return show;
}

/**
 * Reads the schedule inputs into body fields (RFC 3339), or throws an Error
 * with the `input` to fix. `onlyChanged`: only the inputs the operator
 * touched (a card's form), where an emptied end time removes it (null).
 */
function readTimes(inputs, onlyChanged = false) {
  const out = {};
  for (const input of inputs) {
    if (input.disabled || (onlyChanged && input.dataset.dirty !== '1')) continue;
    const r = localToRfc3339(input.value);
    if (!r) {
      if (onlyChanged && input.dataset.field === 'ends_at') out.ends_at = null;
      continue;
    }
    if (r.error) throw Object.assign(new Error(`${labelOf(input)}: this time ${r.error}.`), { input });
    out[input.dataset.field] = r.iso;
  }
  return out;
}

const labelOf = (input) => (input.closest('label')?.firstChild?.textContent ?? input.dataset.field ?? '').trim();

/** The API named a field (`reason`): mark that input and take the operator to it. */
function markField(inputs, field) {
  const input = inputs.find((i) => i.dataset.field === field);
  if (!input) return;
  input.setAttribute('aria-invalid', 'true');
  input.focus();
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
  reconcile(list?.events ?? []);
  renderEmpty();
  openFeed();
  clearInterval(clockTimer);
  clockTimer = setInterval(tickClock, 500);
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
  clearInterval(clockTimer);
  events.clear();
  $('events').replaceChildren();
  showLogin(message);
}

/** Every handler's answer to a refused token. */
function refused(err) {
  if (err?.status === 401) {
    signOut('That admin token was refused.');
    return true;
  }
  return false;
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
    if (typeof m?.t === 'number') skew = m.t - Date.now();
    if (m?.type === 'event' && typeof m.event_id === 'string') onSample(m);
    else if (m?.type === 'events' && Array.isArray(m.event_ids)) onList(m.event_ids);
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
    // catch up on events created or deleted while we were away, then listen again
    try {
      const list = await api('GET', '/api/v1/admin/events');
      reconcile(list?.events ?? []);
    } catch (err) {
      if (refused(err)) return;
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

/** The gateway's list of every event: cards missing from it twice in a row are gone (deleted elsewhere). */
function onList(ids) {
  const present = new Set(ids);
  for (const [id, ev] of events) {
    if (present.has(id)) ev.missing = 0;
    else if (++ev.missing >= MISSING_LISTS) removeCard(id);
  }
  $('feed').dataset.listedAt = String(Date.now());
}

function reconcile(list) {
  for (const e of list) upsert(e, { stale: true });
  onList(list.map((e) => e.event_id));
  renderEmpty();
}

// ---------------------------------------------------------------------------
// events

function renderEmpty() {
  $('empty').hidden = events.size > 0;
}

function removeCard(id) {
  const ev = events.get(id);
  if (!ev) return;
  ev.el.remove();
  events.delete(id);
  renderEmpty();
}

/** Creates the event's card if it is new; merges what `e` says into it and shows it. */
function upsert(e, { stale = false } = {}) {
  const id = e.event_id;
  const gone = deletedAt.get(id);
  if (gone !== undefined) {
    // a feed message (or a read) made before the deletion: ignore it for a while
    if (stale && Date.now() - gone < 5000) return undefined;
    deletedAt.delete(id);
  }
  let ev = events.get(id);
  if (!ev) {
    const tpl = /** @type {HTMLTemplateElement} */ ($('event-template'));
    const el = /** @type {HTMLElement} */ (tpl.content.firstElementChild.cloneNode(true));
    el.dataset.eventId = id;
    el.dataset.testid = 'event';
    el.querySelector('.event-id').textContent = id;
    const headingId = `ev-${id}`;
    el.querySelector('.event-id').id = headingId;
    el.querySelector('article').setAttribute('aria-labelledby', headingId);
    ev = { el, samples: [], cfg: {}, draw: null, drawAt: 0, drawBusy: false, history: [], missing: 0, deleting: false, alog: null, alogAt: 0, alogBusy: false };
    events.set(id, ev);
    wireCard(id, ev);
    // keep the list sorted by event id
    const list = $('events');
    const next = [...list.children].find((c) => /** @type {HTMLElement} */ (c).dataset.eventId > id);
    list.insertBefore(el, next ?? null);
    renderEmpty();
    // the whole configuration (the list and an old gateway's feed do not carry all of it) and the message
    void loadEvent(id);
  }
  ev.missing = 0;
  for (const [k, v] of Object.entries(e)) if (v !== undefined && k !== 'type' && k !== 'rate') ev.cfg[k] = v;
  if (typeof e.rate === 'number') ev.cfg.rate = e.rate;
  render(id, ev);
  return ev;
}

async function loadEvent(id) {
  try {
    const r = await api('GET', eventPath(id));
    const ev = upsert(r, { stale: true });
    ev?.showNotice?.(r.message);
  } catch (err) {
    refused(err);
    // 404: an event only seen in the feed (not configured yet), or deleted meanwhile
  }
}

/** Shows everything known about the event. */
function render(id, ev) {
  const c = ev.cfg;
  const q = (sel) => ev.el.querySelector(sel);
  const state = STATES.includes(c.state) ? c.state : 'closed';
  if (ev.history.at(-1)?.state !== state) {
    ev.history.push({ state, at: Date.now() });
    if (ev.history.length > 8) ev.history.shift();
  }
  ev.el.dataset.state = state;
  const badge = q('.event-state');
  badge.textContent = state;
  badge.dataset.state = state;
  q('.history').textContent = `Seen here: ${ev.history.map((h) => `${h.state} ${fmtClock.format(h.at)}`).join(' → ')}`;

  // figures
  q('.f-in-line').textContent = int.format(c.in_line ?? 0);
  q('.f-waiting').textContent = int.format(c.waiting ?? 0);
  q('.f-ready').textContent = int.format(c.ready ?? 0);
  q('.f-access').textContent = `${c.access ?? '–'} · ${typeof c.burst === 'number' ? int.format(c.burst) : '–'}`;
  q('.f-sessions').textContent = c.max_active_sessions
    ? `${typeof c.active_sessions === 'number' ? `${int.format(c.active_sessions)} of ` : 'at most '}${int.format(c.max_active_sessions)}`
    : 'no cap';
  q('.f-challenge').textContent = challengeText(c.challenge);

  // schedule
  const scheduled = Boolean(c.starts_at);
  const preqSame = scheduled && c.prequeue_opens_at === c.starts_at;
  q('.t-prequeue').hidden = !scheduled;
  q('.t-starts').hidden = !scheduled;
  setTime(q('.f-prequeue'), preqSame ? null : c.prequeue_opens_at, 'no pre-queue (opens at the start)');
  setTime(q('.f-starts'), c.starts_at, '–');
  setTime(q('.f-ends'), c.ends_at, 'no end time');
  const ended = state === 'ended';
  const endedLine = q('.ended-line');
  endedLine.hidden = !ended;
  if (ended) {
    endedLine.replaceChildren(
      'Ended ',
      c.ended_at ? timeEl(c.ended_at) : '(time unknown)',
      ' · reason: ',
      Object.assign(document.createElement('strong'), { className: 'reason', textContent: c.end_reason ?? 'unknown' }),
      typeof c.ended_total === 'number' ? ` · ${int.format(c.ended_total)} waiting let go` : '',
    );
  }
  renderNext(ev);

  // the draw
  const drawBox = q('.draw');
  drawBox.hidden = !c.draw_commitment;
  if (c.draw_commitment) {
    renderDraw(id, ev);
    maybeFetchDraw(id, ev);
  }

  // controls by state
  const toggle = /** @type {HTMLButtonElement} */ (q('.toggle'));
  toggle.hidden = !['open', 'paused', 'closed'].includes(state);
  toggle.textContent = state === 'open' ? 'Pause admissions' : state === 'closed' ? 'Reopen (admit again)' : 'Resume admissions';
  toggle.setAttribute('aria-describedby', `ev-${id}`);
  // do not overwrite what the operator is typing
  const input = /** @type {HTMLInputElement} */ (q('.rate-input'));
  if (document.activeElement !== input && input.dataset.dirty !== '1' && typeof c.rate === 'number') input.value = String(c.rate);

  q('.rate-adaptive').hidden = !c.adaptive;

  renderScheduleForm(ev, state);
  q('.ac-panel').hidden = ended;
  ev.policy?.fill(c);
  renderAdaptive(ev);
  maybeFetchAdaptive(id, ev);
  q('.end-panel').hidden = ended;
  q('.delete-panel').hidden = !ended;
}

/** The countdown to the next transition, on the gateway's clock. */
function renderNext(ev) {
  const c = ev.cfg;
  const el = ev.el.querySelector('.next');
  const t = now();
  const left = (iso) => Date.parse(iso) - t;
  const line = (label, iso, after) => {
    const ms = left(iso);
    return ms > 0 ? `${label} in ${duration(ms)}` : `${label}: due now${after ? `, ${after}` : ''}`;
  };
  let text = '';
  let next = '';
  switch (c.state) {
    case 'scheduled':
      if (c.prequeue_opens_at && c.prequeue_opens_at !== c.starts_at) {
        text = line('Pre-queue opens', c.prequeue_opens_at, 'on the next tick');
        next = 'prequeue';
      } else {
        text = line('Opens (no pre-queue)', c.starts_at, 'on the next tick');
        next = 'open';
      }
      break;
    case 'prequeue':
      text = line('The draw and admissions start', c.starts_at, 'on the next tick');
      next = 'open';
      break;
    case 'ended':
      text = 'Ended: nobody joins; ready users keep their window.';
      break;
    default:
      if (c.ends_at) {
        text = line('Ends by itself', c.ends_at, 'on the next tick');
        next = 'ended';
      } else text = c.state === 'open' ? 'Admitting. No end time set.' : c.state === 'paused' ? 'Paused: people keep their places. No end time set.' : 'Closed: nobody joins. No end time set.';
  }
  if (el.textContent !== text) el.textContent = text;
  el.dataset.next = next;
}

function tickClock() {
  for (const [id, ev] of events) {
    renderNext(ev);
    maybeFetchAdaptive(id, ev);
  }
}

function renderDraw(id, ev) {
  const q = (sel) => ev.el.querySelector(sel);
  const c = ev.cfg;
  const d = ev.draw;
  const drawn = d?.status === 'drawn' || Boolean(c.drawn_at);
  q('.d-commitment').textContent = c.draw_commitment;
  const st = q('.draw-status');
  st.textContent = drawn ? 'drawn' : 'committed';
  st.dataset.status = drawn ? 'drawn' : 'committed';
  q('.d-entrants').textContent = d ? `${int.format(d.entrants)}${drawn ? ' drawn' : ' so far'}` : '–';
  for (const x of ev.el.querySelectorAll('.d-after')) /** @type {HTMLElement} */ (x).hidden = !(drawn && d?.seed);
  q('.d-before').hidden = drawn;
  q('.d-seed').textContent = d?.seed ?? '';
  q('.d-digest').textContent = d?.entrants_digest ?? '';
  setTime(q('.d-drawn'), d?.drawn_at ?? c.drawn_at, '–');
  const link = /** @type {HTMLAnchorElement} */ (q('.d-link'));
  link.href = `/api/v1/events/${encodeURIComponent(id)}/draw`;
  link.textContent = `/api/v1/events/${id}/draw`;
  q('.d-verify').textContent = `npm run verify-draw -- ${location.origin} ${id}`;
}

/**
 * The public draw record: once when the commitment is first seen, every few
 * seconds in the pre-queue (the entrant count), and once drawn (the seed and
 * digest; it never changes after that).
 */
function maybeFetchDraw(id, ev) {
  const c = ev.cfg;
  const d = ev.draw;
  if (ev.drawBusy || ev.deleting) return;
  const age = Date.now() - ev.drawAt;
  const due =
    !d ||
    (c.drawn_at && d.status !== 'drawn' && age > 500) ||
    (d.status === 'drawn' && !d.entrants_digest && age > 3000) ||
    (c.state === 'prequeue' && age > 3000) ||
    (c.state === 'scheduled' && age > 15_000);
  if (!due) return;
  ev.drawBusy = true;
  ev.drawAt = Date.now();
  api('GET', `/api/v1/events/${encodeURIComponent(id)}/draw`, undefined, true)
    .then((r) => {
      ev.draw = r;
      if (events.get(id) === ev) renderDraw(id, ev);
    })
    .catch(() => undefined) // no draw (deleted) or a blip: the next feed message tries again
    .finally(() => {
      ev.drawBusy = false;
    });
}

function renderScheduleForm(ev, state) {
  const q = (sel) => ev.el.querySelector(sel);
  const beforeStart = state === 'scheduled' || state === 'prequeue';
  const ended = state === 'ended';
  const panel = /** @type {HTMLDetailsElement} */ (q('.sched-panel'));
  panel.hidden = ended;
  for (const [cls, field, enabled] of [
    ['.s-prequeue', 'prequeue_opens_at', beforeStart],
    ['.s-starts', 'starts_at', beforeStart],
    ['.s-ends', 'ends_at', !ended],
  ]) {
    const input = /** @type {HTMLInputElement} */ (q(cls));
    input.disabled = !enabled;
    const label = input.closest('label');
    label.classList.toggle('locked', !enabled);
    label.title = enabled ? '' : field === 'ends_at' ? 'The event has ended.' : 'Only before the start (scheduled or pre-queue).';
    if (input.dataset.dirty !== '1' && document.activeElement !== input) {
      const v = isoToLocal(ev.cfg[field]);
      if (input.value !== v) {
        input.value = v;
        input.dispatchEvent(new Event('change'));
      }
    }
  }
  q('.s-prequeue-l').hidden = !beforeStart && !ev.cfg.starts_at;
  q('.s-starts-l').hidden = !beforeStart && !ev.cfg.starts_at;
  /** @type {HTMLButtonElement} */ (q('.s-clear-end')).hidden = !ev.cfg.ends_at;
}

function wireCard(id, ev) {
  const q = (sel) => ev.el.querySelector(sel);
  const msg = q('.event-msg');
  for (const tz of ev.el.querySelectorAll('.tz-name')) tz.textContent = TZ;
  const input = /** @type {HTMLInputElement} */ (q('.rate-input'));
  input.addEventListener('input', () => {
    input.dataset.dirty = '1';
  });
  q('.toggle').addEventListener('click', async (e) => {
    const btn = /** @type {HTMLButtonElement} */ (e.currentTarget);
    const state = ev.cfg.state === 'open' ? 'paused' : 'open';
    btn.disabled = true;
    try {
      const r = await api('PUT', eventPath(id), { state });
      upsert(r);
      msg.textContent = r.state === 'open' ? 'Admissions resumed.' : 'Admissions paused: people keep their places.';
    } catch (err) {
      if (refused(err)) return;
      msg.textContent = `Could not change the state: ${describeError(err)}.`;
    } finally {
      btn.disabled = false;
    }
  });
  q('.rate-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const rate = Number(input.value);
    if (!Number.isFinite(rate) || rate < 0.001 || rate > 100000) {
      msg.textContent = 'The rate must be between 0.001 and 100000 admissions per second.';
      input.focus();
      return;
    }
    try {
      const r = await api('PUT', eventPath(id), { rate });
      input.dataset.dirty = '';
      upsert(r);
      msg.textContent = `Rate set to ${dec.format(r.rate)} per second. The ETA history restarts at the new rate.`;
    } catch (err) {
      if (refused(err)) return;
      msg.textContent = `Could not set the rate: ${describeError(err)}.`;
    }
  });
  wireNotice(id, ev, msg);
  wirePolicy(id, ev, msg);
  wireSchedule(id, ev, msg);
  wireEnd(id, ev, msg);
  wireDelete(id, ev, msg);
}

/** The operator's message: English and Korean, published to every open page of the event. */
function wireNotice(id, ev, msg) {
  const q = (sel) => ev.el.querySelector(sel);
  const en = /** @type {HTMLTextAreaElement} */ (q('.notice-en'));
  const ko = /** @type {HTMLTextAreaElement} */ (q('.notice-ko'));
  ev.showNotice = (m) => {
    en.value = m?.en ?? '';
    ko.value = m?.ko ?? '';
  };
  const publish = async (message, done) => {
    try {
      const r = await api('PUT', eventPath(id), { message });
      upsert(r);
      ev.showNotice(r.message);
      msg.textContent = done;
    } catch (err) {
      if (refused(err)) return;
      msg.textContent = `Could not change the message: ${describeError(err)}.`;
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

/** Schedule edits: the pre-queue and start times before the start, the end time until the end. */
function wireSchedule(id, ev, msg) {
  const q = (sel) => ev.el.querySelector(sel);
  const form = /** @type {HTMLFormElement} */ (q('.sched-form'));
  const err = /** @type {HTMLElement} */ (q('.s-error'));
  const inputs = /** @type {HTMLInputElement[]} */ ([...form.querySelectorAll('input[type="datetime-local"]')]);
  for (const i of inputs) {
    wireWhen(i, /** @type {HTMLElement} */ (i.parentElement.querySelector('output')));
    i.addEventListener('input', () => {
      i.dataset.dirty = '1';
    });
  }
  const send = async (body, done) => {
    showError(err, '');
    try {
      const r = await api('PUT', eventPath(id), body);
      for (const i of inputs) i.dataset.dirty = '';
      upsert(r);
      msg.textContent = done;
    } catch (e) {
      if (refused(e)) return;
      showError(err, `Not saved: ${describeError(e)}${e.code === 'EVENT_STATE_CONFLICT' ? '. The pre-queue and start times change only before the start; the end time only before the end.' : ''}`);
      if (e.details?.reason) markField(inputs, e.details.reason);
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    let body;
    try {
      // only what the operator changed: an unchanged start would still be refused once the event started
      body = readTimes(inputs, true);
    } catch (x) {
      showError(err, x.message);
      x.input?.focus();
      return;
    }
    if (body.ends_at === null && !ev.cfg.ends_at) delete body.ends_at;
    if (Object.keys(body).length === 0) {
      showError(err, 'Nothing changed.');
      return;
    }
    void send(body, 'Schedule saved.');
  });
  q('.s-clear-end').addEventListener('click', () => void send({ ends_at: null }, 'End time removed: the event runs until you end it.'));
}

/** End the sale: a reason, an optional message, and a confirmation. */
function wireEnd(id, ev, msg) {
  const q = (sel) => ev.el.querySelector(sel);
  const form = /** @type {HTMLFormElement} */ (q('.end-form'));
  const reasonSel = /** @type {HTMLSelectElement} */ (q('.end-reason'));
  const other = /** @type {HTMLInputElement} */ (q('.end-other'));
  const otherL = /** @type {HTMLElement} */ (q('.end-other-l'));
  const confirmBox = /** @type {HTMLElement} */ (q('.end-confirm'));
  const err = /** @type {HTMLElement} */ (q('.end-error'));
  const en = /** @type {HTMLTextAreaElement} */ (q('.end-en'));
  const ko = /** @type {HTMLTextAreaElement} */ (q('.end-ko'));
  let pending = null;
  const cancel = () => {
    confirmBox.hidden = true;
    pending = null;
  };
  reasonSel.addEventListener('change', () => {
    otherL.hidden = reasonSel.value !== 'other';
    if (!otherL.hidden) other.focus();
    cancel();
  });
  for (const x of [other, en, ko]) x.addEventListener('input', cancel);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    showError(err, '');
    other.removeAttribute('aria-invalid');
    const reason = reasonSel.value === 'other' ? other.value.trim() : reasonSel.value;
    if (!REASON_RE.test(reason)) {
      showError(err, 'The reason is 1–32 characters of a–z, 0–9 and _ (for example postponed).');
      other.setAttribute('aria-invalid', 'true');
      other.focus();
      return;
    }
    const message = {};
    if (en.value.trim()) message.en = en.value.trim();
    if (ko.value.trim()) message.ko = ko.value.trim();
    pending = { reason, ...(Object.keys(message).length ? { message } : {}) };
    const c = ev.cfg;
    q('.end-confirm .confirm-text').textContent =
      `End ${id} now with the reason “${reason}”? ${int.format(c.waiting ?? 0)} waiting (and everyone in the pre-queue) are told at once and let go; ` +
      `${int.format(c.ready ?? 0)} ready keep their window to enter. Nobody can join again. This cannot be undone.`;
    confirmBox.hidden = false;
    /** @type {HTMLButtonElement} */ (q('.end-yes')).focus();
  });
  q('.end-no').addEventListener('click', () => {
    cancel();
    /** @type {HTMLButtonElement} */ (q('.end-ask')).focus();
  });
  q('.end-yes').addEventListener('click', async (e) => {
    if (!pending) return;
    const btn = /** @type {HTMLButtonElement} */ (e.currentTarget);
    btn.disabled = true;
    const body = pending;
    try {
      const r = await api('POST', `${eventPath(id)}/end`, body);
      cancel();
      upsert(r);
      if (r.message) ev.showNotice?.(r.message);
      msg.textContent =
        r.end_reason === body.reason
          ? `Ended (${r.end_reason}). Everyone waiting is being told now; ready users keep their window.`
          : `It had already ended (${r.end_reason}).`;
      /** @type {HTMLButtonElement} */ (q('.delete-ask')).focus();
    } catch (x) {
      if (refused(x)) return;
      showError(err, `Not ended: ${describeError(x)}.`);
    } finally {
      btn.disabled = false;
    }
  });
}

/** Delete an ended event: a confirmation, and the 409 about ready users with the choice to force. */
function wireDelete(id, ev, msg) {
  const q = (sel) => ev.el.querySelector(sel);
  const confirmBox = /** @type {HTMLElement} */ (q('.delete-confirm'));
  const forceBox = /** @type {HTMLElement} */ (q('.delete-force'));
  const err = /** @type {HTMLElement} */ (q('.delete-error'));
  const reset = () => {
    confirmBox.hidden = true;
    forceBox.hidden = true;
    showError(err, '');
  };
  q('.delete-ask').addEventListener('click', () => {
    reset();
    q('.delete-confirm .confirm-text').textContent = `Delete ${id} and every key it has? Its line, its draw record and its counters go; this cannot be undone.`;
    confirmBox.hidden = false;
    /** @type {HTMLButtonElement} */ (q('.delete-yes')).focus();
  });
  for (const b of ev.el.querySelectorAll('.delete-no')) {
    b.addEventListener('click', () => {
      reset();
      /** @type {HTMLButtonElement} */ (q('.delete-ask')).focus();
    });
  }
  const del = async (btn, force) => {
    btn.disabled = true;
    ev.deleting = true;
    try {
      const r = await api('DELETE', `${eventPath(id)}${force ? '?force=true' : ''}`);
      deletedAt.set(id, Date.now());
      removeCard(id);
      $('dash-msg').textContent = `Deleted ${id} (${int.format(r.deleted_keys)} keys).`;
    } catch (x) {
      ev.deleting = false;
      if (refused(x)) return;
      confirmBox.hidden = true;
      if (x.code === 'EVENT_STATE_CONFLICT' && x.details.state === 'ended') {
        // ready users still hold a window: their admission goes with the keys
        const n = ev.cfg.ready ?? 0;
        const who = n === 1 ? '1 person who was called still has' : n > 1 ? `${int.format(n)} people who were called still have` : 'People who were called still have';
        q('.force-text').textContent =
          `Not deleted yet (409 ${x.code}): ${x.message}. ${who} their window to enter ` +
          `(${int.format(ev.cfg.ready_window_sec ?? 0)} s from being called). Deleting now takes their admission with the keys: ` +
          'they would be turned away at the door. Wait until Ready shows 0, or delete anyway.';
        forceBox.hidden = false;
        /** @type {HTMLButtonElement} */ (q('.delete-force-yes')).focus();
      } else if (x.code === 'EVENT_NOT_FOUND') {
        deletedAt.set(id, Date.now());
        removeCard(id);
        $('dash-msg').textContent = `${id} was already deleted.`;
      } else {
        showError(err, `Not deleted: ${describeError(x)}.`);
      }
    } finally {
      btn.disabled = false;
    }
  };
  q('.delete-yes').addEventListener('click', (e) => void del(/** @type {HTMLButtonElement} */ (e.currentTarget), false));
  q('.delete-force-yes').addEventListener('click', (e) => void del(/** @type {HTMLButtonElement} */ (e.currentTarget), true));
}

function onSample(m) {
  const { rate, ...rest } = m;
  const ev = upsert({ ...rest, rate: rate?.configured }, { stale: true });
  if (!ev) return;
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
// admission control: adaptive outflow, active sessions, join challenge

function challengeText(ch) {
  if (!ch) return 'none';
  if (ch.kind === 'pow') return `proof of work · difficulty ${typeof ch.difficulty === 'number' ? ch.difficulty : 'default'}`;
  if (ch.kind === 'external') return 'external verifier';
  return String(ch.kind ?? 'unknown');
}

/** a share (0..1) as a percentage without float noise: 0.07 -> 7 */
const pct = (share) => Number((share * 100).toFixed(4));
/** a percentage back to the share the API takes: 7 -> 0.07 */
const share = (p) => Number((p / 100).toFixed(6));

/** The same policy in one shape, for comparing what the page holds with what the gateway has. */
function policyKey(a) {
  return a ? JSON.stringify([a.floor, a.ceiling, a.p95_ms, a.error_share]) : 'null';
}
function challengeKey(c) {
  return c ? JSON.stringify([c.kind, c.kind === 'pow' ? (c.difficulty ?? null) : null]) : 'null';
}

/** Clones the admission-control fieldset into `slot`, its ids made unique with `prefix`. */
function mountPolicy(slot, prefix) {
  const tpl = /** @type {HTMLTemplateElement} */ ($('policy-template'));
  const frag = /** @type {DocumentFragment} */ (tpl.content.cloneNode(true));
  for (const el of frag.querySelectorAll('[data-id]')) el.id = `${prefix}-${/** @type {HTMLElement} */ (el).dataset.id}`;
  for (const el of frag.querySelectorAll('[data-describedby]')) {
    el.setAttribute('aria-describedby', /** @type {HTMLElement} */ (el).dataset.describedby.split(' ').map((x) => `${prefix}-${x}`).join(' '));
  }
  slot.replaceChildren(frag);
  return policyControls(/** @type {HTMLElement} */ (slot.firstElementChild));
}

/**
 * The controls of one admission-control fieldset: shows the fields that
 * apply, says what the adaptive policy means as it is typed (and that the
 * floor is above the ceiling, before anything is sent), reads them into the
 * API's fields, and fills them from an event (unless the operator is editing).
 */
function policyControls(root) {
  const q = (sel) => /** @type {any} */ (root.querySelector(sel));
  /** @type {HTMLInputElement} */ const aOn = q('.a-on');
  /** @type {HTMLInputElement} */ const floor = q('.a-floor');
  /** @type {HTMLInputElement} */ const ceiling = q('.a-ceiling');
  /** @type {HTMLInputElement} */ const p95 = q('.a-p95');
  /** @type {HTMLInputElement} */ const errors = q('.a-errors');
  /** @type {HTMLInputElement} */ const mOn = q('.m-on');
  /** @type {HTMLInputElement} */ const mN = q('.m-n');
  /** @type {HTMLSelectElement} */ const cKind = q('.c-kind');
  /** @type {HTMLInputElement} */ const cDiff = q('.c-diff');
  const out = q('.a-out');
  const inputs = [aOn, floor, ceiling, p95, errors, mOn, mN, cKind, cDiff];
  const numOrNull = (i) => (i.value.trim() === '' ? null : Number(i.value));

  const sync = () => {
    q('.a-fields').hidden = !aOn.checked;
    q('.m-l').hidden = !mOn.checked;
    q('.c-diff-l').hidden = cKind.value !== 'pow';
    ceiling.removeAttribute('aria-invalid');
    out.dataset.invalid = '';
    if (!aOn.checked) {
      out.textContent = 'Off: the rate is the one set for the event.';
      return;
    }
    const f = numOrNull(floor);
    const c = numOrNull(ceiling);
    if (f !== null && c !== null && f > c) {
      out.textContent = `The floor (${dec.format(f)}) is above the ceiling (${dec.format(c)}): raise the ceiling or lower the floor.`;
      out.dataset.invalid = '1';
      ceiling.setAttribute('aria-invalid', 'true');
      return;
    }
    const p = numOrNull(p95);
    const e = numOrNull(errors);
    out.textContent =
      `The rate moves between ${f === null ? '(floor)' : dec.format(f)} and ${c === null ? '(ceiling)' : dec.format(c)} per second; ` +
      `it is cut when the reservation p95 goes over ${p === null ? '(objective)' : `${int.format(p)} ms`} ` +
      `or more than ${e === null ? '(objective)' : `${dec.format(e)} %`} of the calls fail.`;
  };
  for (const i of inputs) {
    i.addEventListener('input', () => {
      root.dataset.dirty = '1';
      i.removeAttribute('aria-invalid');
      sync();
    });
    i.addEventListener('change', sync);
  }

  /** The fields as the API takes them (null = off), or throws an Error with the `input` to fix. */
  const read = () => {
    const fail = (message, input) => {
      throw Object.assign(new Error(message), { input });
    };
    const body = {};
    if (aOn.checked) {
      const f = numOrNull(floor);
      const c = numOrNull(ceiling);
      const p = numOrNull(p95);
      const e = numOrNull(errors);
      if (f === null || !Number.isFinite(f) || f < 0.001 || f > 100000) fail('Adaptive outflow: the floor is 0.001–100000 admissions per second.', floor);
      if (c === null || !Number.isFinite(c) || c < 0.001 || c > 100000) fail('Adaptive outflow: the ceiling is 0.001–100000 admissions per second.', ceiling);
      if (f > c) fail(`Adaptive outflow: the floor (${dec.format(f)}) must not be above the ceiling (${dec.format(c)}).`, floor);
      if (p === null || !Number.isInteger(p) || p < 1 || p > 60000) fail('Adaptive outflow: the p95 objective is a whole number of milliseconds, 1–60000.', p95);
      if (e === null || !Number.isFinite(e) || e < 0 || e > 100) fail('Adaptive outflow: the error-share objective is 0–100 %.', errors);
      body.adaptive = { floor: f, ceiling: c, p95_ms: p, error_share: share(e) };
    } else body.adaptive = null;
    if (mOn.checked) {
      const n = numOrNull(mN);
      if (n === null || !Number.isInteger(n) || n < 1 || n > 1_000_000) fail('Active sessions: N is a whole number, 1–1000000.', mN);
      body.max_active_sessions = n;
    } else body.max_active_sessions = null;
    if (cKind.value === 'pow') {
      const d = numOrNull(cDiff);
      if (d !== null && (!Number.isInteger(d) || d < 1 || d > 32)) fail('Proof of work: the difficulty is a whole number of bits, 1–32 (or empty for the gateway default).', cDiff);
      body.challenge = d === null ? { kind: 'pow' } : { kind: 'pow', difficulty: d };
    } else if (cKind.value === 'external') body.challenge = { kind: 'external' };
    else body.challenge = null;
    return body;
  };

  /** Shows the event's settings, unless the operator is editing them. */
  const fill = (c) => {
    if (root.dataset.dirty === '1' || root.contains(document.activeElement)) return;
    const a = c.adaptive;
    aOn.checked = Boolean(a);
    if (a) {
      floor.value = String(a.floor);
      ceiling.value = String(a.ceiling);
      p95.value = String(a.p95_ms);
      errors.value = String(pct(a.error_share));
    }
    mOn.checked = Boolean(c.max_active_sessions);
    if (c.max_active_sessions) mN.value = String(c.max_active_sessions);
    cKind.value = c.challenge?.kind === 'pow' || c.challenge?.kind === 'external' ? c.challenge.kind : 'none';
    cDiff.value = c.challenge?.kind === 'pow' && typeof c.challenge.difficulty === 'number' ? String(c.challenge.difficulty) : '';
    sync();
  };

  /** The API named a field (`reason`): mark its input and take the operator to it. */
  const mark = (field) => {
    const i = field === 'adaptive' ? floor : field === 'max_active_sessions' ? mN : field === 'challenge' ? cKind : null;
    if (!i) return false;
    i.setAttribute('aria-invalid', 'true');
    i.focus();
    return true;
  };

  const clearMarks = () => {
    for (const i of inputs) i.removeAttribute('aria-invalid');
    sync();
  };
  /** Forgets the operator's edits: the next fill shows the event's settings again. */
  const reset = () => {
    root.dataset.dirty = '';
    clearMarks();
  };

  sync();
  return { root, read, fill, mark, reset, clearMarks };
}

/** A card's admission-control form: sends only what changed (re-sending adaptive outflow would restart the controller's record). */
function wirePolicy(id, ev, msg) {
  const q = (sel) => ev.el.querySelector(sel);
  const form = /** @type {HTMLFormElement} */ (q('.ac-form'));
  const err = /** @type {HTMLElement} */ (q('.ac-error'));
  const p = mountPolicy(/** @type {HTMLElement} */ (form.querySelector('.policy-slot')), `ac-${id}`);
  ev.policy = p;
  // closed without saving: the edits go, and the controls follow the event again
  q('.ac-panel').addEventListener('toggle', (e) => {
    if (/** @type {HTMLDetailsElement} */ (e.currentTarget).open) return;
    p.reset();
    showError(err, '');
    p.fill(ev.cfg);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(err, '');
    p.clearMarks();
    let read;
    try {
      read = p.read();
    } catch (x) {
      showError(err, x.message);
      x.input?.setAttribute('aria-invalid', 'true');
      x.input?.focus();
      return;
    }
    const c = ev.cfg;
    const body = {};
    if (policyKey(read.adaptive) !== policyKey(c.adaptive ?? null)) body.adaptive = read.adaptive;
    if ((read.max_active_sessions ?? null) !== (c.max_active_sessions ?? null)) body.max_active_sessions = read.max_active_sessions;
    if (challengeKey(read.challenge) !== challengeKey(c.challenge ?? null)) body.challenge = read.challenge;
    if (Object.keys(body).length === 0) {
      showError(err, 'Nothing changed.');
      return;
    }
    const btn = /** @type {HTMLButtonElement} */ (q('.ac-save'));
    btn.disabled = true;
    try {
      const r = await api('PUT', eventPath(id), body);
      p.reset();
      if ('adaptive' in body) {
        // a new policy: the controller starts over from the rate set
        ev.alog = null;
        ev.alogAt = 0;
      }
      upsert(r);
      const said = [];
      if ('adaptive' in body) said.push(r.adaptive ? `adaptive outflow ${dec.format(r.adaptive.floor)}–${dec.format(r.adaptive.ceiling)} per second` : 'adaptive outflow off');
      if ('max_active_sessions' in body) said.push(r.max_active_sessions ? `at most ${int.format(r.max_active_sessions)} active sessions` : 'no cap on active sessions');
      if ('challenge' in body) said.push(`join challenge: ${challengeText(r.challenge)}`);
      msg.textContent = `Saved: ${said.join('; ')}.`;
    } catch (x) {
      if (refused(x)) return;
      showError(err, `Not saved: ${describeError(x)}.`);
      p.mark(x.details?.reason);
    } finally {
      btn.disabled = false;
    }
  });
}

/** How often the decision log is read: one controller step, as the log's own spacing shows. */
function alogPollMs(ev) {
  const d = ev.alog?.decisions ?? [];
  if (d.length < 2) return ALOG_POLL_DEFAULT;
  const steps = [];
  for (let i = Math.max(1, d.length - 10); i < d.length; i++) steps.push(Date.parse(d[i].at) - Date.parse(d[i - 1].at));
  steps.sort((a, b) => a - b);
  return Math.min(ALOG_POLL_MAX, Math.max(ALOG_POLL_MIN, steps[Math.floor(steps.length / 2)] || ALOG_POLL_DEFAULT));
}

/** The controller's decisions (GET .../adaptive), every few seconds while adaptive outflow is on; slowly once ended. */
function maybeFetchAdaptive(id, ev) {
  if (!ev.cfg.adaptive) {
    ev.alog = null;
    return;
  }
  if (ev.alogBusy || ev.deleting || !token) return;
  const every = ev.cfg.state === 'ended' ? 15_000 : alogPollMs(ev);
  if (Date.now() - ev.alogAt < every) return;
  ev.alogBusy = true;
  ev.alogAt = Date.now();
  api('GET', `${eventPath(id)}/adaptive`)
    .then((r) => {
      if (events.get(id) !== ev) return;
      ev.alog = r;
      renderAdaptive(ev);
    })
    .catch((err) => {
      refused(err); // 404: deleted meanwhile; anything else: the next poll tries again
    })
    .finally(() => {
      ev.alogBusy = false;
    });
}

/** The adaptive outflow section: the policy, the last decision in words, and the charts. */
function renderAdaptive(ev) {
  const q = (sel) => ev.el.querySelector(sel);
  const box = /** @type {HTMLElement} */ (q('.adaptive'));
  const a = ev.cfg.adaptive ?? null;
  box.hidden = !a;
  if (!a) return;
  q('.a-policy').textContent = `${dec.format(a.floor)}–${dec.format(a.ceiling)} per second · p95 ≤ ${int.format(a.p95_ms)} ms · errors ≤ ${dec.format(pct(a.error_share))} %`;
  const d = ev.alog?.decisions ?? [];
  const last = d.at(-1);
  const reasonEl = /** @type {HTMLElement} */ (q('.a-reason'));
  const detail = q('.a-detail');
  if (!ev.alog) {
    reasonEl.textContent = 'Loading the controller’s decisions…';
    reasonEl.dataset.reason = '';
    detail.textContent = '';
  } else if (!last) {
    reasonEl.textContent = 'No decision yet: the controller looks every ADAPTIVE_INTERVAL_MS (3 s by default).';
    reasonEl.dataset.reason = '';
    detail.textContent = '';
  } else {
    reasonEl.replaceChildren('Last decision: ', Object.assign(document.createElement('strong'), { textContent: REASON_TEXT[last.reason] ?? last.reason }));
    reasonEl.dataset.reason = last.reason;
    detail.textContent =
      `${fmtClock.format(new Date(last.at))} · rate ${dec.format(last.rate)} per second · ` +
      (last.calls > 0
        ? `p95 ${int.format(last.p95_ms)} ms · ${dec.format(pct(last.error_share))} % failed · ${int.format(last.calls)} reservation calls in the window`
        : 'no reservation calls in the window') +
      (ev.cfg.adaptive_reason && ev.cfg.adaptive_at ? ` · last change of the rate: ${REASON_TEXT[ev.cfg.adaptive_reason] ?? ev.cfg.adaptive_reason}, ${fmtClock.format(new Date(ev.cfg.adaptive_at))}` : '');
  }

  const rows = d.map((x) => ({ ...x, t: Date.parse(x.at) }));
  // a pause longer than this (the controller stopped: lease moved, Redis away) breaks the lines
  const gapMs = Math.max(10_000, 5 * alogPollMs(ev));
  const cuts = rows.filter((r) => CUTS.has(r.reason));
  let peakRate = a.ceiling;
  let peakP95 = a.p95_ms;
  let peakErr = pct(a.error_share);
  for (const r of rows) {
    peakRate = Math.max(peakRate, r.rate);
    if (r.calls > 0) {
      peakP95 = Math.max(peakP95, r.p95_ms);
      peakErr = Math.max(peakErr, pct(r.error_share));
    }
  }
  decisionChart(/** @type {SVGSVGElement} */ (q('[data-chart="adaptive-rate"]')), rows, (r) => r.rate, {
    top: peakRate * 1.15,
    refs: [
      { v: a.ceiling, label: `ceiling ${dec.format(a.ceiling)}` },
      { v: a.floor, label: `floor ${dec.format(a.floor)}` },
    ],
    gapMs,
    marks: cuts,
    name: 'Admission rate set by the controller',
    label: (v) => `Admission rate set by the controller: now ${dec.format(v)} per second, between the floor ${dec.format(a.floor)} and the ceiling ${dec.format(a.ceiling)}`,
  });
  decisionChart(/** @type {SVGSVGElement} */ (q('[data-chart="adaptive-p95"]')), rows, (r) => (r.calls > 0 ? r.p95_ms : null), {
    top: Math.max(1, peakP95 * 1.2),
    refs: [{ v: a.p95_ms, label: `objective ${int.format(a.p95_ms)} ms` }],
    gapMs,
    marks: [],
    name: 'Reservation p95',
    label: (v) => `Reservation p95: last measured ${int.format(v)} ms, objective ${int.format(a.p95_ms)} ms`,
  });
  decisionChart(/** @type {SVGSVGElement} */ (q('[data-chart="adaptive-errors"]')), rows, (r) => (r.calls > 0 ? pct(r.error_share) : null), {
    top: Math.max(1, peakErr * 1.2),
    refs: [{ v: pct(a.error_share), label: `objective ${dec.format(pct(a.error_share))} %` }],
    gapMs,
    marks: [],
    name: 'Failed reservation calls',
    label: (v) => `Failed reservation calls: last measured ${dec.format(v)} %, objective ${dec.format(pct(a.error_share))} %`,
  });
  q('.a-span').textContent = rows.length
    ? `${int.format(rows.length)} decision${rows.length === 1 ? '' : 's'}, ${fmtClock.format(rows[0].t)}–${fmtClock.format(rows.at(-1).t)}`
    : '';
}

/**
 * One chart of the controller's decisions: time on x (the log's span), 0..top
 * on y, the reference lines (ceiling, floor, objective) dashed and labelled.
 * A null value (no calls to measure) or a long pause breaks the line; the
 * last point and the cuts are marked. Drawn in the chart's own CSS pixels
 * (redrawn with every feed message and on resize), so marks stay round and
 * labels keep their size on any card width.
 */
function decisionChart(svg, rows, value, { name, top, refs, gapMs, marks, label }) {
  const w = Math.round(svg.clientWidth) || AW;
  const h = Math.round(svg.clientHeight) || AH;
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const PL = 4;
  const PR = 6;
  const PT = 4;
  const PB = 4;
  const t0 = rows[0]?.t ?? 0;
  const t1 = rows.at(-1)?.t ?? 0;
  const x = (t) => (t1 > t0 ? PL + ((t - t0) / (t1 - t0)) * (w - PL - PR) : w - PR);
  const y = (v) => h - PB - (Math.max(0, Math.min(v, top)) / top) * (h - PT - PB);
  const el = (name, attrs, text) => {
    const n = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const nodes = [el('line', { x1: 0, x2: w, y1: h - PB, y2: h - PB, class: 'axis' })];
  for (const r of refs) {
    const yy = y(r.v).toFixed(2);
    nodes.push(el('line', { x1: 0, x2: w, y1: yy, y2: yy, class: 'ref' }));
    // the label above its line, or below it when the line is near the top
    const ly = Number(yy) < 14 ? Number(yy) + 12 : Number(yy) - 3;
    nodes.push(el('text', { x: w - PR, y: ly.toFixed(2), class: 'ref-label', 'text-anchor': 'end' }, r.label));
  }
  let d = '';
  let pen = false;
  let prevT = -Infinity;
  let lastPoint = null;
  let points = 0;
  for (const r of rows) {
    const v = value(r);
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      pen = false;
      continue;
    }
    if (r.t - prevT > gapMs) pen = false;
    d += `${pen ? 'L' : 'M'}${x(r.t).toFixed(2)} ${y(v).toFixed(2)} `;
    pen = true;
    prevT = r.t;
    lastPoint = { t: r.t, v };
    points++;
  }
  if (d) nodes.push(el('path', { d: d.trim(), class: 'series' }));
  for (const m of marks) {
    const v = value(m);
    if (typeof v === 'number') nodes.push(el('circle', { cx: x(m.t).toFixed(2), cy: y(v).toFixed(2), r: 2.5, class: 'cut' }));
  }
  if (lastPoint) nodes.push(el('circle', { cx: x(lastPoint.t).toFixed(2), cy: y(lastPoint.v).toFixed(2), r: 3, class: 'pt' }));
  else nodes.push(el('text', { x: (w / 2).toFixed(0), y: (h / 2 + 4).toFixed(0), class: 'empty-label', 'text-anchor': 'middle' }, rows.length ? 'no calls to measure' : 'no decisions yet'));
  svg.replaceChildren(...nodes);
  svg.dataset.points = String(points);
  svg.setAttribute('aria-label', lastPoint ? `${label(lastPoint.v)}; ${points} decisions shown` : `${name}: no data yet`);
}

// ---------------------------------------------------------------------------
// the new-event form

function wireNewEvent() {
  const form = /** @type {HTMLFormElement} */ ($('new-form'));
  const err = $('new-error');
  const ok = $('new-ok');
  const id = /** @type {HTMLInputElement} */ ($('new-id'));
  const rate = /** @type {HTMLInputElement} */ ($('new-rate'));
  const burst = /** @type {HTMLInputElement} */ ($('new-burst'));
  const access = /** @type {HTMLSelectElement} */ ($('new-access'));
  const state = /** @type {HTMLSelectElement} */ ($('new-state'));
  const times = /** @type {HTMLInputElement[]} */ ([$('new-prequeue'), $('new-starts'), $('new-ends')]);
  const policy = mountPolicy($('new-policy'), 'new');
  for (const tz of form.querySelectorAll('.tz-name')) tz.textContent = TZ;
  for (const i of times) wireWhen(i, /** @type {HTMLElement} */ ($(`${i.id}-out`)));
  const syncState = () => {
    state.disabled = Boolean(/** @type {HTMLInputElement} */ ($('new-starts')).value);
  };
  $('new-starts').addEventListener('input', syncState);
  $('new-starts').addEventListener('change', syncState);
  const fail = (text, input) => {
    showError(err, text);
    ok.textContent = '';
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(err, '');
    ok.textContent = '';
    for (const i of [id, rate, burst]) i.removeAttribute('aria-invalid');
    policy.clearMarks();
    const eventId = id.value.trim();
    if (!ID_RE.test(eventId)) return fail('The event id is 1–64 characters of A–Z, a–z, 0–9, _ and -.', id);
    const body = { access: access.value };
    if (rate.value !== '') {
      const r = Number(rate.value);
      if (!Number.isFinite(r) || r < 0.001 || r > 100000) return fail('The rate is 0.001–100000 admissions per second.', rate);
      body.rate = r;
    }
    if (burst.value !== '') {
      const b = Number(burst.value);
      if (!Number.isInteger(b) || b < 1 || b > 1_000_000) return fail('The burst is a whole number, 1–1000000.', burst);
      body.burst = b;
    }
    try {
      Object.assign(body, readTimes(times));
    } catch (x) {
      return fail(x.message, x.input);
    }
    try {
      // a new event has none of them: send only what is on
      for (const [k, v] of Object.entries(policy.read())) if (v !== null) body[k] = v;
    } catch (x) {
      return fail(x.message, x.input);
    }
    if (!body.starts_at) body.state = state.value;
    const btn = /** @type {HTMLButtonElement} */ ($('new-submit'));
    btn.disabled = true;
    try {
      // PUT creates or updates: refuse to change an existing event from the "new" form
      try {
        await api('GET', eventPath(eventId));
        return fail(`An event named ${eventId} exists already: change it on its card below.`, id);
      } catch (x) {
        if (refused(x)) return;
        if (x.status !== 404) throw x;
      }
      const r = await api('PUT', eventPath(eventId), body);
      upsert(r);
      ok.textContent =
        r.state === 'scheduled'
          ? `Created ${eventId}: scheduled. The draw's commitment is published at /api/v1/events/${eventId}/draw.`
          : `Created ${eventId}: ${r.state}.`;
      form.reset();
      for (const i of times) i.dispatchEvent(new Event('change'));
      syncState();
      policy.reset();
      events.get(eventId)?.el.scrollIntoView({ block: 'nearest' });
    } catch (x) {
      if (refused(x)) return;
      const field = x.details?.reason;
      const input = times.find((i) => i.dataset.field === field);
      fail(`Not created: ${describeError(x)}.`, input);
      if (!input) policy.mark(field);
    } finally {
      btn.disabled = false;
    }
  });
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
let resizeTimer = 0;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const ev of events.values()) renderAdaptive(ev);
  }, 100);
});
wireNewEvent();

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void signIn(saved);
else showLogin();
