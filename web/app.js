// The waiting-room page. All the protocol work (socket, polling fallback,
// reconnects, one place per browser) is in the client library; this file
// only turns its state into something people can read, hear and act on.
// Every text comes from the language catalogues (web/i18n/, through /i18n.js).
import { WaitingRoomClient } from '/client/waiting-room.js';
import {
  formatDateTime,
  formatDuration,
  formatDurationRange,
  formatNumber,
  formatPercent,
  formatTime,
  initI18n,
  onLanguageChange,
  pickText,
  setPlainText,
  setText,
  t,
} from '/i18n.js';

const EVENT_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** near the front every move is announced; further back at most every 10 s */
const NEAR_FRONT = 10;
const ANNOUNCE_EVERY_MS = 10_000;
const DEV_TOKEN_KEY = 'wr:dev-token';
const HANDOFF_KEY = 'wr:access-token';

// The ticket site hands a logged-in user over as /?event=<id>#access_token=<JWT>:
// a fragment never reaches a server (or its logs). Take it out of the address
// bar at once (history, bookmarks, screenshots, a shared link) and keep it for
// this tab only.
(function takeHandoff() {
  const h = new URLSearchParams(location.hash.slice(1));
  const t = h.get('access_token');
  if (!t) return;
  try {
    sessionStorage.setItem(HANDOFF_KEY, t);
  } catch {
    // storage refused: this page load still has it below
    window.__wrHandoff = t;
  }
  h.delete('access_token');
  const rest = h.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
})();

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

// ---------------------------------------------------------------------------
// small helpers

function decodeJwtPayload(jwt) {
  try {
    const part = String(jwt).split('.')[1] ?? '';
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    return JSON.parse(atob(b64));
  } catch {
    return null;
  }
}

