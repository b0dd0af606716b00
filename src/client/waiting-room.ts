// Browser client of the waiting room (protocol v1, docs/PROTOCOL.md).
//
// An ES module compiled by the project's tsc and served at
// /client/waiting-room.js. It imports only the wire protocol
// (/protocol/wire.js, itself import-free): the browser loads the two files
// with no bundler. It keeps one place in line per browser and event, shared by every
// tab, and keeps it alive: a WebSocket while one can be held, HTTP polling
// when not, reconnecting within the server's reconnect grace.
//
//   const room = new WaitingRoomClient({ eventId: 'concert' });
//   room.addEventListener('position', (e) => render(e.detail));
//   room.addEventListener('ready', () => enterButton.focus());
//   await room.start();
//   …  const { reservationToken } = await room.enter();
//
// A scheduled sale (docs/PROTOCOL.md, "Scheduled sales"): before its
// pre-queue opens the client is `scheduled` ('scheduled' event: when it
// opens) and joins by itself when it does; in the pre-queue it is `prequeue`
// (no position; 'position' events with status "prequeue" count down to the
// draw and carry the entry receipt); at the draw 'drawn' and then 'position'
// as usual. When the operator ends the event ('ended' event) it stops for
// good.
//
// An event that asks for a join challenge (docs/PROTOCOL.md, "Join
// challenges"): a join answered 428 CHALLENGE_REQUIRED is made again with a
// proof. Proof of work: the client fetches a challenge, solves it in a Web
// Worker (web/pow-worker.js, `powWorkerUrl`) and reports its progress as
// 'challenge' events; external: the site's `getChallengeToken` hook gives
// the verifier's token. A proof refused as expired or used is replaced once.

// ---------------------------------------------------------------------------
// Wire types: the WebSocket protocol is declared once, in src/protocol/wire.ts
// (served beside this file as /protocol/wire.js); the HTTP answers below are
// the gateway's JSON (docs/PROTOCOL.md and the README's API table).

import {
  PROTOCOL_VERSION,
  SUBPROTOCOL_JSON,
  Close,
  closeKind,
  type ClientMessage,
  type EndedMessage,
  type EventState,
  type OperatorMessage,
  type PositionSnapshot,
  type ServerMessage,
} from '../protocol/wire.js';

export {
  PROTOCOL_VERSION,
  SUBPROTOCOL_JSON,
  Close,
  closeKind,
  type CloseKind,
  type ClientMessage,
  type EventState,
  type OperatorMessage,
  type PositionSnapshot,
  type ServerMessage,
  type WelcomeMessage,
  type NoticeMessage,
  type PositionMessage,
  type ReadyMessage,
  type AdmittedMessage,
  type ExpiredMessage,
  type LeftMessage,
  type EndedMessage,
  type PausedMessage,
  type ResumedMessage,
  type PongMessage,
  type ServerErrorMessage,
} from '../protocol/wire.js';

/** 202 of POST /api/v1/queue/join */
export interface JoinResponse {
  waiting_token: string;
  /** 0 in the pre-queue: places are drawn at the start */
  position_hint: number;
  status: 'waiting' | 'prequeue';
  /** pre-queue only: the entry receipt (the place's line in the draw's published entrant list) */
  receipt?: string;
}

/** 200 of GET /api/v1/queue/status */
export interface StatusResponse extends Omit<PositionSnapshot, 'status'> {
  status: 'prequeue' | 'waiting' | 'ready' | 'admitted';
  event_id: string;
  waiting_time: number;
  ready_for_entry: boolean;
  ready_deadline?: string;
  ready_expires_in_sec?: number;
  poll_after_ms: number;
  /** the operator's message (null = none); absent: keep the last one */
  message?: OperatorMessage | null;
}

/** 200 of POST /api/v1/queue/enter */
export interface EnterResponse {
  admission: 'granted';
  reservation_token: string;
  ttl_sec: number;
}

/** Every error body of the HTTP API; some codes add fields (waiting_token, reason, …). */
export interface ApiErrorBody {
  error: { code: string; message: string; trace_id: string; [extra: string]: unknown };
}

// ---------------------------------------------------------------------------
// Client types

/**
 * idle -> [scheduled ->] [prequeue ->] waiting -> ready -> admitted; or
 * expired, left, ended. `scheduled`: the event's pre-queue has not opened,
 * the client joins by itself when it does (no place yet). `prequeue`: in the
 * pre-queue, no position until the draw. `ended`: the operator ended the
 * event (sold out, cancelled, its end time) while this place waited, or
 * before it joined; terminal like expired.
 */
export type WaitingRoomState = 'idle' | 'scheduled' | 'prequeue' | 'waiting' | 'ready' | 'admitted' | 'expired' | 'left' | 'ended';
export type ConnectionState = 'connecting' | 'live' | 'polling' | 'offline';
export type Transport = 'auto' | 'ws' | 'poll';

/**
 * A place snapshot. status "prequeue": before the draw (position 0, eta_sec
 * = seconds to the draw, starts_at, receipt). After the draw `receipt` is
 * still filled in from what this client remembers for the place.
 */
export type PositionDetail = PositionSnapshot;
/** The event is scheduled and its pre-queue has not opened: the client joins by itself when it does. */
export interface ScheduledDetail {
  /** when joins are accepted (RFC 3339) */
  opens_at: string;
  /** when the pre-queue is drawn and the sale starts (RFC 3339); equal to opens_at when there is no pre-queue */
  starts_at?: string;
  /** seconds until opens_at as the server counted them (Retry-After), else by this browser's clock */
  opens_in_sec: number;
  /** when this client asks again */
  retry_in_ms: number;
}
/** The event ended: no place any more (ready users are not told: they keep their window). */
export interface EndedDetail {
  /** sold_out, cancelled, ends_at (the scheduled end), or another operator reason */
  reason: string;
  /** the operator's message (null = none) */
  message: OperatorMessage | null;
  /** RFC 3339, when known */
  ended_at?: string;
}
export interface ReadyDetail {
  ready_deadline: string;
  /** whole seconds left when the server said so: count down from this, not from the browser clock */
  expires_in_sec: number;
  position: number;
}
export interface AdmittedDetail {
  /** absent when another tab or instance performed the enter and this tab has not seen its token */
  reservation_token?: string;
  ttl_sec?: number;
}
export interface ExpiredDetail {
  /** `ready_timeout`, `liveness`, `unknown_token` (forgotten by the server), or another server reason */
  reason: string;
}
export interface PausedDetail {
  /** 'unavailable': the instance this socket is on lost its store; a `resumed` follows */
  event_state: EventState | 'unavailable';
}
export interface ConnectionDetail {
  state: ConnectionState;
  /** while polling: the interval the server asked for */
  poll_interval_ms?: number;
}
/**
 * A join challenge in progress (the join answered 428 CHALLENGE_REQUIRED).
 * Proof of work: `tried` of about `expected` (2^difficulty) tries; solving
 * takes a geometric number of tries, so `tried` may pass `expected` (show it
 * capped). The state stays `idle` (or `scheduled`) meanwhile: `room.challenge`.
 */
export interface ChallengeDetail {
  kind: 'pow' | 'external';
  /**
   * fetching: asking the gateway for a puzzle; solving: the worker is at it;
   * verifying: the site's getChallengeToken is running; joining: the proof is
   * ready and the join carries it
   */
  phase: 'fetching' | 'solving' | 'verifying' | 'joining';
  /** proof of work: tries so far (0 for external) */
  tried: number;
  /** proof of work: 2^difficulty, the expected number of tries (0 until known, and for external) */
  expected: number;
  /** proof of work: leading zero bits asked for (0 until known, and for external) */
  difficulty: number;
  /** ms since this round began */
  elapsed_ms: number;
  /** 1; 2 for the one retry with a fresh proof after the first was refused as expired or used */
  round: number;
}
export interface ErrorDetail {
  code: string;
  message: string;
  /** HTTP status, 0 for a network failure, undefined for a WebSocket error message */
  status?: number;
}

