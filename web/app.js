// The waiting-room page. All the protocol work (socket, polling fallback,
// reconnects, one place per browser) is in the client library; this file
// only turns its state into something people can read, hear and act on.
import { WaitingRoomClient } from '/client/waiting-room.js';

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
const num = new Intl.NumberFormat();

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

/** Half hours are precise enough this far out. */
const hours = (m) => Math.round((m / 60) * 2) / 2;
const minutes = (m) => (m < 90 ? `${m} min` : `${hours(m)} h`);

/** "2 minutes", "45 seconds": for announcements, where "1:59" reads badly. */
function spoken(sec) {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s} seconds`;
  const m = Math.round(s / 60);
  return m === 1 ? '1 minute' : `${m} minutes`;
}

/**
 * The ETA as an honest range: the server's interval, in words people use.
 * eta_low..eta_high already widen as confidence falls (docs/PROTOCOL.md, ETA fields).
 */
function etaText(p) {
  if (p.status === 'ready') return 'now';
  const lo = Math.max(0, p.eta_low);
  const hi = Math.max(p.eta_high, p.eta_sec, lo);
  if (hi < 60) return 'less than a minute';
  const hiM = Math.ceil(hi / 60);
  if (lo < 60) return `under ${minutes(hiM)}`;
  const loM = Math.floor(lo / 60);
  if (loM === hiM) return `about ${minutes(loM)}`;
  if (hiM < 90) return `about ${loM}–${hiM} min`;
  if (loM < 90) return `about ${loM} min – ${hours(hiM)} h`;
  const a = hours(loM);
  const b = hours(hiM);
  return a === b ? `about ${a} h` : `about ${a}–${b} h`;
}

function confidenceNote(c) {
  if (c < 0.3) return 'Estimate still settling: it gets firmer as the line moves.';
  if (c < 0.7) return 'Rough estimate, based on the pace so far.';
  return 'Based on the current pace of the line.';
}

function reasonText(reason) {
  switch (reason) {
    case 'ready_timeout':
      return "It was your turn, but the time to enter ran out, so the slot went to the next person.";
    case 'liveness':
      return 'This page lost contact with the waiting room for too long (the tab was closed, asleep or offline).';
    case 'unknown_token':
      return 'The waiting room no longer knows this place: it finished some time ago.';
    default:
      return 'Your place in line is no longer valid.';
  }
}

function joinErrorText(err) {
  switch (err?.code) {
    case 'EVENT_CLOSED':
      return 'This sale is closed to new arrivals.';
    case 'EVENT_NOT_FOUND':
      return `There is no waiting room for “${eventId}”. Check the link you were given.`;
    case 'SIGN_IN_REQUIRED':
      return 'This waiting room is for signed-in customers. Go back to the ticket site, sign in, and follow its link to the waiting room again.';
    case 'UNAUTHORIZED':
    case 'FORBIDDEN':
      return "We couldn't confirm who you are. Go back to the ticket site, sign in again, and follow its link to the waiting room.";
    case 'INVALID_REQUEST':
      return 'That event id is not valid.';
    default:
      return err?.message ? `Something went wrong: ${err.message}` : 'Something went wrong.';
  }
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
};

let client = null;
let config = { target_url: '', dev_tokens: false };
/** the event's access and target (GET /api/v1/events/<id>) */
let event = { access: 'user', target_url: '' };

const VIEWS = ['pick', 'loading', 'line', 'ready', 'admitted', 'expired', 'left', 'error'];

function showView(view, statusName) {
  const status = $('status');
  status.textContent = statusName;
  status.dataset.state = statusName;
  // nothing to report before there is a place (the name stays for tooling)
  status.classList.toggle('visually-hidden', view === 'pick' || view === 'loading');
  document.title = `${$(`${view}-h`).textContent} · Waiting room`;
  if (view === ui.view) return;
  ui.view = view;
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  const inLine = view === 'line' || view === 'ready' || view === 'loading';
  $('connection').hidden = !inLine;
  $('transient').hidden = true;
  if (view !== 'ready') clearInterval(ui.readyTimer);
  if (view !== 'admitted') clearInterval(ui.admittedTimer);
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
  if (st === 'idle') {
    if (ui.joinError) {
      $('error-text').textContent = joinErrorText(ui.joinError);
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
    $('expired-reason').textContent = reasonText(ui.expiredReason);
    showView('expired', 'expired');
    return;
  }
  if (st === 'left') showView('left', 'left');
}

function renderLine() {
  const p = client.last;
  $('line-h').textContent = ui.paused ? (ui.eventState === 'closed' ? 'The sale is closed for now' : 'The sale is paused') : "You're in line";
  const note = $('paused-note');
  note.hidden = !ui.paused;
  note.textContent =
    ui.eventState === 'closed'
      ? 'Nobody is being let in at the moment. You keep your place; stay on this page in case it reopens.'
      : 'The sale is paused; you keep your place. Stay on this page: the line moves again as soon as it resumes.';
  if (!p) return;
  $('position').textContent = num.format(p.position);
  const calling = p.being_let_in > 0 ? ` (${p.being_let_in === 1 ? '1 more person ahead of you is' : `${num.format(p.being_let_in)} more people ahead of you are`} being let in now)` : '';
  $('ahead').textContent =
    (p.people_ahead === 0 ? 'You are next.' : p.people_ahead === 1 ? '1 person waiting ahead of you' : `${num.format(p.people_ahead)} people waiting ahead of you`) + calling;
  const eta = etaText(p);
  $('eta').textContent = ui.paused ? `${eta} once the sale resumes` : eta;
  $('eta-note').textContent = ui.paused ? 'The estimate assumes the line is moving.' : confidenceNote(p.confidence);
  renderProgress(p.position);
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
  bar.setAttribute('aria-valuetext', `${pct}%: moved up ${num.format(moved)} of ${num.format(first - 1)} places`);
  // CSSOM, not a style attribute: allowed by the page's CSP
  $('progress-fill').style.transform = `scaleX(${Math.max(0.02, pct / 100)})`;
}

function renderConnection(state, pollMs) {
  const el = $('connection');
  el.dataset.state = state;
  $('conn-key').textContent = `${state} `;
  let text;
  if (state === 'live') text = 'Live';
  else if (state === 'connecting') text = ui.everLive ? 'Reconnecting…' : 'Connecting…';
  else if (state === 'polling') text = `Updating every ${Math.max(1, Math.round((pollMs ?? 1000) / 1000))} s`;
  else text = 'Offline — trying again';
  $('conn-text').textContent = text;
}

function startCountdown(expiresInSec) {
  ui.readyEndsAt = performance.now() + expiresInSec * 1000;
  ui.announcedThirty = expiresInSec <= 30;
  const tick = () => {
    const left = (ui.readyEndsAt - performance.now()) / 1000;
    $('countdown').textContent = mmss(left);
    if (!ui.announcedThirty && left <= 30) {
      ui.announcedThirty = true;
      announce('30 seconds left to enter.');
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
    text.textContent = 'You were let in from another tab or window of this browser. Continue there.';
    expiry.hidden = cont.hidden = box.hidden = true;
    return;
  }
  const exp = decodeJwtPayload(token)?.exp;
  const until = exp ? new Date(exp * 1000) : a.ttl_sec ? new Date(Date.now() + a.ttl_sec * 1000) : null;
  const tick = () => {
    if (!until) return;
    const left = (until.getTime() - Date.now()) / 1000;
    expiry.hidden = false;
    expiry.textContent =
      left > 0
        ? `Your admission is valid until ${until.toLocaleTimeString()} (${mmss(left)} left).`
        : `Your admission expired at ${until.toLocaleTimeString()}. You would need to join the line again.`;
    if (left <= 0) clearInterval(ui.admittedTimer);
  };
  tick();
  ui.admittedTimer = setInterval(tick, 1000);
  const target = targetUrl(token);
  if (target) {
    text.textContent = 'Taking you to the sale…';
    cont.href = target;
    cont.hidden = false;
    box.hidden = true;
    // a moment to read where they are going; the link works if this does not
    if (!ui.redirecting) {
      ui.redirecting = true;
      setTimeout(() => location.assign(target), 1500);
    }
  } else {
    text.textContent =
      'No sale page is configured for this waiting room, so you stay here. A sale page would receive the admission token below and accept it once, before it expires.';
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
  ui.paused = p.event_state !== 'open';
  $('transient').hidden = true;
  // Announce moves politely: every move near the front, otherwise at most
  // every 10 s, so a screen reader is not talking all the time.
  const now = Date.now();
  if (client.state === 'waiting' && p.position !== ui.lastAnnounced && (p.position <= NEAR_FRONT || now - ui.lastAnnounceAt >= ANNOUNCE_EVERY_MS)) {
    ui.lastAnnounced = p.position;
    ui.lastAnnounceAt = now;
    announce(`You are number ${num.format(p.position)} in line. Estimated wait: ${etaText(p)}${ui.paused ? ', once the sale resumes' : ''}.`);
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
    enter.textContent = 'Enter';
    $('enter-error').hidden = true;
    render();
    announce(`It's your turn. You have ${spoken(e.detail.expires_in_sec)} to enter.`);
  });
  client.addEventListener('admitted', (e) => {
    ui.admission = e.detail;
    render();
    announce("You're through.");
  });
  client.addEventListener('expired', (e) => {
    ui.expiredReason = e.detail.reason;
    render();
  });
  client.addEventListener('left', () => render());
  client.addEventListener('paused', (e) => {
    ui.paused = true;
    ui.eventState = e.detail.event_state;
    render();
    announce(e.detail.event_state === 'closed' ? 'The sale is closed for now. You keep your place.' : 'The sale is paused. You keep your place.');
  });
  client.addEventListener('resumed', () => {
    ui.paused = false;
    ui.eventState = 'open';
    render();
    announce('The sale has resumed. The line is moving again.');
  });
  client.addEventListener('connection', (e) => {
    if (e.detail.state === 'live') ui.everLive = true;
    renderConnection(e.detail.state, e.detail.poll_interval_ms);
  });
  client.addEventListener('error', (e) => {
    // transient trouble the client is already retrying
    const t = $('transient');
    t.textContent =
      e.detail.code === 'RATE_LIMITED' ? 'The waiting room is very busy; trying again in a moment…' : "We're having trouble reaching the waiting room; trying again…";
    t.hidden = false;
  });
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
    enter.textContent = 'Entering…';
    $('enter-error').hidden = true;
    try {
      await client.enter(); // 'admitted' renders the next view
    } catch (err) {
      if (client.state !== 'ready') return; // expired or admitted meanwhile: that view says what happened
      const msg = $('enter-error');
      msg.textContent =
        err?.code === 'NOT_READY'
          ? "It's not quite your turn yet. Stay on this page."
          : err?.code === 'NETWORK'
            ? "We couldn't reach the waiting room. Check your connection and press Enter again."
            : `Entering failed: ${err?.message ?? 'unknown error'}. Please try again.`;
      msg.hidden = false;
      enter.disabled = false;
      enter.textContent = 'Enter';
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
      const t = $('transient');
      t.textContent = "We couldn't reach the waiting room to give up your place. Please try again.";
      t.hidden = false;
    }
  });

  $('rejoin-expired').addEventListener('click', joinAgain);
  $('rejoin-left').addEventListener('click', joinAgain);
  $('retry').addEventListener('click', () => void start());
  $('copy').addEventListener('click', async () => {
    const area = /** @type {HTMLTextAreaElement} */ ($('admission-token'));
    try {
      await navigator.clipboard.writeText(area.value);
      $('copy').textContent = 'Copied';
    } catch {
      area.select(); // clipboard refused (insecure context): let people copy it themselves
    }
  });
}

async function main() {
  if (!eventId || !EVENT_RE.test(eventId)) {
    if (eventId) {
      const e = $('pick-error');
      e.textContent = 'That event id is not valid: use letters, digits, _ and - only.';
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
  createClient();
  wireControls();
  // An event whose places belong to users needs one to enter: without a hand-over
  // (or, in development, a development token) say where to sign in instead of
  // queueing someone who could never get in.
  if (event.access === 'user' && !(await userToken())) {
    ui.joinError = { code: 'SIGN_IN_REQUIRED' };
    $('error-text').textContent = joinErrorText(ui.joinError);
    showView('error', 'error');
    return;
  }
  await start();
}

void main();