function mmss(totalSec) {
  const s = Math.max(0, Math.round(totalSec));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

/** A countdown far ahead: m:ss, h:mm:ss, then days and h:mm:ss. */
function clock(totalSec) {
  const s = Math.max(0, Math.ceil(totalSec));
  if (s < 3600) return mmss(s);
  const two = (n) => String(n).padStart(2, '0');
  const hms = `${Math.floor((s % 86400) / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return s < 86400 ? hms : `${formatDuration(Math.floor(s / 86400), 'day')} ${hms}`;
}

/** A moment in the reader's time zone: the time alone today, with the date otherwise. */
function when(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toDateString() === new Date().toDateString() ? formatTime(d) : formatDateTime(d);
}

/** Half hours are precise enough this far out. */
const hours = (m) => Math.round((m / 60) * 2) / 2;
/** "5 min" / "5분", from 90 minutes on in (half) hours: "1.5 hr" / "1.5시간" */
const minutes = (m) => (m < 90 ? formatDuration(m, 'minute') : formatDuration(hours(m), 'hour'));

/** "2 minutes", "45 seconds": for announcements, where "1:59" reads badly. */
function spoken(sec) {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return formatDuration(s, 'second', 'long');
  return formatDuration(Math.round(s / 60), 'minute', 'long');
}

/**
 * The ETA as an honest range: the server's interval, in words people use.
 * eta_low..eta_high already widen as confidence falls (docs/PROTOCOL.md, ETA fields).
 */
function etaText(p) {
  if (p.status === 'ready') return t('eta.now');
  const lo = Math.max(0, p.eta_low);
  const hi = Math.max(p.eta_high, p.eta_sec, lo);
  if (hi < 60) return t('eta.under_minute');
  const hiM = Math.ceil(hi / 60);
  if (lo < 60) return t('eta.under', { duration: minutes(hiM) });
  const loM = Math.floor(lo / 60);
  if (loM === hiM) return t('eta.about', { duration: minutes(loM) });
  if (hiM < 90) return t('eta.about', { duration: formatDurationRange(loM, hiM, 'minute') });
  if (loM < 90) return t('eta.about_range', { from: minutes(loM), to: minutes(hiM) });
  const a = hours(loM);
  const b = hours(hiM);
  return t('eta.about', { duration: a === b ? formatDuration(a, 'hour') : formatDurationRange(a, b, 'hour') });
}

function confidenceNoteKey(c) {
  if (c < 0.3) return 'eta.note_settling';
  if (c < 0.7) return 'eta.note_rough';
  return 'eta.note_pace';
}

const REASONS = ['ready_timeout', 'liveness', 'unknown_token'];
const reasonKey = (reason) => `reason.${REASONS.includes(reason) ? reason : 'other'}`;

/** Why the operator ended the event, in words: sold_out, cancelled, ends_at (its scheduled end), anything else. */
const END_REASONS = ['sold_out', 'cancelled', 'ends_at'];
const endReasonKey = (reason) => `end_reason.${END_REASONS.includes(reason) ? reason : 'other'}`;

/** paused and closed stop admissions (the pre-queue does not count as paused) */
const stopsAdmissions = (s) => s === 'paused' || s === 'closed';

const JOIN_ERRORS = [
  'EVENT_CLOSED',
  'EVENT_NOT_FOUND',
  'SIGN_IN_REQUIRED',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'INVALID_REQUEST',
  // the join challenge (the client library's codes and the gateway's)
  'CHALLENGE_FAILED',
  'CHALLENGE_REQUIRED',
  'CHALLENGE_UNSUPPORTED',
  'CHALLENGE_NOT_SOLVED',
];

/** The catalogue key and params that explain a refused join. */
function joinError(err) {
  if (JOIN_ERRORS.includes(err?.code)) return [`error.${err.code}`, { event: eventId }];
  return err?.message ? ['error.with_message', { message: String(err.message) }] : ['error.other', undefined];
}

function showJoinError(err) {
  const [key, params] = joinError(err);
  setText($('error-text'), key, params);
}

// ---------------------------------------------------------------------------
// page configuration and development tokens

async function pageConfig() {
  try {
    const res = await fetch('/page-config.json', { cache: 'no-store' });
    if (!res.ok) throw new Error(String(res.status));
    const c = await res.json();
    return { target_url: typeof c.target_url === 'string' ? c.target_url : '', dev_tokens: c.dev_tokens === true };
  } catch {
    return { target_url: '', dev_tokens: false };
  }
}

function readDevToken() {
  try {
    return JSON.parse(localStorage.getItem(DEV_TOKEN_KEY) ?? 'null');
  } catch {
    return null;
  }
}

/** The user's token from the ticket site's hand-over, while it is valid. */
function handoffToken() {
  let t;
  try {
    t = sessionStorage.getItem(HANDOFF_KEY) ?? undefined;
  } catch {
    t = undefined;
  }
  t ??= window.__wrHandoff;
  if (!t) return undefined;
  const exp = decodeJwtPayload(t)?.exp;
  return exp && exp * 1000 < Date.now() + 5_000 ? undefined : t;
}

/** What the page authenticates with: the hand-over token, else (development only) a development token. */
function userToken() {
  const t = handoffToken();
  if (t) return Promise.resolve(t);
  return config.dev_tokens ? devToken() : Promise.resolve(undefined);
}

/** The event as a page needs it (state, access, where admitted users go); undefined when the gateway does not know it yet. */
async function eventInfo() {
  try {
    const res = await fetch(`/api/v1/events/${encodeURIComponent(eventId)}`, { cache: 'no-store' });
    if (!res.ok) return undefined;
    return await res.json();
  } catch {
    return undefined;
  }
}

let devTokenInFlight = null;

/**
 * One development identity per browser, renewed with the same subject when it
 * expires: the place in line is bound to the subject, and a tab with another
 * subject could neither share the place nor enter with it. Minted under a Web
 * Lock so two tabs opened together do not become two users.
 */
function devToken() {
  const fresh = (v) => v && typeof v.access_token === 'string' && v.exp_ms - 60_000 > Date.now();
  const cached = readDevToken();
  if (fresh(cached)) return Promise.resolve(cached.access_token);
  const mint = async () => {
    const again = readDevToken();
    if (fresh(again)) return again.access_token;
    const res = await fetch('/api/v1/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(again?.sub ? { sub: again.sub } : {}),
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(`development token refused (${res.status})`);
    const b = await res.json();
    const exp = decodeJwtPayload(b.access_token)?.exp;
    const v = { access_token: b.access_token, sub: b.sub, exp_ms: exp ? exp * 1000 : Date.now() + b.expires_in * 1000 };
    try {
      localStorage.setItem(DEV_TOKEN_KEY, JSON.stringify(v));
    } catch {
      // storage unavailable: this tab keeps using it
    }
    return v.access_token;
  };
  devTokenInFlight ??= (navigator.locks ? navigator.locks.request(DEV_TOKEN_KEY, mint) : mint()).finally(() => {
    devTokenInFlight = null;
  });
  return devTokenInFlight;
}

// ---------------------------------------------------------------------------
// rendering

const params = new URLSearchParams(location.search);
const eventId = params.get('event') ?? '';
const firstKey = `wr:${eventId}:first`;

const ui = {
  view: '',
  /** the state name the status chip shows */
  statusName: 'idle',
  /** the last connection state and poll interval, to render again in another language */
  conn: { state: 'connecting', pollMs: undefined },
  /** the operator's message: null, or text by language code */
  notice: null,
  paused: false,
  eventState: 'open',
  everLive: false,
  expiredReason: '',
  /** where the countdown ends, in performance.now() time (immune to clock changes) */
  readyEndsAt: 0,
  readyTimer: 0,
  announcedThirty: false,
  admission: null,
  admittedTimer: 0,
  redirecting: false,
  lastAnnounceAt: 0,
  lastAnnounced: 0,
  joinError: null,
  /** the client state last rendered */
  rendered: '',
  /** scheduled: when the line opens, in performance.now() time (from the server's count) */
  opensEndsAt: 0,
  /** pre-queue: when places are drawn, in performance.now() time (from the server's eta_sec) */
  drawEndsAt: 0,
  /** the draw's start as the server said it (RFC 3339) */
  startsAt: '',
  clockTimer: 0,
  /** why the event ended (the client's 'ended' detail) */
  ending: null,
};

let client = null;
let config = { target_url: '', dev_tokens: false };
/** the event's access and target (GET /api/v1/events/<id>) */
let event = { access: 'user', target_url: '' };

const VIEWS = ['pick', 'loading', 'checking', 'scheduled', 'prequeue', 'line', 'ready', 'admitted', 'expired', 'left', 'ended', 'error'];
/** views that show the operator's message */
const NOTICE_VIEWS = ['scheduled', 'prequeue', 'line', 'ready', 'ended'];

/** The chip: its text is the state name (tests, tooling); people see and hear data-label in their language. */
function renderStatus() {
  const status = $('status');
  $('status-key').textContent = ui.statusName;
  status.dataset.state = ui.statusName;
  status.dataset.label = t(`status.${ui.statusName}`);
}

function renderTitle() {
  if (ui.view) document.title = `${$(`${ui.view}-h`).textContent} · ${t('page.title')}`;
}

function showView(view, statusName) {
  ui.statusName = statusName;
  renderStatus();
  // nothing to report before there is a place (the name stays for tooling)
  $('status').classList.toggle('visually-hidden', view === 'pick' || view === 'loading');
  const changed = view !== ui.view;
  ui.view = view;
  renderTitle();
  if (!changed) return;
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  const inLine = view === 'line' || view === 'ready' || view === 'loading' || view === 'prequeue';
  $('connection').hidden = !inLine;
  renderNotice();
  renderReceipt();
  $('transient').hidden = true;
  if (view !== 'ready') clearInterval(ui.readyTimer);
  if (view !== 'admitted') clearInterval(ui.admittedTimer);
  if (view !== 'scheduled' && view !== 'prequeue') clearInterval(ui.clockTimer);
  // Move focus to what changed, so keyboard and screen-reader users follow
  // along: the Enter button when it is their turn, otherwise the heading.
  if (view === 'ready') $('enter').focus();
  else if (view !== 'loading' || document.activeElement === document.body) $(`${view}-h`).focus({ preventScroll: true });
}

function announce(text) {
  const a = $('announcer');
  a.textContent = '';
  // a fresh text node after a tick, so repeated messages are announced again
  setTimeout(() => {
    a.textContent = text;
  }, 50);
}

function render() {
  if (!client) return;
  const st = client.state;
  ui.rendered = st;
  // the browser check before the join (a join challenge): while the client solves it
  if ((st === 'idle' || st === 'scheduled') && client.challenge && !ui.joinError) {
    renderChecking();
    showView('checking', 'checking');
    return;
  }
  if (st === 'scheduled') {
    renderScheduled();
    showView('scheduled', 'scheduled');
    startClock();
    return;
  }
  if (st === 'prequeue') {
    renderPrequeue();
    showView('prequeue', 'prequeue');
    startClock();
    return;
  }
  if (st === 'ended') {
    renderEnded();
    showView('ended', 'ended');
    return;
  }
  if (st === 'idle') {
    if (ui.joinError) {
      showJoinError(ui.joinError);
      showView('error', 'error');
    } else showView('loading', 'idle');
    return;
  }
  if (st === 'waiting') {
    renderLine();
    showView('line', ui.paused ? 'paused' : 'waiting');
    return;
  }
  if (st === 'ready') {
    showView('ready', 'ready');
    return;
  }
  if (st === 'admitted') {
    renderAdmitted();
    showView('admitted', 'admitted');
    return;
  }
  if (st === 'expired') {
    setText($('expired-reason'), reasonKey(ui.expiredReason));
    showView('expired', 'expired');
    return;
  }
  if (st === 'left') showView('left', 'left');
}

function renderLine() {
  const p = client.last;
  setText($('line-h'), ui.paused ? (ui.eventState === 'closed' ? 'line.heading_closed' : 'line.heading_paused') : 'line.heading');
  const note = $('paused-note');
  note.hidden = !ui.paused;
  setText(note, ui.eventState === 'closed' ? 'line.note_closed' : 'line.note_paused');
  if (!p) return;
  setPlainText($('position'), formatNumber(p.position));
  const ahead = p.people_ahead === 0 ? t('ahead.next') : t('ahead', { count: p.people_ahead });
  setPlainText($('ahead'), p.being_let_in > 0 ? t('ahead.with_calling', { ahead, calling: t('ahead.calling', { count: p.being_let_in }) }) : ahead);
  const eta = etaText(p);
  setPlainText($('eta'), ui.paused ? t('eta.paused', { eta }) : eta);
  setText($('eta-note'), ui.paused ? 'eta.note_paused' : confidenceNoteKey(p.confidence));
  // a place that came through the pre-queue: say it was drawn (the receipt stays below, small)
  $('drawn-note').hidden = !client.receipt;
  renderProgress(p.position);
}

// ---------------------------------------------------------------------------
// the browser check: a proof of work solved before the join

/**
 * Tries over the expected number of tries (2^difficulty), held at 95 % until
 * solved: the number of tries is a matter of luck, so the bar may not claim
 * to be done before it is.
 */
function renderChecking() {
  const c = client.challenge;
  if (!c) return;
  $('checking-progress').parentElement.hidden = c.kind !== 'pow';
  const done = c.phase === 'joining';
  const frac = done ? 1 : c.expected > 0 ? Math.min(0.95, c.tried / c.expected) : 0;
  const pct = Math.round(frac * 100);
  const bar = $('checking-progress');
  bar.setAttribute('aria-valuenow', String(pct));
  bar.setAttribute('aria-valuetext', t('checking.progress_value', { percent: formatPercent(pct / 100) }));
  $('checking-fill').style.transform = `scaleX(${frac})`;
}

// ---------------------------------------------------------------------------
// a scheduled sale: before the line opens, the pre-queue, the end

function renderScheduled() {
  const s = client.schedule;
  if (!s) return;
  setText($('opens-at'), 'scheduled.opens_at', { time: when(s.opens_at) });
  const draw = $('scheduled-draw');
  const prequeue = s.starts_at && Date.parse(s.starts_at) > Date.parse(s.opens_at);
  draw.hidden = !prequeue;
  if (prequeue) setText(draw, 'scheduled.draw', { opens: when(s.opens_at), starts: when(s.starts_at) });
  renderClock();
}

function renderPrequeue() {
  const p = client.last;
  if (p?.status === 'prequeue' && p.starts_at) ui.startsAt = p.starts_at;
  ui.startsAt ||= client.schedule?.starts_at ?? event.starts_at ?? '';
  if (!ui.drawEndsAt && ui.startsAt) {
    // no word from the server yet (a fresh join): this browser's clock until the welcome
    const left = (Date.parse(ui.startsAt) - Date.now()) / 1000;
    if (Number.isFinite(left)) ui.drawEndsAt = performance.now() + Math.max(0, left) * 1000;
  }
  setText($('draw-rule'), 'prequeue.draw', { time: ui.startsAt ? when(ui.startsAt) : '–' });
  renderClock();
}

/** The scheduled and pre-queue countdowns (each from the server's own count, not this browser's clock). */
function renderClock() {
  const now = performance.now();
  if (ui.view === 'scheduled' || client?.state === 'scheduled') {
    const left = (ui.opensEndsAt - now) / 1000;
    const el = $('opens-countdown');
    if (left > 0) setPlainText(el, clock(left));
    else setText(el, 'scheduled.opening');
  }
  if (ui.view === 'prequeue' || client?.state === 'prequeue') {
    const el = $('draw-countdown');
    if (!ui.drawEndsAt) setPlainText(el, '–:––');
    else {
      const left = (ui.drawEndsAt - now) / 1000;
      if (left > 0) setPlainText(el, clock(left));
      else setText(el, 'prequeue.drawing');
    }
  }
}

function startClock() {
  clearInterval(ui.clockTimer);
  renderClock();
  ui.clockTimer = setInterval(renderClock, 1000);
}

function renderEnded() {
  const d = client.ending ?? ui.ending ?? { reason: '' };
  setText($('ended-h'), endReasonKey(d.reason));
  const at = $('ended-at');
  at.hidden = !d.ended_at;
  if (d.ended_at) setText(at, 'ended.at', { time: when(d.ended_at) });
}

/** The entry receipt of a place that came through the pre-queue: prominent there, small afterwards. */
function renderReceipt() {
  const el = $('receipt');
  const r = client?.receipt;
  const show = !!r && (ui.view === 'prequeue' || ui.view === 'line' || ui.view === 'ready');
  el.hidden = !show;
  if (!show) return;
  $('receipt-code').textContent = r;
  el.classList.toggle('receipt-small', ui.view !== 'prequeue');
  /** @type {HTMLAnchorElement} */ ($('receipt-link')).href = `/api/v1/events/${encodeURIComponent(eventId)}/draw`;
}

/** Progress relative to the position this browser first saw for this place. */
function renderProgress(position) {
  let first = position;
  try {
    const saved = JSON.parse(localStorage.getItem(firstKey) ?? 'null');
    if (saved && saved.t === client.token && saved.p >= position) first = saved.p;
    else localStorage.setItem(firstKey, JSON.stringify({ t: client.token, p: position }));
  } catch {
    // no storage: progress starts from this page load
  }
  const pct = first <= 1 ? 100 : Math.round(((first - position) / (first - 1)) * 100);
  const bar = $('progress');
  bar.setAttribute('aria-valuenow', String(pct));
  const moved = first - position;
  bar.setAttribute('aria-valuetext', t('line.progress_value', { percent: formatPercent(pct / 100), moved, total: first - 1 }));
  // CSSOM, not a style attribute: allowed by the page's CSP
  $('progress-fill').style.transform = `scaleX(${Math.max(0.02, pct / 100)})`;
}

function renderConnection(state, pollMs) {
  ui.conn = { state, pollMs };
  const el = $('connection');
  el.dataset.state = state;
  $('conn-key').textContent = `${state} `;
  const text = $('conn-text');
  if (state === 'live') setText(text, 'conn.live');
  else if (state === 'connecting') setText(text, ui.everLive ? 'conn.reconnecting' : 'conn.connecting');
  else if (state === 'polling') setPlainText(text, t('conn.polling', { interval: formatDuration(Math.max(1, Math.round((pollMs ?? 1000) / 1000)), 'second') }));
  else setText(text, 'conn.offline');
}

/** The operator's message in the page's language (else English, else any), on the line and ready views. */
function renderNotice() {
  const el = $('notice');
  const picked = pickText(ui.notice);
  const text = $('notice-text');
  if (picked) {
    text.textContent = picked.text;
    if (picked.lang) text.lang = picked.lang;
    else text.removeAttribute('lang');
  }
  el.hidden = !picked || !NOTICE_VIEWS.includes(ui.view);
}

/** null, or text by language code; a client event may carry it as its detail. */
function setNotice(m) {
  const v = m instanceof Event ? /** @type {CustomEvent} */ (m).detail : m;
  ui.notice = v && (typeof v === 'object' || typeof v === 'string') ? v : null;
  renderNotice();
}

/** The countdown's own text is mm:ss; the rest of the line is the catalogue's (a slot in ready.countdown). */
function renderCountdown() {
  if (!ui.readyEndsAt) return;
  $('countdown').textContent = mmss((ui.readyEndsAt - performance.now()) / 1000);
}

function startCountdown(expiresInSec) {
  ui.readyEndsAt = performance.now() + expiresInSec * 1000;
  ui.announcedThirty = expiresInSec <= 30;
  const tick = () => {
    const left = (ui.readyEndsAt - performance.now()) / 1000;
    renderCountdown();
    if (!ui.announcedThirty && left <= 30) {
      ui.announcedThirty = true;
      announce(t('announce.time_left', { duration: formatDuration(30, 'second', 'long') }));
    }
    if (left <= 0) clearInterval(ui.readyTimer);
  };
  clearInterval(ui.readyTimer);
  tick();
  ui.readyTimer = setInterval(tick, 1000);
}

function renderAdmitted() {
  const a = ui.admission ?? {};
  const token = a.reservation_token;
  const text = $('admitted-text');
  const expiry = $('admitted-expiry');
  const cont = $('continue');
  const box = $('token-box');
  clearInterval(ui.admittedTimer);
  if (!token) {
    setText(text, 'admitted.other_tab');
    expiry.hidden = cont.hidden = box.hidden = true;
    return;
  }
  const exp = decodeJwtPayload(token)?.exp;
  const until = exp ? new Date(exp * 1000) : a.ttl_sec ? new Date(Date.now() + a.ttl_sec * 1000) : null;
  const tick = () => {
    if (!until) return;
    const left = (until.getTime() - Date.now()) / 1000;
    expiry.hidden = false;
    setPlainText(
      expiry,
      left > 0 ? t('admitted.valid_until', { time: formatTime(until), left: mmss(left) }) : t('admitted.expired_at', { time: formatTime(until) }),
    );
    if (left <= 0) clearInterval(ui.admittedTimer);
  };
  tick();
  ui.admittedTimer = setInterval(tick, 1000);
  const target = targetUrl(token);
  if (target) {
    setText(text, 'admitted.redirecting');
    cont.href = target;
    cont.hidden = false;
    box.hidden = true;
    // a moment to read where they are going; the link works if this does not
    if (!ui.redirecting) {
      ui.redirecting = true;
      setTimeout(() => location.assign(target), 1500);
    }
  } else {
    setText(text, 'admitted.no_target');
    cont.hidden = true;
    box.hidden = false;
    $('admission-token').value = token;
  }
}

/** The ticket site's page for admitted users, with the admission token (the gateway accepts only targets on origins its operator listed). */
function targetUrl(token) {
  const target = event.target_url || config.target_url;
  if (!target) return '';
  try {
    const u = new URL(target, location.href);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return '';
    u.searchParams.set('admission_token', token);
    return u.toString();
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------
// wiring

function onPosition(p) {
  ui.eventState = p.event_state;
  ui.paused = stopsAdmissions(p.event_state);
  $('transient').hidden = true;
  if (p.status === 'prequeue') {
    // the server's count to the draw (a fresh one with every welcome and poll)
    ui.drawEndsAt = performance.now() + Math.max(0, p.eta_sec) * 1000;
    if (p.starts_at) ui.startsAt = p.starts_at;
    render();
    return;
  }
  // Announce moves politely: every move near the front, otherwise at most
  // every 10 s, so a screen reader is not talking all the time.
  const now = Date.now();
  if (client.state === 'waiting' && p.position !== ui.lastAnnounced && (p.position <= NEAR_FRONT || now - ui.lastAnnounceAt >= ANNOUNCE_EVERY_MS)) {
    ui.lastAnnounced = p.position;
    ui.lastAnnounceAt = now;
    announce(t(ui.paused ? 'announce.position_paused' : 'announce.position', { position: p.position, eta: etaText(p) }));
  }
  render();
}

function createClient() {
  client = new WaitingRoomClient({ eventId, accessToken: userToken });
  client.addEventListener('position', (e) => onPosition(e.detail));
  client.addEventListener('ready', (e) => {
    startCountdown(e.detail.expires_in_sec);
    const enter = $('enter');
    enter.disabled = false;
    setText(enter, 'ready.enter');
    $('enter-error').hidden = true;
    render();
    announce(t('announce.ready', { duration: spoken(e.detail.expires_in_sec) }));
  });
  client.addEventListener('admitted', (e) => {
    ui.admission = e.detail;
    render();
    announce(t('announce.admitted'));
  });
  client.addEventListener('expired', (e) => {
    ui.expiredReason = e.detail.reason;
    render();
  });
  client.addEventListener('left', () => render());
  client.addEventListener('scheduled', (e) => {
    ui.opensEndsAt = performance.now() + e.detail.opens_in_sec * 1000;
    if (e.detail.starts_at) ui.startsAt = e.detail.starts_at;
    render();
  });
  client.addEventListener('drawn', (e) => {
    ui.lastAnnounced = e.detail.position;
    ui.lastAnnounceAt = Date.now();
    announce(t('announce.drawn', { position: e.detail.position }));
  });
  client.addEventListener('ended', (e) => {
    ui.ending = e.detail;
    render();
    announce(t('announce.ended', { reason: t(endReasonKey(e.detail.reason)) }));
  });
  // a join the client made by itself when the line opened was refused: say why, as for any refused join
  client.addEventListener('refused', (e) => {
    ui.joinError = e.detail;
    render();
  });
  client.addEventListener('paused', (e) => {
    ui.paused = true;
    ui.eventState = e.detail.event_state;
    render();
    announce(t(e.detail.event_state === 'closed' ? 'announce.closed' : 'announce.paused'));
  });
  client.addEventListener('resumed', () => {
    ui.paused = false;
    ui.eventState = 'open';
    render();
    announce(t('announce.resumed'));
  });
  client.addEventListener('connection', (e) => {
    if (e.detail.state === 'live') ui.everLive = true;
    renderConnection(e.detail.state, e.detail.poll_interval_ms);
    // a join the client made by itself (the line opened) shows at once, before the first snapshot
    if (client.state !== ui.rendered) render();
  });
  client.addEventListener('error', (e) => {
    // transient trouble the client is already retrying
    const box = $('transient');
    setText(box, e.detail.code === 'RATE_LIMITED' ? 'transient.RATE_LIMITED' : 'transient.other');
    box.hidden = false;
  });
  // The operator's message: the client's 'notice' event (detail: null or text by
  // language) is the word from then on; a client library without messages
  // simply never sends it, and the page keeps what GET /api/v1/events/<id> said.
  client.addEventListener('notice', setNotice);
  // the browser check before the join: each phase and the solver's progress
  client.addEventListener('challenge', () => render());
  if (typeof client.notice !== 'undefined' && client.notice !== null) setNotice(client.notice);
}

async function start() {
  ui.joinError = null;
  showView('loading', 'idle');
  renderConnection('connecting');
  try {
    await client.start();
  } catch (err) {
    ui.joinError = err;
  }
  render();
}

async function joinAgain() {
  // a new place: forget the old one (the client already did if it expired) and its progress baseline
  try {
    localStorage.removeItem(`wr:${eventId}`);
    localStorage.removeItem(firstKey);
  } catch {
    // nothing stored
  }
  ui.expiredReason = '';
  ui.admission = null;
  ui.lastAnnounced = 0;
  await start();
}

function wireControls() {
  const enter = $('enter');
  enter.addEventListener('click', async () => {
    enter.disabled = true;
    setText(enter, 'ready.entering');
    $('enter-error').hidden = true;
    try {
      await client.enter(); // 'admitted' renders the next view
    } catch (err) {
      if (client.state !== 'ready') return; // expired or admitted meanwhile: that view says what happened
      const msg = $('enter-error');
      if (err?.code === 'NOT_READY') setText(msg, 'ready.not_ready');
      else if (err?.code === 'NETWORK') setText(msg, 'ready.network');
      else if (err?.message) setText(msg, 'ready.failed', { message: String(err.message) });
      else setPlainText(msg, t('ready.failed', { message: t('ready.unknown_error') }));
      msg.hidden = false;
      enter.disabled = false;
      setText(enter, 'ready.enter');
    }
  });

  const leave = $('leave');
  const confirmBox = $('leave-confirm');
  leave.addEventListener('click', () => {
    confirmBox.hidden = false;
    leave.setAttribute('aria-expanded', 'true');
    $('leave-no').focus();
  });
  $('leave-no').addEventListener('click', () => {
    confirmBox.hidden = true;
    leave.setAttribute('aria-expanded', 'false');
    leave.focus();
  });
  $('leave-yes').addEventListener('click', async () => {
    confirmBox.hidden = true;
    leave.setAttribute('aria-expanded', 'false');
    try {
      await client.leave();
    } catch {
      const box = $('transient');
      setText(box, 'line.leave_failed');
      box.hidden = false;
    }
  });

  $('rejoin-expired').addEventListener('click', joinAgain);
  $('rejoin-left').addEventListener('click', joinAgain);
  $('retry').addEventListener('click', () => void start());
  $('copy').addEventListener('click', async () => {
    const area = /** @type {HTMLTextAreaElement} */ ($('admission-token'));
    try {
      await navigator.clipboard.writeText(area.value);
      setText($('copy'), 'admitted.copied');
    } catch {
      area.select(); // clipboard refused (insecure context): let people copy it themselves
    }
  });
}

/** After a language switch: the static text is translated already; render what code composed. */
function relanguage() {
  renderStatus();
  if (client) {
    renderConnection(ui.conn.state, ui.conn.pollMs);
    render();
  }
  renderCountdown();
  renderClock();
  renderNotice();
  renderTitle();
}

async function main() {
  await initI18n();
  onLanguageChange(relanguage);
  if (!eventId || !EVENT_RE.test(eventId)) {
    if (eventId) {
      const e = $('pick-error');
      setText(e, 'pick.invalid');
      e.hidden = false;
      /** @type {HTMLInputElement} */ ($('event-id')).value = eventId.slice(0, 64);
    }
    showView('pick', 'idle');
    return;
  }
  const name = $('event-name');
  name.textContent = eventId;
  name.hidden = false;
  showView('loading', 'idle');
  $('connection').hidden = false;
  config = await pageConfig();
  event = { ...event, ...((await eventInfo()) ?? {}) };
  // the operator's message as the event has it, until the client brings its own
  if (event.message !== undefined) setNotice(event.message);
  createClient();
  wireControls();
  // An event whose places belong to users needs one to enter: without a hand-over
  // (or, in development, a development token) say where to sign in instead of
  // queueing someone who could never get in.
  if (event.access === 'user' && !(await userToken())) {
    if (event.state === 'ended') {
      // nothing to sign in for any more: say why it ended
      ui.ending = { reason: event.end_reason ?? '', message: event.message ?? null, ended_at: event.ended_at ?? undefined };
      renderEnded();
      showView('ended', 'ended');
      return;
    }
    ui.joinError = { code: 'SIGN_IN_REQUIRED' };
    showJoinError(ui.joinError);
    showView('error', 'error');
    return;
  }
  await start();
}

void main();