export interface WaitingRoomEventMap {
  /** the sale's line is not open yet (each refused attempt: a fresh count); the client joins by itself later */
  scheduled: CustomEvent<ScheduledDetail>;
  /** the pre-queue was drawn: this place has its position now (the snapshot; a 'position' follows) */
  drawn: CustomEvent<PositionDetail>;
  position: CustomEvent<PositionDetail>;
  ready: CustomEvent<ReadyDetail>;
  admitted: CustomEvent<AdmittedDetail>;
  expired: CustomEvent<ExpiredDetail>;
  left: CustomEvent<null>;
  /** the event ended: terminal, nothing reconnects or polls any more */
  ended: CustomEvent<EndedDetail>;
  /** a join the client made by itself after `scheduled` was refused (what start() would have rejected with) */
  refused: CustomEvent<WaitingRoomError>;
  paused: CustomEvent<PausedDetail>;
  resumed: CustomEvent<PausedDetail>;
  connection: CustomEvent<ConnectionDetail>;
  /** the operator's message changed (null: removed) */
  notice: CustomEvent<OperatorMessage | null>;
  /** a join challenge in progress: each phase, and the solver's progress (about every 65,536 tries) */
  challenge: CustomEvent<ChallengeDetail>;
  error: CustomEvent<ErrorDetail>;
}

export interface WaitingRoomOptions {
  eventId: string;
  /** origin of the gateway; default location.origin */
  baseUrl?: string;
  /** where the place is remembered, shared by all tabs; default localStorage */
  storage?: Storage;
  /** bearer JWT for join (binds the place to its subject) and enter */
  accessToken?: () => Promise<string | undefined>;
  /** auto: WebSocket, falling back to polling; default auto */
  transport?: Transport;
  /** first reconnect backoff cap; default 500 ms */
  minBackoffMs?: number;
  /** largest reconnect backoff; default 8000 ms (keep it well under the reconnect grace) */
  maxBackoffMs?: number;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  /**
   * The proof-of-work solver (web/pow-worker.js); default `/pow-worker.js` on
   * the gateway's origin (baseUrl). Browsers start workers from the page's own
   * origin only: a site on another origin serves a copy itself and names it here.
   */
  powWorkerUrl?: string;
  /** default globalThis.Worker */
  Worker?: typeof Worker;
  /**
   * An event with an external challenge (Turnstile-like): the verifier's
   * token for `eventId`, from the site's own widget. Called again for a fresh
   * token when the first is refused as used. Without it such an event cannot
   * be joined (start() rejects with CHALLENGE_REQUIRED, kind external).
   */
  getChallengeToken?: (eventId: string) => Promise<string>;
}

/** A refusal or failure of start(), enter() or leave(). `code` is the server's code or NETWORK. */
export class WaitingRoomError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** HTTP status; 0 for a network failure or a WebSocket answer */
    readonly status: number,
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = 'WaitingRoomError';
  }
}

// Typed listeners (merged into the class below).
export interface WaitingRoomClient {
  addEventListener<K extends keyof WaitingRoomEventMap>(type: K, listener: (ev: WaitingRoomEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WaitingRoomEventMap>(type: K, listener: (ev: WaitingRoomEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

// ---------------------------------------------------------------------------
// Internals

const WS_OPEN = 1;
/** heartbeat tick; a ping goes out after PING_IDLE_MS of silence */
const HEARTBEAT_MS = 2500;
const PING_IDLE_MS = 10_000;
/** a ping unanswered this long means the path is dead even if the browser has not noticed */
const PONG_TIMEOUT_MS = 5000;
/** while polling, try the WebSocket again about this often */
const PROBE_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const SOCKET_ENTER_TIMEOUT_MS = 15_000;
/** a socket without its welcome after this long counts as failed to open */
const WELCOME_TIMEOUT_MS = 10_000;
/** a scheduled event is asked again at most this far apart (a schedule moved earlier is noticed) */
const SCHEDULE_RECHECK_MAX_MS = 10 * 60_000;
/** a solver that has said nothing for this long (it reports every 65,536 tries) is given up */
const SOLVER_SILENCE_MS = 30_000;
/** proofs per join: the first, and one fresh one after a refusal as expired or used */
const PROOF_ROUNDS = 2;

interface HttpResult {
  /** 0: no answer (network failure or timeout) */
  status: number;
  body: unknown;
  retryAfterMs?: number;
  /** Retry-After as sent, in seconds (not capped) */
  retryAfterSec?: number;
}

interface Socket {
  ws: WebSocket;
  startedAt: number;
  welcomed: boolean;
  lastSeen: number;
  pingSentAt: number;
  heartbeat: ReturnType<typeof setInterval> | undefined;
  /** a background attempt made while polling: it must not disturb the polling state until it is welcomed */
  probe: boolean;
}

interface PendingEnter {
  resolve(v: { reservationToken: string; ttlSec: number }): void;
  reject(e: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

interface StoredAdmission {
  t: string;
  reservation_token: string;
  ttl_sec: number;
}

/** Socket closed or went quiet before answering an enter: the HTTP route is tried instead. */
class SocketGone extends Error {}

/** The `proof` of a join: a solved puzzle, or the external verifier's token. */
interface Proof {
  challenge?: string;
  solution?: string;
  token?: string;
}

/** What the proof-of-work worker posts (web/pow-worker.js). */
interface SolverMessage {
  type?: unknown;
  tried?: unknown;
  solution?: unknown;
}

/** A join challenge that could not be met here: a refusal of start(), status 0 (the server did not refuse). */
const challengeError = (code: 'CHALLENGE_UNSUPPORTED' | 'CHALLENGE_NOT_SOLVED', message: string, kind: 'pow' | 'external'): WaitingRoomError =>
  new WaitingRoomError(code, message, 0, { kind });

/** What a join came to: a place (fresh: just made; receipt: in the pre-queue), not open yet, or ended. */
type JoinOutcome =
  | { token: string; fresh: boolean; receipt?: string }
  | { scheduled: { opens_at: string; starts_at?: string; retryAfterSec?: number } }
  | { ended: { reason: string; ended_at?: string } };

function endedOf(m: EndedMessage): EndedDetail {
  return {
    reason: typeof m.reason === 'string' && m.reason ? m.reason : 'ended',
    message: isObject(m.message) ? m.message : null,
    ...(typeof m.ended_at === 'string' ? { ended_at: m.ended_at } : {}),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function randomKey(): string {
  // getRandomValues works outside secure contexts too (randomUUID does not)
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function errorOf(r: HttpResult): WaitingRoomError {
  if (r.status === 0) return new WaitingRoomError('NETWORK', 'the waiting room could not be reached', 0);
  const e = (r.body as Partial<ApiErrorBody> | undefined)?.error;
  if (e && typeof e.code === 'string') {
    const { code, message, ...details } = e;
    return new WaitingRoomError(code, typeof message === 'string' ? message : code, r.status, details);
  }
  return new WaitingRoomError('HTTP_' + r.status, `unexpected answer ${r.status}`, r.status);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** 410 EVENT_ENDED: the event ended (while this place waited, or before it joined) */
const endedAnswer = (r: HttpResult): boolean => r.status === 410 && isObject(r.body) && isObject(r.body.error) && r.body.error.code === 'EVENT_ENDED';

const EVENT_STATES: readonly EventState[] = ['scheduled', 'prequeue', 'open', 'paused', 'closed', 'ended'];

function snapshotOf(m: Record<string, unknown>): PositionSnapshot {
  const n = (k: string): number => (typeof m[k] === 'number' ? (m[k] as number) : 0);
  const snap: PositionSnapshot = {
    status: m.status === 'ready' ? 'ready' : m.status === 'prequeue' ? 'prequeue' : 'waiting',
    position: n('position'),
    people_ahead: n('people_ahead'),
    being_let_in: n('being_let_in'),
    eta_sec: n('eta_sec'),
    eta_low: n('eta_low'),
    eta_high: n('eta_high'),
    confidence: n('confidence'),
    event_state: EVENT_STATES.includes(m.event_state as EventState) ? (m.event_state as EventState) : 'open',
  };
  if (typeof m.starts_at === 'string') snap.starts_at = m.starts_at;
  if (typeof m.receipt === 'string') snap.receipt = m.receipt;
  return snap;
}

/** paused and closed stop admissions; the pre-queue and the states of later versions do not count as paused */
const stopsAdmissions = (s: string): boolean => s === 'paused' || s === 'closed';

/** seconds from now to an RFC 3339 time by this browser's clock (undefined if unreadable) */
function secondsUntil(iso: unknown): number | undefined {
  const t = typeof iso === 'string' ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? Math.max(0, Math.ceil((t - Date.now()) / 1000)) : undefined;
}

// ---------------------------------------------------------------------------

export class WaitingRoomClient extends EventTarget {
  readonly eventId: string;
  private readonly baseUrl: string;
  private readonly storage: Storage | undefined;
  private readonly memory = new Map<string, string>();
  private readonly accessToken: (() => Promise<string | undefined>) | undefined;
  private readonly transport: Transport;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly fetchFn: typeof fetch;
  private readonly WS: typeof WebSocket | undefined;
  private readonly keys: { token: string; join: string; enter: string; admission: string; receipt: string };

  private _token: string | undefined;
  private _state: WaitingRoomState = 'idle';
  private _connection: ConnectionState = 'offline';
  private _last: PositionSnapshot | undefined;
  private _notice: OperatorMessage | null = null;
  private paused = false;
  private readyDeadline: string | undefined;
  private admittedWithToken = false;
  private _schedule: ScheduledDetail | undefined;
  private _ended: EndedDetail | undefined;
  /** the next join attempt of a scheduled event */
  private scheduleTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly powWorkerUrl: string;
  private readonly WorkerCtor: typeof Worker | undefined;
  private readonly getChallengeToken: ((eventId: string) => Promise<string>) | undefined;
  /** the join challenge in progress */
  private _challenge: ChallengeDetail | undefined;
  /** stops the solver at work (stop()) */
  private cancelSolve: (() => void) | undefined;
  /**
   * A proof a join carried that was not used up: the join was refused before
   * the proof counted (the line not open yet). The next attempt carries it
   * again rather than solving anew; the server says if it has expired.
   */
  private spareProof: Proof | undefined;

  private running = false;
  /** bumped on stop() and whenever the token changes: async work of an older generation drops its result */
  private gen = 0;
  private starting: Promise<void> | undefined;
  private sock: Socket | undefined;
  /** consecutive sockets that closed before their welcome */
  private socketFailures = 0;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private polling = false;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private pollAttempt = 0;
  /** the interval last reported with 'polling' (a change is news for "updating every N s") */
  private lastPollMs: number | undefined;
  private probeTimer: ReturnType<typeof setTimeout> | undefined;
  /** after a 44xx the server told us our socket misbehaved: keep the place by polling, do not loop */
  private socketDisabled = false;
  private entering: Promise<{ reservationToken: string; ttlSec: number }> | undefined;
  private pendingEnter: PendingEnter | undefined;
  private listening = false;

  constructor(o: WaitingRoomOptions) {
    super();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(o.eventId)) throw new TypeError('eventId must be 1-64 characters of A-Z a-z 0-9 _ -');
    this.eventId = o.eventId;
    this.baseUrl = (o.baseUrl ?? globalThis.location?.origin ?? '').replace(/\/+$/, '');
    let storage = o.storage;
    if (!storage) {
      try {
        storage = globalThis.localStorage; // throws where storage is disabled
      } catch {
        storage = undefined;
      }
    }
    this.storage = storage;
    this.accessToken = o.accessToken;
    this.transport = o.transport ?? 'auto';
    this.minBackoffMs = Math.max(50, o.minBackoffMs ?? 500);
    this.maxBackoffMs = Math.max(this.minBackoffMs, o.maxBackoffMs ?? 8000);
    const f = o.fetch ?? globalThis.fetch;
    // window.fetch throws "Illegal invocation" when called unbound
    this.fetchFn = o.fetch ? f : f.bind(globalThis);
    this.WS = o.WebSocket ?? globalThis.WebSocket;
    this.WorkerCtor = o.Worker ?? globalThis.Worker;
    this.powWorkerUrl = o.powWorkerUrl ?? `${this.baseUrl}/pow-worker.js`;
    this.getChallengeToken = o.getChallengeToken;
    const k = `wr:${this.eventId}`;
    this.keys = { token: k, join: `${k}:join-key`, enter: `${k}:enter-key`, admission: `${k}:admission`, receipt: `${k}:receipt` };
  }

  /** The waiting token of this browser's place, if it holds one. */
  get token(): string | undefined {
    return this._token;
  }
  get state(): WaitingRoomState {
    return this._state;
  }
  get connection(): ConnectionState {
    return this._connection;
  }
  /** The operator's message to everyone waiting (null = none). */
  get notice(): OperatorMessage | null {
    return this._notice;
  }
  /** The last position snapshot (welcome, position or poll). */
  get last(): PositionSnapshot | undefined {
    return this._last;
  }
  /**
   * The entry receipt of this place if it came through a pre-queue (kept
   * after the draw and across reloads): its line in the draw's published
   * entrant list, GET /api/v1/events/<id>/draw.
   */
  get receipt(): string | undefined {
    try {
      const v = JSON.parse(this.read(this.keys.receipt) ?? 'null') as { t?: string; r?: string } | null;
      return v && v.t === this._token && typeof v.r === 'string' ? v.r : undefined;
    } catch {
      return undefined;
    }
  }
  /** While `scheduled`: when the line opens. */
  get schedule(): ScheduledDetail | undefined {
    return this._state === 'scheduled' ? this._schedule : undefined;
  }
  /** Once `ended`: why. */
  get ending(): EndedDetail | undefined {
    return this._state === 'ended' ? this._ended : undefined;
  }
  /** While a join challenge is in progress (state `idle`, or `scheduled` when the line opened): how far it is. */
  get challenge(): ChallengeDetail | undefined {
    return this._challenge;
  }

  /**
   * Resume the place this browser holds for the event (any tab may have taken
   * it), or join the line. Resolves once the place is known; updates follow
   * as events. Rejects with a WaitingRoomError when the join is refused
   * (EVENT_CLOSED, EVENT_NOT_FOUND, UNAUTHORIZED, …); transient failures
   * (network, 429, 503) are retried, each reported as an 'error' event.
   * Resolves in state `scheduled` when the event's line is not open yet (the
   * client then joins by itself when it opens: a later refusal is a
   * 'refused' event), and in state `ended` when the event has ended.
   *
   * An event with a join challenge is met on the way ('challenge' events).
   * Its refusals: CHALLENGE_FAILED (the server's, `details.reason`: invalid,
   * wrong_event, insufficient, rejected; or expired / used again after one
   * fresh proof), CHALLENGE_REQUIRED (kind external and no getChallengeToken),
   * CHALLENGE_UNSUPPORTED (the solver could not run here: no Web Worker, or
   * the worker script did not load), CHALLENGE_NOT_SOLVED (getChallengeToken
   * failed, or the solver stopped answering).
   */
  start(): Promise<void> {
    if (this.starting) return this.starting;
    // already keeping a place: nothing to do (a second call must not drop a healthy socket)
    if (this.running && this._token && !this.isFinished() && (this.sock || this.polling || this.retryTimer)) return Promise.resolve();
    // already waiting for the line to open
    if (this.running && this._state === 'scheduled' && this.scheduleTimer) return Promise.resolve();
    this.running = true;
    this.listen();
    const gen = ++this.gen;
    this.starting = this.begin(gen).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /**
   * Enter when ready: over the socket when one is open, else POST
   * /api/v1/queue/enter with an Idempotency-Key that survives reloads and is
   * shared by tabs, so a retry (or a second tab) gets the same reservation
   * token. Rejects with WaitingRoomError (NOT_READY, TOKEN_EXPIRED, …).
   */
  enter(): Promise<{ reservationToken: string; ttlSec: number }> {
    this.entering ??= this.doEnter().finally(() => {
      this.entering = undefined;
    });
    return this.entering;
  }

  /** Give the place up for good (every tab follows). */
  async leave(): Promise<void> {
    const token = this._token;
    if (!token) return;
    const r = await this.request('DELETE', `/api/v1/queue/leave?token=${encodeURIComponent(token)}`);
    if (token !== this._token) return;
    if (r.status === 200) {
      this.finishLeft();
      return;
    }
    const err = errorOf(r);
    if (r.status === 404 || r.status === 410 || (r.status === 409 && err.code === 'NOT_IN_LINE')) {
      // already finished one way or another: find out which
      await this.settleFinished(token);
      return;
    }
    throw err;
  }

  /** Stop all network activity in this tab. The place is kept for the server's reconnect grace; start() resumes it. */
  stop(): void {
    this.running = false;
    this.gen++;
    this.cancelSolve?.();
    this.stopTransport();
    this.unlisten();
    this.starting = undefined;
    this.setConnection('offline');
  }

  // -------------------------------------------------------------------------
  // start / join / resume

  private async begin(gen: number): Promise<void> {
    const stored = this.read(this.keys.token);
    if (stored) {
      await this.resume(stored, gen);
      return;
    }
    const joined = await this.join(gen);
    if (!joined || gen !== this.gen) return;
    if ('scheduled' in joined) {
      this.scheduled(joined.scheduled, gen);
      return;
    }
    if ('ended' in joined) {
      await this.endedBeforeJoining(joined.ended, gen);
      return;
    }
    if (joined.fresh) {
      this.useToken(joined.token);
      if (joined.receipt) {
        this.rememberReceipt(joined.token, joined.receipt);
        this._state = 'prequeue';
      } else this._state = 'waiting';
      this.connect();
    } else {
      await this.resume(joined.token, gen);
    }
  }

  /**
   * The line is not open yet: say when it opens and ask again then. The
   * server's Retry-After counts the seconds (immune to this browser's clock);
   * far ahead, ask again halfway (at most every 10 minutes) so a schedule
   * moved earlier is noticed. At least a second between attempts.
   */
  private scheduled(s: { opens_at: string; starts_at?: string; retryAfterSec?: number }, gen: number): void {
    const opensIn = s.retryAfterSec !== undefined && s.retryAfterSec < 3600 ? s.retryAfterSec : (secondsUntil(s.opens_at) ?? s.retryAfterSec ?? 5);
    const untilMs = Math.max(1, s.retryAfterSec ?? opensIn) * 1000;
    let delay = untilMs <= 60_000 ? untilMs : Math.min(SCHEDULE_RECHECK_MAX_MS, untilMs / 2);
    // a little spread so every page waiting for the opening does not ask in the same millisecond
    // (in the pre-queue arriving a second later costs nothing: places are drawn)
    delay += Math.random() * Math.min(1000, delay / 10);
    this._state = 'scheduled';
    this._schedule = { opens_at: s.opens_at, ...(s.starts_at ? { starts_at: s.starts_at } : {}), opens_in_sec: Math.max(0, opensIn), retry_in_ms: Math.round(delay) };
    clearTimeout(this.scheduleTimer);
    this.scheduleTimer = setTimeout(() => {
      this.scheduleTimer = undefined;
      if (gen !== this.gen || !this.running || this.starting) return;
      this.starting = this.begin(gen)
        .catch((err: unknown) => {
          if (gen !== this.gen) return;
          const e = err instanceof WaitingRoomError ? err : new WaitingRoomError('NETWORK', String(err), 0);
          this._state = 'idle';
          this.emit('refused', e);
        })
        .finally(() => {
          this.starting = undefined;
        });
    }, delay);
    this.emit('scheduled', this._schedule);
  }

  /** A join refused because the event ended: the operator's message is on the public event. */
  private async endedBeforeJoining(d: { reason: string; ended_at?: string }, gen: number): Promise<void> {
    let message: OperatorMessage | null = this._notice;
    const r = await this.request('GET', `/api/v1/events/${encodeURIComponent(this.eventId)}`);
    if (gen !== this.gen) return;
    if (r.status === 200 && isObject(r.body)) {
      const m = r.body.message;
      message = isObject(m) ? (m as OperatorMessage) : null;
    }
    this.finishEnded({ reason: d.reason, message, ...(d.ended_at ? { ended_at: d.ended_at } : {}) });
  }

  /** Check a token we did not just get from a fresh join, then connect if it is still in line. */
  private async resume(token: string, gen: number): Promise<void> {
    this.useToken(token);
    const r = await this.request('GET', `/api/v1/queue/status?token=${encodeURIComponent(token)}`);
    if (gen !== this.gen) return;
    if (r.status === 200 && isObject(r.body)) {
      if (this._state === 'idle') this._state = r.body.status === 'prequeue' ? 'prequeue' : 'waiting';
      if (this.applyStatus(r.body as unknown as StatusResponse)) this.connect();
      return;
    }
    if (r.status === 404) {
      this.handleGone(errorOf(r));
      return;
    }
    if (endedAnswer(r)) {
      this.handleEnded(r);
      return;
    }
    // no answer: the socket (or the poll) will tell
    if (this._state === 'idle') this._state = 'waiting';
    this.connect();
  }

  /**
   * Join under a Web Lock where the browser has them, so two tabs opened at
   * once cannot both join; the Idempotency-Key stored before the first join
   * covers browsers without locks (the second join answers 409 with the
   * first one's token).
   */
  private async join(gen: number): Promise<JoinOutcome | undefined> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    const critical = () => this.joinOnce(gen);
    if (locks?.request) return locks.request(`wr:join:${this.eventId}`, critical);
    return critical();
  }

  private async joinOnce(gen: number): Promise<JoinOutcome | undefined> {
    try {
      return await this.joinWithProof(gen);
    } finally {
      this._challenge = undefined;
    }
  }

  /**
   * The join: without a proof at first (the public event does not say whether
   * it asks for one); answered 428 CHALLENGE_REQUIRED, again with one, under
   * the same Idempotency-Key. A proof refused as expired or used (a challenge
   * solved too slowly, or a join replayed) is replaced once; any other refusal
   * ends it. Transient failures are retried with the same proof.
   */
  private async joinWithProof(gen: number): Promise<JoinOutcome | undefined> {
    let rotated = false;
    let proof = this.spareProof;
    this.spareProof = undefined;
    let rounds = 0;
    for (let attempt = 0; ; attempt++) {
      // another tab may have joined while we waited for the lock
      const existing = this.read(this.keys.token);
      if (existing) return { token: existing, fresh: false };
      let key = this.read(this.keys.join);
      if (!key) {
        key = randomKey();
        this.write(this.keys.join, key);
      }
      const headers: Record<string, string> = { 'Idempotency-Key': key, ...(await this.authHeader()) };
      const r = await this.request('POST', '/api/v1/queue/join', proof ? { event_id: this.eventId, proof } : { event_id: this.eventId }, headers);
      if (gen !== this.gen) return undefined;
      if (r.status === 202 && isObject(r.body) && typeof r.body.waiting_token === 'string') {
        const b = r.body as unknown as JoinResponse;
        this.write(this.keys.token, b.waiting_token);
        return { token: b.waiting_token, fresh: true, ...(b.status === 'prequeue' && typeof b.receipt === 'string' ? { receipt: b.receipt } : {}) };
      }
      const err = errorOf(r);
      const reason = err.details.reason;
      if (err.code === 'CHALLENGE_REQUIRED' || (err.code === 'CHALLENGE_FAILED' && proof && (reason === 'expired' || reason === 'used'))) {
        if (rounds >= PROOF_ROUNDS) throw err;
        const kind = err.details.kind === 'external' || (err.code === 'CHALLENGE_FAILED' && proof?.token !== undefined) ? 'external' : 'pow';
        const got = await this.obtainProof(kind, ++rounds, gen);
        if (!got || gen !== this.gen) return undefined;
        proof = got.proof;
        continue;
      }
      if (err.code === 'EVENT_NOT_OPEN') {
        // refused before the proof counted: the next attempt carries it again
        this.spareProof = proof;
        const d = err.details;
        return {
          scheduled: {
            opens_at: typeof d.opens_at === 'string' ? d.opens_at : '',
            ...(typeof d.starts_at === 'string' ? { starts_at: d.starts_at } : {}),
            ...(r.retryAfterSec !== undefined ? { retryAfterSec: r.retryAfterSec } : {}),
          },
        };
      }
      if (err.code === 'EVENT_ENDED') {
        // nobody joins an ended event: a later start() asks anew
        this.remove(this.keys.join);
        const d = err.details;
        return { ended: { reason: typeof d.reason === 'string' ? d.reason : 'ended', ...(typeof d.ended_at === 'string' ? { ended_at: d.ended_at } : {}) } };
      }
      if (err.code === 'DUPLICATE_REQUEST' && typeof err.details.waiting_token === 'string') {
        const status = err.details.status;
        // The key (or user) still points at a finished place: a new key joins anew.
        if ((status === 'expired' || status === 'left') && !rotated) {
          rotated = true;
          this.write(this.keys.join, randomKey());
          continue;
        }
        const token = err.details.waiting_token;
        this.write(this.keys.token, token);
        return { token, fresh: false };
      }
      if (r.status === 0 || r.status === 429 || r.status >= 500) {
        this.emit('error', { code: err.code, message: err.message, status: r.status });
        this.setConnection('offline');
        await sleep(r.retryAfterMs ?? this.backoff(Math.min(attempt, 6)));
        if (gen !== this.gen) return undefined;
        continue;
      }
      throw err;
    }
  }

  // -------------------------------------------------------------------------
  // join challenges

  /**
   * A proof for a join the event refused without one (or refused as expired
   * or used). Undefined: stopped meanwhile. `proof` undefined: the event asks
   * for none any more (its challenge was turned off).
   */
  private async obtainProof(kind: 'pow' | 'external', round: number, gen: number): Promise<{ proof: Proof | undefined } | undefined> {
    const began = Date.now();
    const report = (d: Omit<ChallengeDetail, 'elapsed_ms' | 'round'>): void => {
      this._challenge = { ...d, elapsed_ms: Date.now() - began, round };
      this.emit('challenge', this._challenge);
    };
    if (kind === 'external') return this.externalProof(gen, report);
    report({ kind: 'pow', phase: 'fetching', tried: 0, expected: 0, difficulty: 0 });
    for (let attempt = 0; ; attempt++) {
      const r = await this.request('GET', `/api/v1/queue/challenge?event=${encodeURIComponent(this.eventId)}`);
      if (gen !== this.gen) return undefined;
      if (r.status === 200 && isObject(r.body)) {
        const c = r.body;
        if (c.kind === 'none') return { proof: undefined };
        if (c.kind === 'external') return this.externalProof(gen, report);
        const difficulty = c.difficulty;
        if (c.kind !== 'pow' || c.algorithm !== 'sha256-leading-zero-bits' || typeof c.challenge !== 'string' || typeof difficulty !== 'number' || !Number.isInteger(difficulty) || difficulty < 0 || difficulty > 64) {
          throw challengeError('CHALLENGE_UNSUPPORTED', `this client cannot solve the event's challenge (${String(c.kind)}, ${String(c.algorithm)})`, 'pow');
        }
        const expected = 2 ** difficulty;
        report({ kind: 'pow', phase: 'solving', tried: 0, expected, difficulty });
        const solved = await this.solvePow(c.challenge, difficulty, gen, (tried) => report({ kind: 'pow', phase: 'solving', tried, expected, difficulty }));
        if (!solved || gen !== this.gen) return undefined;
        report({ kind: 'pow', phase: 'joining', tried: solved.tried, expected, difficulty });
        return { proof: { challenge: c.challenge, solution: solved.solution } };
      }
      const err = errorOf(r);
      if (r.status === 0 || r.status === 429 || r.status >= 500) {
        this.emit('error', { code: err.code, message: err.message, status: r.status });
        await sleep(r.retryAfterMs ?? this.backoff(Math.min(attempt, 6)));
        if (gen !== this.gen) return undefined;
        continue;
      }
      throw err;
    }
  }

  /** The site's token for an event with an external challenge. */
  private async externalProof(gen: number, report: (d: Omit<ChallengeDetail, 'elapsed_ms' | 'round'>) => void): Promise<{ proof: Proof } | undefined> {
    const hook = this.getChallengeToken;
    if (!hook) {
      throw new WaitingRoomError('CHALLENGE_REQUIRED', 'this event asks for a token from an external challenge, and this page has no getChallengeToken to get one', 428, { kind: 'external' });
    }
    report({ kind: 'external', phase: 'verifying', tried: 0, expected: 0, difficulty: 0 });
    let token: unknown;
    try {
      token = await hook(this.eventId);
    } catch (err) {
      if (gen !== this.gen) return undefined;
      throw challengeError('CHALLENGE_NOT_SOLVED', `the external challenge failed: ${err instanceof Error ? err.message : String(err)}`, 'external');
    }
    if (gen !== this.gen) return undefined;
    if (typeof token !== 'string' || token === '') throw challengeError('CHALLENGE_NOT_SOLVED', 'the external challenge gave no token', 'external');
    report({ kind: 'external', phase: 'joining', tried: 0, expected: 0, difficulty: 0 });
    return { proof: { token } };
  }

  /**
   * Solve a proof-of-work puzzle in the worker (off the main thread).
   * Undefined: stopped (stop(), or a newer generation). Rejects with
   * CHALLENGE_UNSUPPORTED when no worker can run here, CHALLENGE_NOT_SOLVED
   * when it stops answering.
   */
  private solvePow(challenge: string, difficulty: number, gen: number, progress: (tried: number) => void): Promise<{ solution: string; tried: number } | undefined> {
    const W = this.WorkerCtor;
    if (!W) return Promise.reject(challengeError('CHALLENGE_UNSUPPORTED', 'this browser cannot run the proof-of-work solver (no Web Workers)', 'pow'));
    let worker: Worker;
    try {
      worker = new W(this.powWorkerUrl);
    } catch (err) {
      // another origin's script (browsers start workers from the page's origin only), or a refused URL
      return Promise.reject(challengeError('CHALLENGE_UNSUPPORTED', `the proof-of-work solver ${this.powWorkerUrl} could not be started: ${err instanceof Error ? err.message : String(err)}`, 'pow'));
    }
    return new Promise((resolve, reject) => {
      let watchdog: ReturnType<typeof setTimeout> | undefined;
      const done = (): void => {
        clearTimeout(watchdog);
        worker.onmessage = null;
        worker.onerror = null;
        worker.terminate();
        if (this.cancelSolve === cancel) this.cancelSolve = undefined;
      };
      const cancel = (): void => {
        done();
        resolve(undefined);
      };
      const quiet = (): void => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          done();
          reject(challengeError('CHALLENGE_NOT_SOLVED', `the proof-of-work solver stopped answering (${SOLVER_SILENCE_MS / 1000} s)`, 'pow'));
        }, SOLVER_SILENCE_MS);
      };
      this.cancelSolve?.();
      this.cancelSolve = cancel;
      worker.onmessage = (ev: MessageEvent<SolverMessage>) => {
        if (gen !== this.gen) return cancel();
        const m = isObject(ev.data) ? ev.data : {};
        const tried = typeof m.tried === 'number' ? m.tried : 0;
        if (m.type === 'progress') {
          quiet();
          progress(tried);
        } else if (m.type === 'solved' && typeof m.solution === 'string') {
          done();
          resolve({ solution: m.solution, tried });
        } else {
          done();
          reject(challengeError('CHALLENGE_NOT_SOLVED', `the proof-of-work solver answered ${String(m.type)}`, 'pow'));
        }
      };
      worker.onerror = (ev: ErrorEvent) => {
        ev.preventDefault?.();
        done();
        // a script that did not load (404, a refused URL) or failed to run
        reject(challengeError('CHALLENGE_UNSUPPORTED', `the proof-of-work solver ${this.powWorkerUrl} failed${ev.message ? `: ${ev.message}` : ' to load'}`, 'pow'));
      };
      quiet();
      worker.postMessage({ challenge, difficulty });
    });
  }

  // -------------------------------------------------------------------------
  // transport selection

  private connect(): void {
    if (!this.running || !this._token || this.isFinished()) return;
    if (this.transport === 'poll' || this.socketDisabled || !this.WS) this.startPolling();
    else this.openSocket(false);
  }

  private stopTransport(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.pollTimer);
    clearTimeout(this.probeTimer);
    clearTimeout(this.scheduleTimer);
    this.retryTimer = this.pollTimer = this.probeTimer = this.scheduleTimer = undefined;
    this.polling = false;
    if (this.sock) this.dropSocket(this.sock);
    if (this.pendingEnter) {
      clearTimeout(this.pendingEnter.timer);
      this.pendingEnter.reject(new SocketGone());
      this.pendingEnter = undefined;
    }
  }

  private isFinished(): boolean {
    return this._state === 'admitted' || this._state === 'expired' || this._state === 'left' || this._state === 'ended';
  }

  private offline(): boolean {
    return globalThis.navigator?.onLine === false;
  }

  /** Full jitter: uniformly random in [0, min(max, min·2^attempt)]. */
  private backoff(attempt: number): number {
    return Math.random() * Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** attempt);
  }

  // -------------------------------------------------------------------------
  // WebSocket

  private openSocket(probe: boolean): void {
    const token = this._token;
    if (!token || !this.running || !this.WS || this.isFinished()) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.sock) this.dropSocket(this.sock);
    if (!probe) this.setConnection('connecting');
    const u = new URL(`/api/v1/queue/ws?token=${encodeURIComponent(token)}`, this.baseUrl || undefined);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws: WebSocket;
    try {
      ws = new this.WS(u.toString(), [SUBPROTOCOL_JSON]);
    } catch {
      this.socketClosed(probe, false, 1006);
      return;
    }
    const s: Socket = { ws, startedAt: Date.now(), welcomed: false, lastSeen: Date.now(), pingSentAt: 0, heartbeat: undefined, probe };
    this.sock = s;
    ws.onmessage = (ev: MessageEvent) => {
      if (this.sock !== s) return;
      s.lastSeen = Date.now();
      if (typeof ev.data !== 'string') return; // JSON subprotocol: text frames only
      let m: unknown;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (isObject(m) && typeof m.type === 'string') this.onMessage(s, m as unknown as ServerMessage);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.sock === s) this.lose(s, ev.code);
    };
    ws.onerror = () => undefined; // a close event follows
    // Browsers can take minutes to notice a dead path; the server's pings are
    // invisible to scripts. Ping after silence and give up on no answer. The
    // check compares against our own ping, so a timer throttled in a
    // background tab cannot mistake its own lateness for a dead socket.
    s.heartbeat = setInterval(() => {
      if (this.sock !== s) return;
      const now = Date.now();
      // a handshake a proxy black-holes can hang for minutes
      if (!s.welcomed && now - s.startedAt > WELCOME_TIMEOUT_MS) return this.lose(s, 1006);
      if (s.ws.readyState !== WS_OPEN) return;
      if (s.pingSentAt && s.lastSeen < s.pingSentAt && now - s.pingSentAt > PONG_TIMEOUT_MS) return this.lose(s, 1006);
      if (now - s.lastSeen >= PING_IDLE_MS && !(s.pingSentAt > s.lastSeen)) {
        s.pingSentAt = now;
        this.send(s, { type: 'ping' });
      }
    }, HEARTBEAT_MS);
  }

  /** The socket closed (or we gave up on it): let go of it, then decide what next. */
  private lose(s: Socket, code: number): void {
    const { probe, welcomed } = s;
    this.dropSocket(s);
    this.socketClosed(probe, welcomed, code);
  }

  private send(s: Socket, m: ClientMessage): boolean {
    try {
      s.ws.send(JSON.stringify(m));
      return true;
    } catch {
      return false;
    }
  }

  private dropSocket(s: Socket): void {
    clearInterval(s.heartbeat);
    s.ws.onmessage = s.ws.onclose = s.ws.onerror = s.ws.onopen = null;
    if (this.sock === s) this.sock = undefined;
    try {
      s.ws.close(1000);
    } catch {
      // already closing
    }
  }

  private onMessage(s: Socket, m: ServerMessage): void {
    switch (m.type) {
      case 'welcome': {
        if (m.v !== PROTOCOL_VERSION) {
          // a server speaking another version on this subprotocol: polling (versioned by its path) still works
          this.socketDisabled = true;
          this.dropSocket(s);
          this.emit('error', { code: 'PROTOCOL_ERROR', message: `the server speaks protocol v${String(m.v)}, this client v${PROTOCOL_VERSION}; continuing by polling` });
          this.startPolling();
          return;
        }
        s.welcomed = true;
        this.socketFailures = 0;
        this.attempt = 0;
        if (this.polling || s.probe) {
          // the socket is back: polling is no longer needed
          s.probe = false;
          this.polling = false;
          clearTimeout(this.pollTimer);
          clearTimeout(this.probeTimer);
          this.pollTimer = this.probeTimer = undefined;
        }
        this.setConnection('live');
        this.applySnapshot(snapshotOf(m as unknown as Record<string, unknown>));
        if (m.message !== undefined) this.setNotice(m.message);
        return;
      }
      case 'notice':
        this.setNotice(m.message ?? null);
        return;
      case 'position':
        this.applySnapshot(snapshotOf(m as unknown as Record<string, unknown>));
        return;
      case 'ready':
        this.markReady({ ready_deadline: m.ready_deadline, expires_in_sec: m.expires_in_sec, position: m.position });
        return;
      case 'paused':
        this.setPaused(true, m.event_state ?? 'paused');
        return;
      case 'resumed':
        this.setPaused(false, m.event_state ?? 'open');
        return;
      case 'admitted':
        this.admit(m.reservation_token ? { reservation_token: m.reservation_token, ttl_sec: m.ttl_sec ?? 0 } : {});
        return;
      case 'expired':
        this.finishExpired(m.reason || 'expired');
        return;
      case 'left':
        this.finishLeft();
        return;
      case 'ended':
        this.finishEnded(endedOf(m));
        return;
      case 'error':
        // Only enter is sent over the socket (leave goes over HTTP), so an
        // error while an enter is pending answers it.
        if (this.pendingEnter && m.code !== 'RATE_LIMITED') {
          const p = this.pendingEnter;
          this.pendingEnter = undefined;
          clearTimeout(p.timer);
          p.reject(new WaitingRoomError(m.code, m.message, 0, m.position !== undefined ? { position: m.position } : {}));
        } else {
          this.emit('error', { code: m.code, message: m.message });
        }
        return;
      default:
        return; // pong, and types of later protocol versions
    }
  }

  /**
   * After a socket closed. `welcomed` false means it failed to open: the
   * handshake was refused (proxy, network) or the server turned it away.
   * `probe`: a background attempt made while polling.
   */
  private socketClosed(probe: boolean, welcomed: boolean, code: number): void {
    if (this.pendingEnter) {
      clearTimeout(this.pendingEnter.timer);
      this.pendingEnter.reject(new SocketGone());
      this.pendingEnter = undefined;
    }
    if (!this.running || this.isFinished()) return;
    // The client decides by the close code's range (src/protocol/wire.ts);
    // within the terminal range the code names the outcome when it can.
    const kind = closeKind(code);
    if (kind === 'terminal') {
      // the message before the close usually said so already
      if (code === Close.ADMITTED) return this.admit({});
      if (code === Close.LEFT) return this.finishLeft();
      if (code === Close.UNKNOWN_TOKEN) return this.finishExpired('unknown_token');
      // EXPIRED and ENDED (at connect time no message precedes them: the
      // status answer, 404 or 410, says why) and terminal codes this client
      // does not know: the status answer has the outcome
      if (this._token) void this.settleFinished(this._token);
      return;
    }
    if (kind === 'protocol_error') {
      // The server says this socket broke the protocol or flooded it. The place
      // is still ours: keep it by polling rather than reconnect in a loop.
      this.socketDisabled = true;
      this.emit('error', { code: 'PROTOCOL_ERROR', message: `the server closed the connection (${code}); continuing by polling` });
      this.startPolling();
      return;
    }
    // reconnect range (41xx) and the transport's codes (1006, ...): reconnect with the same token within the grace
    if (this.polling) {
      if (probe) this.scheduleProbe(); // polling carries on; try again later
      return;
    }
    if (this.offline()) {
      // Attempts would fail at once and must not count towards the switch to
      // polling. 'online' reconnects at once; the timer covers browsers whose
      // onLine is wrong.
      this.setConnection('offline');
      this.retryTimer = setTimeout(() => this.openSocket(false), this.maxBackoffMs);
      return;
    }
    if (!welcomed) this.socketFailures++;
    if (this.transport === 'auto' && this.socketFailures >= 2) {
      this.startPolling();
      return;
    }
    this.setConnection('connecting');
    // draining: the instance asks everyone to move now; spread them over a second
    const delay = code === Close.DRAINING ? Math.random() * 1000 : this.backoff(this.attempt++);
    this.retryTimer = setTimeout(() => this.openSocket(false), delay);
  }

  private enterOverSocket(s: Socket, accessToken: string | undefined): Promise<{ reservationToken: string; ttlSec: number }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pendingEnter?.timer === timer) this.pendingEnter = undefined;
        reject(new SocketGone());
      }, SOCKET_ENTER_TIMEOUT_MS);
      this.pendingEnter = { resolve, reject, timer };
      if (!this.send(s, accessToken ? { type: 'enter', access_token: accessToken } : { type: 'enter' })) {
        clearTimeout(timer);
        this.pendingEnter = undefined;
        reject(new SocketGone());
      }
    });
  }

  // -------------------------------------------------------------------------
  // HTTP polling

  private startPolling(): void {
    if (this.polling || !this.running || this.isFinished()) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.polling = true;
    this.pollAttempt = 0;
    void this.poll();
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    if (this.transport !== 'auto' || this.socketDisabled || !this.WS || !this.polling) return;
    const delay = PROBE_MS * (0.8 + Math.random() * 0.4);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      if (this.polling && !this.sock) this.openSocket(true);
      else this.scheduleProbe();
    }, delay);
  }

  private async poll(): Promise<void> {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    const token = this._token;
    const gen = this.gen;
    if (!token || !this.polling) return;
    const r = await this.request('GET', `/api/v1/queue/status?token=${encodeURIComponent(token)}`);
    if (gen !== this.gen || !this.polling) return;
    let next: number;
    if (r.status === 200 && isObject(r.body)) {
      const body = r.body as unknown as StatusResponse;
      this.pollAttempt = 0;
      next = Math.max(1000, Number(body.poll_after_ms) || 1000);
      this.setConnection('polling', next);
      if (!this.applyStatus(body)) return;
    } else if (r.status === 404) {
      this.handleGone(errorOf(r));
      return;
    } else if (endedAnswer(r)) {
      this.handleEnded(r);
      return;
    } else {
      this.setConnection('offline');
      next = r.retryAfterMs ?? Math.max(1000, this.backoff(this.pollAttempt++));
    }
    if (this.polling) this.pollTimer = setTimeout(() => void this.poll(), next);
  }

  // -------------------------------------------------------------------------
  // state

  /** Applies a status answer. Returns false when the place is finished. */
  private applyStatus(body: StatusResponse): boolean {
    if (body.status === 'admitted') {
      this.admit({});
      return false;
    }
    this.applySnapshot(snapshotOf(body as unknown as Record<string, unknown>));
    if (body.message !== undefined) this.setNotice(body.message);
    if (body.ready_for_entry && body.ready_deadline) {
      this.markReady({ ready_deadline: body.ready_deadline, expires_in_sec: body.ready_expires_in_sec ?? 0, position: body.position });
    }
    return true;
  }

  private applySnapshot(snap: PositionSnapshot): void {
    if (this.isFinished()) return;
    const token = this._token;
    if (snap.receipt && token) this.rememberReceipt(token, snap.receipt);
    else if (!snap.receipt) {
      const r = this.receipt;
      if (r) snap.receipt = r;
    }
    const wasPrequeue = this._state === 'prequeue';
    this._last = snap;
    if (snap.status === 'prequeue') {
      if (this._state !== 'ready') this._state = 'prequeue';
    } else if (snap.status === 'waiting' && this._state !== 'ready') this._state = 'waiting';
    else if (snap.status === 'ready' && wasPrequeue) this._state = 'waiting'; // the 'ready' message (or the poll's ready fields) makes it ready
    if (wasPrequeue && snap.status !== 'prequeue') this.emit('drawn', snap);
    this.emit('position', snap);
    this.setPaused(stopsAdmissions(snap.event_state), snap.event_state);
  }

  private rememberReceipt(token: string, receipt: string): void {
    if (this.receipt === receipt) return;
    this.write(this.keys.receipt, JSON.stringify({ t: token, r: receipt }));
  }

  private setNotice(m: OperatorMessage | null): void {
    const next = m && typeof m === 'object' ? m : null;
    if (JSON.stringify(next) === JSON.stringify(this._notice)) return;
    this._notice = next;
    this.emit('notice', next);
  }

  private setPaused(paused: boolean, eventState: PausedDetail['event_state']): void {
    if (paused === this.paused) return;
    this.paused = paused;
    this.emit(paused ? 'paused' : 'resumed', { event_state: eventState });
  }

  private markReady(d: ReadyDetail): void {
    if (this.isFinished()) return;
    this._state = 'ready';
    // every reconnect and every poll repeats it: tell listeners only when it is news
    if (d.ready_deadline === this.readyDeadline) return;
    this.readyDeadline = d.ready_deadline;
    this.emit('ready', d);
  }

  private admit(d: AdmittedDetail): void {
    const token = this._token;
    if (d.reservation_token && token) {
      const a: StoredAdmission = { t: token, reservation_token: d.reservation_token, ttl_sec: d.ttl_sec ?? 0 };
      this.write(this.keys.admission, JSON.stringify(a));
    }
    const detail = d.reservation_token ? d : this.storedAdmission() ?? {};
    if (this.pendingEnter && detail.reservation_token) {
      const p = this.pendingEnter;
      this.pendingEnter = undefined;
      clearTimeout(p.timer);
      p.resolve({ reservationToken: detail.reservation_token, ttlSec: detail.ttl_sec ?? 0 });
    }
    // a second notice only adds something if it brings the token
    if (this._state === 'admitted' && (this.admittedWithToken || !detail.reservation_token)) return;
    this._state = 'admitted';
    this.admittedWithToken = !!detail.reservation_token;
    this.stopTransport();
    this.setConnection('offline');
    this.emit('admitted', detail);
  }

  private finishExpired(reason: string): void {
    if (this.isFinished()) return;
    this._state = 'expired';
    this.forget();
    this.stopTransport();
    this.setConnection('offline');
    this.emit('expired', { reason });
  }

  private finishLeft(): void {
    if (this.isFinished()) return;
    this._state = 'left';
    this.forget();
    this.stopTransport();
    this.setConnection('offline');
    this.emit('left', null);
  }

  private finishEnded(d: EndedDetail): void {
    if (this.isFinished()) return;
    this._state = 'ended';
    this._ended = d;
    this.forget();
    this.stopTransport();
    this.setConnection('offline');
    this.setNotice(d.message);
    this.emit('ended', d);
  }

  /**
   * A 410 for our token: EVENT_ENDED, with the end's reason, the operator's
   * message and when. The error object's `message` is the operator's message
   * here (text by language, or null), not the usual human-readable string.
   */
  private handleEnded(r: HttpResult): void {
    const e = isObject(r.body) && isObject(r.body.error) ? r.body.error : {};
    this.finishEnded({
      reason: typeof e.reason === 'string' && e.reason ? e.reason : 'ended',
      message: isObject(e.message) ? (e.message as OperatorMessage) : null,
      ...(typeof e.ended_at === 'string' ? { ended_at: e.ended_at } : {}),
    });
  }

  /** A 404 for our token: TOKEN_EXPIRED (with reason, `left` included) or TOKEN_NOT_FOUND. */
  private handleGone(err: WaitingRoomError, settled = false): void {
    const reason = typeof err.details.reason === 'string' ? err.details.reason : err.code === 'TOKEN_NOT_FOUND' ? 'unknown_token' : 'expired';
    // let go because the event ended: the status answer (410) says why, with the operator's message
    if (reason === 'ended' && this._token && !settled) void this.settleFinished(this._token);
    else if (reason === 'ended') this.finishEnded({ reason: 'ended', message: this._notice });
    else if (reason === 'left') this.finishLeft();
    else this.finishExpired(reason);
  }

  /** The token finished without telling us how: ask once. */
  private async settleFinished(token: string): Promise<void> {
    const r = await this.request('GET', `/api/v1/queue/status?token=${encodeURIComponent(token)}`);
    if (token !== this._token) return;
    if (r.status === 200 && isObject(r.body) && r.body.status === 'admitted') this.admit({});
    else if (r.status === 200 && isObject(r.body) && (r.body.status === 'waiting' || r.body.status === 'ready' || r.body.status === 'prequeue')) {
      // a terminal close this client does not know did not end the place: keep it by polling
      this.socketDisabled = true;
      this.startPolling();
    } else if (r.status === 404) this.handleGone(errorOf(r), true);
    else if (endedAnswer(r)) this.handleEnded(r);
    else this.finishExpired('expired');
  }

  /**
   * The place is gone: forget it so the next start() joins anew. The join
   * key goes too — the server maps it to the finished place, and a retry
   * with it would be handed that place back.
   */
  private forget(): void {
    const token = this._token;
    if (token && this.read(this.keys.token) === token) this.remove(this.keys.token);
    this.remove(this.keys.join);
    this.remove(this.keys.enter);
    this.remove(this.keys.receipt);
  }

  private useToken(token: string): void {
    if (token === this._token) return;
    this._token = token;
    this._state = 'idle';
    this._last = undefined;
    this._ended = undefined;
    this.paused = false;
    this.readyDeadline = undefined;
    this.admittedWithToken = false;
    this.socketFailures = 0;
    this.attempt = 0;
    this.socketDisabled = false;
  }

  private setConnection(state: ConnectionState, pollMs?: number): void {
    if (state === this._connection && (state !== 'polling' || pollMs === this.lastPollMs)) return;
    this._connection = state;
    this.lastPollMs = state === 'polling' ? pollMs : undefined;
    this.emit('connection', state === 'polling' && pollMs !== undefined ? { state, poll_interval_ms: pollMs } : { state });
  }

  private emit<K extends keyof WaitingRoomEventMap>(type: K, detail: WaitingRoomEventMap[K]['detail']): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // -------------------------------------------------------------------------
  // enter

  private async doEnter(): Promise<{ reservationToken: string; ttlSec: number }> {
    const token = this._token;
    if (!token) throw new WaitingRoomError('NOT_IN_LINE', 'this browser holds no place in line', 0);
    if (this._state === 'admitted') {
      const a = this.storedAdmission();
      if (a?.reservation_token) return { reservationToken: a.reservation_token, ttlSec: a.ttl_sec ?? 0 };
      throw new WaitingRoomError('ALREADY_ADMITTED', 'this place was already admitted (in another tab)', 409);
    }
    if (this._state === 'ended') throw new WaitingRoomError('EVENT_ENDED', 'this event has ended', 410, { ...this._ended });
    if (this._state === 'expired' || this._state === 'left') throw new WaitingRoomError('TOKEN_EXPIRED', 'this place in line is gone', 404);
    const s = this.sock;
    if (s && s.welcomed && s.ws.readyState === WS_OPEN) {
      try {
        const at = this.accessToken ? await this.accessToken() : undefined;
        return await this.enterOverSocket(s, at);
      } catch (e) {
        if (!(e instanceof SocketGone)) {
          if (e instanceof WaitingRoomError && e.code === 'ALREADY_ADMITTED') this.admit({});
          throw e;
        }
        if (this.isFinished()) return this.finishedEnterResult();
        // the socket went away mid-enter: HTTP with an idempotency key
      }
    }
    return this.enterOverHttp(token);
  }

  private finishedEnterResult(): { reservationToken: string; ttlSec: number } {
    const a = this._state === 'admitted' ? this.storedAdmission() : undefined;
    if (a?.reservation_token) return { reservationToken: a.reservation_token, ttlSec: a.ttl_sec ?? 0 };
    const code = this._state === 'admitted' ? 'ALREADY_ADMITTED' : this._state === 'ended' ? 'EVENT_ENDED' : 'TOKEN_EXPIRED';
    throw new WaitingRoomError(code, `this place is ${this._state}`, 0, this._state === 'ended' ? { ...this._ended } : {});
  }

  private async enterOverHttp(token: string): Promise<{ reservationToken: string; ttlSec: number }> {
    // The key lives in storage so a reload or another tab retrying this enter
    // is answered with the same reservation token instead of ALREADY_ADMITTED.
    // The server keeps 4xx answers under the key too, so after a refusal the
    // next attempt needs a fresh one.
    const keyFor = (): string => {
      try {
        const v = JSON.parse(this.read(this.keys.enter) ?? 'null') as { t?: string; k?: string } | null;
        if (v && v.t === token && v.k) return v.k;
      } catch {
        // replaced below
      }
      const k = randomKey();
      this.write(this.keys.enter, JSON.stringify({ t: token, k }));
      return k;
    };
    let last: WaitingRoomError = new WaitingRoomError('NETWORK', 'the waiting room could not be reached', 0);
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) await sleep(this.backoff(attempt));
      if (token !== this._token) throw new WaitingRoomError('TOKEN_CHANGED', 'another tab took over this place', 0);
      const headers: Record<string, string> = { 'Idempotency-Key': keyFor(), ...(await this.authHeader()) };
      const r = await this.request('POST', '/api/v1/queue/enter', { waiting_token: token }, headers);
      if (r.status === 200 && isObject(r.body) && typeof r.body.reservation_token === 'string') {
        const b = r.body as unknown as EnterResponse;
        this.remove(this.keys.enter);
        if (token === this._token) this.admit({ reservation_token: b.reservation_token, ttl_sec: b.ttl_sec });
        return { reservationToken: b.reservation_token, ttlSec: b.ttl_sec };
      }
      last = errorOf(r);
      if (r.status === 0 || r.status >= 500) continue; // not stored by the server: same key, same outcome
      if (last.code === 'IDEMPOTENCY_CONFLICT' && last.details.reason === 'in_flight') continue; // another tab's attempt is running
      this.remove(this.keys.enter);
      if (last.code === 'IDEMPOTENCY_CONFLICT') continue; // key reused for another request: a fresh one
      if (last.code === 'TOKEN_EXPIRED' || last.code === 'TOKEN_NOT_FOUND') this.handleGone(last);
      if (last.code === 'EVENT_ENDED') this.handleEnded(r);
      if (last.code === 'ALREADY_ADMITTED') {
        this.admit({});
        const a = this.storedAdmission();
        if (a?.reservation_token) return { reservationToken: a.reservation_token, ttlSec: a.ttl_sec };
      }
      throw last;
    }
    throw last;
  }

  // -------------------------------------------------------------------------
  // cross-tab

  private readonly onStorage = (ev: StorageEvent): void => {
    if (!this.running || (ev.storageArea && this.storage && ev.storageArea !== this.storage)) return;
    if (ev.key === this.keys.token || ev.key === null) {
      // Read the current value rather than ev.newValue: if two tabs raced
      // (no Web Locks), every tab converges on the last writer's place.
      const now = this.read(this.keys.token);
      if (now && now !== this._token && this._state !== 'admitted') {
        const gen = ++this.gen;
        this.stopTransport();
        this.starting = undefined;
        void this.resume(now, gen);
      }
      return;
    }
    if (ev.key === this.keys.admission) {
      const a = this.storedAdmission();
      if (a && !(this._state === 'admitted' && this.admittedWithToken)) this.admit(a);
    }
  };

  private readonly onOnline = (): void => {
    if (!this.running || this.isFinished() || !this._token) return;
    // the network is back: retry at once, with a clean slate
    this.socketFailures = 0;
    this.attempt = 0;
    if (this.polling) {
      void this.poll();
      if (!this.sock && this.transport === 'auto' && !this.socketDisabled) this.openSocket(true);
    } else if (!this.sock || this.sock.ws.readyState !== WS_OPEN) {
      this.openSocket(false);
    }
  };

  private readonly onOffline = (): void => {
    if (!this.running || this.isFinished()) return;
    // Sockets can look open for a long time after the network went; drop it
    // now so the page says so and 'online' reconnects at once (the grace
    // keeps the place meanwhile).
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.sock) this.lose(this.sock, 1006);
    this.setConnection('offline'); // polling says so too: its next request would fail
  };

  private listen(): void {
    if (this.listening || typeof globalThis.addEventListener !== 'function') return;
    this.listening = true;
    globalThis.addEventListener('storage', this.onStorage);
    globalThis.addEventListener('online', this.onOnline);
    globalThis.addEventListener('offline', this.onOffline);
  }

  private unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    globalThis.removeEventListener('storage', this.onStorage);
    globalThis.removeEventListener('online', this.onOnline);
    globalThis.removeEventListener('offline', this.onOffline);
  }

  private storedAdmission(): StoredAdmission | undefined {
    try {
      const a = JSON.parse(this.read(this.keys.admission) ?? 'null') as StoredAdmission | null;
      return a && a.t === this._token && typeof a.reservation_token === 'string' ? a : undefined;
    } catch {
      return undefined;
    }
  }

  // -------------------------------------------------------------------------
  // plumbing

  private async authHeader(): Promise<Record<string, string>> {
    if (!this.accessToken) return {};
    const t = await this.accessToken();
    return t ? { Authorization: `Bearer ${t}` } : {};
  }

  private async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
    const ctl = typeof AbortController === 'function' ? new AbortController() : undefined;
    const timer = setTimeout(() => ctl?.abort(), REQUEST_TIMEOUT_MS);
    try {
      const res = await this.fetchFn(this.baseUrl + path, {
        method,
        headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
        body: body === undefined ? null : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'same-origin',
        ...(ctl ? { signal: ctl.signal } : {}),
      });
      let parsed: unknown;
      try {
        parsed = await res.json();
      } catch {
        parsed = undefined;
      }
      const ra = Number(res.headers.get('Retry-After'));
      return { status: res.status, body: parsed, ...(ra > 0 ? { retryAfterMs: Math.min(60, ra) * 1000, retryAfterSec: ra } : {}) };
    } catch {
      return { status: 0, body: undefined };
    } finally {
      clearTimeout(timer);
    }
  }

  private read(key: string): string | null {
    try {
      if (this.storage) return this.storage.getItem(key);
    } catch {
      // storage refused: fall through to memory
    }
    return this.memory.get(key) ?? null;
  }

  private write(key: string, value: string): void {
    this.memory.set(key, value);
    try {
      this.storage?.setItem(key, value);
    } catch {
      // quota or privacy mode: the in-memory copy serves this tab
    }
  }

  private remove(key: string): void {
    this.memory.delete(key);
    try {
      this.storage?.removeItem(key);
    } catch {
      // ignore
    }
  }
}
