import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../redis/connect.js';
import { callStore, storeError } from '../redis/connect.js';
import type { ScriptKey, ScriptStatusName } from '../generated/lua.js';
import { AppError, type ErrorCode } from '../errors.js';
import { num, records, statusName, statusOf, str, unexpected } from '../redis/replies.js';
import { eventKeys, userKey, type EventKeys } from '../redis/keys.js';
import { tokenEvent } from './token.js';

// Typed access to the queue's Lua scripts. The scripts are the only writers
// of queue state; this module turns their replies into values or AppErrors.

export type UserState = 'prequeue' | 'waiting' | 'ready' | 'admitted' | 'expired' | 'left';
/**
 * scheduled (joins refused until the pre-queue opens) -> prequeue (joins
 * accepted, nobody admitted, no positions) -> open (after the draw) <->
 * paused; closed (no new arrivals); ended (everyone waiting let go).
 */
export type EventState = 'scheduled' | 'prequeue' | 'open' | 'paused' | 'closed' | 'ended';
export const EVENT_STATES: readonly EventState[] = ['scheduled', 'prequeue', 'open', 'paused', 'closed', 'ended'];
/** user: a verified user enters (the place becomes theirs); anonymous: the waiting token is the credential */
export type EventAccess = 'user' | 'anonymous';

const stateNames: Record<string, UserState> = { p: 'prequeue', w: 'waiting', r: 'ready', a: 'admitted', x: 'expired', l: 'left' };

/**
 * Refusals: a script's status (lua/status-codes.json) -> the contract's
 * error. One table; where the same status means a different answer to a
 * different request, the caller names the entry (`as`).
 */
const refusals = {
  DUPLICATE: ['DUPLICATE_REQUEST', 'already in line for this event'],
  EVENT_NOT_FOUND: ['EVENT_NOT_FOUND', 'no such event'],
  EVENT_CLOSED: ['EVENT_CLOSED', 'this event is closed to new arrivals'],
  TOKEN_NOT_FOUND: ['TOKEN_NOT_FOUND', 'unknown waiting token'],
  NOT_READY: ['NOT_READY', 'not your turn yet: keep waiting'],
  ALREADY_ADMITTED: ['ALREADY_ADMITTED', 'this waiting token was already admitted'],
  /** enter: the place expired (or was left) */
  FINISHED: ['TOKEN_EXPIRED', 'this place in line has expired'],
  /** leave: the place already ended (admitted or expired) */
  FINISHED_LEAVE: ['NOT_IN_LINE', 'this waiting token is no longer in line'],
  NOT_OWNER: ['FORBIDDEN', 'this place in line belongs to another user'],
  HOLDS_OTHER_PLACE: ['DUPLICATE_REQUEST', 'this user already holds another place in this event'],
  USER_REQUIRED: ['UNAUTHORIZED', 'a bearer token is required to enter this event'],
  EVENT_NOT_OPEN: ['EVENT_NOT_OPEN', 'this event is not open yet'],
  EVENT_ENDED: ['EVENT_ENDED', 'this event has ended'],
  STATE_CONFLICT: ['EVENT_STATE_CONFLICT', "not allowed in the event's current state"],
  PROOF_USED: ['CHALLENGE_FAILED', 'this challenge was solved for another join already: get a new one'],
} as const satisfies Record<string, readonly [ErrorCode, string]>;

function refuse(status: keyof typeof refusals, details?: Record<string, unknown>, headers?: Record<string, string>): AppError {
  const [code, message] = refusals[status];
  return new AppError(code, message, details, headers);
}


export interface EventConfig {
  readonly id: string;
  readonly rate: number;
  readonly burst: number;
  readonly readyWindowSec: number;
  readonly reconnectGraceSec: number;
  readonly state: EventState;
  readonly createdMs: number;
  readonly updatedMs: number;
  readonly access: EventAccess;
  /** where the page sends admitted users ('' = none) */
  readonly targetUrl: string;
  /** the operator's message to everyone waiting, by language (null = none) */
  readonly notice: Notice | null;
  /** when the message last changed (0 = never): the version instances compare */
  readonly noticeMs: number;
  /** the schedule, Redis ms (0 = none) */
  readonly prequeueOpensMs: number;
  readonly startsMs: number;
  readonly endsMs: number;
  /** SHA-256 of the draw's seed, hex ('' = no draw): published from the moment the schedule is set, never changed */
  readonly drawCommitment: string;
  /** when the draw happened (0 = not yet) */
  readonly drawnMs: number;
  /** why and when it ended ('' / 0 = it has not) */
  readonly endReason: string;
  readonly endedMs: number;
  readonly adaptive: AdaptivePolicy | null;
  /** at most this many ready + admitted sessions at once (0 = off: admit by rate alone) */
  readonly maxActiveSessions: number;
  readonly challenge: ChallengePolicy | null;
  /** the adaptive controller's last change: why and when ('' / 0 = none yet) */
  readonly adaptiveReason: string;
  readonly adaptiveMs: number;
}

/**
 * The configuration fields, in the order event-put-3.lua returns them and
 * every read asks for them (toConfig reads by this order).
 */
export const CONFIG_FIELDS = [
  'rate',
  'burst',
  'ready_window_sec',
  'reconnect_grace_sec',
  'state',
  'created_ms',
  'updated_ms',
  'access',
  'target_url',
  'notice',
  'notice_ms',
  'prequeue_opens_ms',
  'starts_ms',
  'ends_ms',
  'draw_commit',
  'drawn_ms',
  'end_reason',
  'ended_ms',
  'adaptive',
  'max_active_sessions',
  'challenge',
  'adaptive_reason',
  'adaptive_ms',
] as const;

/** Adaptive outflow (src/queue/adaptive.ts): the rate moves between floor and ceiling to hold the backend objective. */
export interface AdaptivePolicy {
  readonly floor: number;
  readonly ceiling: number;
  /** reservation p95 objective, ms */
  readonly p95Ms: number;
  /** share of reservation calls that may fail, 0..1 */
  readonly errorShare: number;
}

/** A join must carry a solved challenge: proof of work, or a token an external verifier accepts. */
export type ChallengePolicy = { readonly kind: 'pow'; readonly difficulty: number } | { readonly kind: 'external' };

function parseJson(v: unknown): Record<string, unknown> | null {
  if (typeof v !== 'string' || v === '') return null;
  try {
    const o = JSON.parse(v) as unknown;
    return o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The stored policy (JSON written by the admin API only); anything unreadable counts as off. */
export function parseAdaptive(v: unknown): AdaptivePolicy | null {
  const o = parseJson(v);
  if (!o) return null;
  const n = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) ? x : NaN);
  const p = { floor: n(o.floor), ceiling: n(o.ceiling), p95Ms: n(o.p95_ms), errorShare: n(o.error_share) };
  return Object.values(p).every((x) => !Number.isNaN(x)) && p.floor > 0 && p.ceiling >= p.floor ? p : null;
}

export function adaptiveJson(p: AdaptivePolicy): string {
  return JSON.stringify({ floor: p.floor, ceiling: p.ceiling, p95_ms: p.p95Ms, error_share: p.errorShare });
}

export function parseChallenge(v: unknown): ChallengePolicy | null {
  const o = parseJson(v);
  if (!o) return null;
  if (o.kind === 'pow' && typeof o.difficulty === 'number') return { kind: 'pow', difficulty: o.difficulty };
  if (o.kind === 'external') return { kind: 'external' };
  return null;
}

/** The operator's message: text by language code ("en", "ko", ...). */
export type Notice = Readonly<Record<string, string>>;

/** The stored message (JSON written by the admin API only); anything unreadable counts as none. */
export function parseNotice(v: unknown): Notice | null {
  if (typeof v !== 'string' || v === '') return null;
  try {
    const o = JSON.parse(v) as unknown;
    if (!o || typeof o !== 'object' || Array.isArray(o)) return null;
    const out: Record<string, string> = {};
    for (const [k, t] of Object.entries(o)) if (typeof t === 'string' && t) out[k] = t;
    return Object.keys(out).length ? out : null;
  } catch {
    return null;
  }
}

export interface EventPatch {
  rate?: number;
  burst?: number;
  readyWindowSec?: number;
  reconnectGraceSec?: number;
  state?: EventState;
  access?: EventAccess;
  /** '' clears it */
  targetUrl?: string;
  /** null clears it */
  notice?: Notice | null;
  /** the schedule (Redis ms); endsMs null clears it */
  prequeueOpensMs?: number;
  startsMs?: number;
  endsMs?: number | null;
  /** with a first schedule: the draw's seed and its commitment (kept only when the event has none) */
  draw?: { seed: string; commitment: string };
  /** null turns each off */
  adaptive?: AdaptivePolicy | null;
  maxActiveSessions?: number | null;
  challenge?: ChallengePolicy | null;
}

export interface JoinDefaults {
  autoCreate: boolean;
  rate: number;
  burst: number;
  readyWindowSec: number;
  reconnectGraceSec: number;
  livenessMs: number;
  idempotencyTtlSec: number;
  access: EventAccess;
  /** how long a challenge proof's id is remembered (as long as a challenge is valid; default 2 minutes) */
  proofTtlMs?: number;
}

/** [token, who claims, window ms]: see QueueStore.touch */
export type LivenessClaim = readonly [token: string, kind: 'hold' | 'poll', windowMs: number];

export interface JoinResult {
  readonly token: string;
  /** 0 in the pre-queue (no position before the draw) */
  readonly position: number;
  readonly created: boolean;
  /** in the pre-queue: the entry receipt (its line in the draw's entrant list) */
  readonly receipt?: string;
}

export interface EtaParams {
  /** configured admissions/s */
  readonly rate: number;
  /** measured, weighted admissions/s (falls back to `rate`) */
  readonly rw: number;
  readonly share: number;
  readonly conf: number;
  readonly spread: number;
  readonly tokens: number;
}

export interface StatusSnapshot {
  readonly token: string;
  readonly eventId: string;
  readonly state: UserState;
  /** 0-based rank in line (ready prefix included), -1 when not in line */
  readonly rank: number;
  readonly readyCount: number;
  readonly joinedMs: number;
  readonly readyDeadlineMs: number;
  readonly finishedMs: number;
  readonly reason: string;
  readonly eventState: EventState;
  readonly nowMs: number;
  readonly eta: EtaParams;
  /** the user's line sequence number */
  readonly seq: number;
  /** exits so far in this event: `rank` is exact as of this exit */
  readonly xseq: number;
  readonly reconnectGraceSec: number;
  /** the event's scheduled start (Redis ms, 0 = none) */
  readonly startsMs: number;
  /** why the event ended ('' = it has not) */
  readonly endReason: string;
}

/** What a tick did to the event's state: '' nothing, else the state it moved to ('drawn': the pre-queue drew and the event opened). */
export type Transition = '' | 'prequeue' | 'drawn' | 'ended';

/** The draw as published (docs/FAIRNESS.md). */
export interface DrawInfo {
  readonly commitment: string;
  readonly committedMs: number;
  /** revealed once drawn, else '' */
  readonly seed: string;
  readonly drawnMs: number;
  readonly entrants: number;
  /** SHA-256 of the entrant list, once computed ('' = not yet) */
  readonly digest: string;
  readonly prequeueOpensMs: number;
  readonly startsMs: number;
  readonly state: EventState;
}

export interface TickResult {
  readonly state: EventState;
  readonly qlen: number;
  readonly readyCount: number;
  readonly tokens: number;
  /** [token, seq, deadlineMs] */
  readonly promoted: ReadonlyArray<readonly [string, number, number]>;
  /** [token, reason] */
  readonly expired: ReadonlyArray<readonly [string, string]>;
  /** [exitSeq, lineSeq, reason], in exit order */
  readonly exits: ReadonlyArray<readonly [number, number, string]>;
  readonly eta: { rate: number; rw: number; r1: number; r5: number; r15: number; share: number; conf: number; spread: number };
  readonly nowMs: number;
  readonly xseq: number;
  readonly reconnectGraceSec: number;
  /** when the operator's message last changed (0 = never) */
  readonly noticeMs: number;
  readonly startsMs: number;
  readonly transition: Transition;
}

export interface EventStats {
  readonly config: EventConfig;
  readonly inLine: number;
  readonly ready: number;
  readonly waiting: number;
  readonly counters: Readonly<Record<string, number>>;
  readonly bucketTokens: number;
  readonly eta: Readonly<Record<string, number>>;
  readonly tickerHolder: string | null;
}

function toConfig(id: string, v: unknown[]): EventConfig {
  return {
    id,
    rate: num(v[0]),
    burst: num(v[1]),
    readyWindowSec: num(v[2]),
    reconnectGraceSec: num(v[3]),
    state: (v[4] as EventState) ?? 'closed',
    createdMs: num(v[5]),
    updatedMs: num(v[6]),
    access: v[7] === 'anonymous' ? 'anonymous' : 'user',
    targetUrl: typeof v[8] === 'string' ? v[8] : '',
    notice: parseNotice(v[9]),
    noticeMs: num(v[10]),
    prequeueOpensMs: num(v[11]),
    startsMs: num(v[12]),
    endsMs: num(v[13]),
    drawCommitment: typeof v[14] === 'string' ? v[14] : '',
    drawnMs: num(v[15]),
    endReason: typeof v[16] === 'string' ? v[16] : '',
    endedMs: num(v[17]),
    adaptive: parseAdaptive(v[18]),
    maxActiveSessions: num(v[19]),
    challenge: parseChallenge(v[20]),
    adaptiveReason: typeof v[21] === 'string' ? v[21] : '',
    adaptiveMs: num(v[22]),
  };
}

/** at most this many joins per script call (bounds the time one call holds Redis) */
const JOIN_BATCH_MAX = 256;

interface JoinBatch {
  eventId: string;
  d: JoinDefaults;
  items: { token: string; userId: string; idempotencyKey: string; proofId: string; resolve: (r: JoinResult) => void; reject: (e: unknown) => void }[];
}

export class QueueStore {
  private readonly joinBatches = new Map<string, JoinBatch>();
  private joinFlush: NodeJS.Immediate | undefined;

  constructor(
    readonly redis: RedisClient,
    readonly prefix: string,
    /** Virtual clock for deterministic tests; undefined = Redis TIME. */
    private readonly clock?: () => number,
  ) {}

  keys(eventId: string): EventKeys {
    return eventKeys(this.prefix, eventId);
  }

  private now(): string {
    return this.clock ? String(Math.floor(this.clock())) : '';
  }

  private run(script: ScriptKey, keys: readonly string[], base: string, args: readonly (string | number)[]): Promise<unknown> {
    return callStore(this.redis, script, keys, [base, this.now(), ...args]);
  }

  /**
   * Joins are gathered per event for one event-loop turn and sent as one
   * script call: the per-command cost in ioredis and Redis was most of a
   * join's CPU (docs/BENCHMARKS.md). Arrival order within a batch is the
   * order the requests reached this instance. Callers pass one defaults
   * object for all joins (the route builds it once); a join with another
   * object sends the batch gathered so far first, so order is kept.
   */
  join(eventId: string, token: string, userId: string, idempotencyKey: string, d: JoinDefaults, proofId = ''): Promise<JoinResult> {
    let batch = this.joinBatches.get(eventId);
    if (batch && batch.d !== d) {
      this.joinBatches.delete(eventId);
      void this.runJoinBatch(batch);
      batch = undefined;
    }
    if (!batch) {
      batch = { eventId, d, items: [] };
      this.joinBatches.set(eventId, batch);
      this.joinFlush ??= setImmediate(() => this.flushJoins());
    }
    const b = batch;
    return new Promise<JoinResult>((resolve, reject) => {
      b.items.push({ token, userId, idempotencyKey, proofId, resolve, reject });
      if (b.items.length >= JOIN_BATCH_MAX) {
        this.joinBatches.delete(eventId);
        void this.runJoinBatch(b);
      }
    });
  }

  private flushJoins(): void {
    this.joinFlush = undefined;
    const batches = [...this.joinBatches.values()];
    this.joinBatches.clear();
    for (const b of batches) void this.runJoinBatch(b);
  }

  private async runJoinBatch(b: JoinBatch): Promise<void> {
    const k = this.keys(b.eventId);
    const { d } = b;
    const args: (string | number)[] = [d.livenessMs, d.autoCreate ? '1' : '0', d.rate, d.burst, d.readyWindowSec, d.reconnectGraceSec, d.idempotencyTtlSec, d.access, d.proofTtlMs ?? 120_000];
    for (const it of b.items) args.push(it.token, it.userId, it.idempotencyKey, it.proofId);
    let r: unknown[];
    try {
      r = (await this.run('joinBatch', [k.cfg, k.seq, k.q, k.live, k.stats, k.bucket, k.hist, k.entrants], k.base, args)) as unknown[];
    } catch (err) {
      for (const it of b.items) it.reject(err);
      return;
    }
    if (!Array.isArray(r) || r.length < b.items.length * 4) {
      const err = new AppError('INTERNAL', `script joinBatch answered ${Array.isArray(r) ? r.length / 4 : 0} of ${b.items.length} joins`);
      for (const it of b.items) it.reject(err);
      return;
    }
    b.items.forEach((it, i) => {
      let j: JoinReply;
      try {
        j = decodeJoin(r, i);
      } catch (err) {
        it.reject(err);
        return;
      }
      if (j.status === 'JOINED') it.resolve({ token: j.token, position: j.position, created: j.created });
      else if (j.status === 'PREQUEUED') it.resolve({ token: j.token, position: 0, created: j.created, receipt: j.receipt });
      else if (j.status === 'DUPLICATE') it.reject(refuse('DUPLICATE', { waiting_token: j.token, position: j.position, status: j.state }));
      else if (j.status === 'EVENT_NOT_OPEN') {
        const opens = j.prequeueOpensMs || j.startsMs;
        const wait = Math.max(1, Math.ceil((opens - Date.now()) / 1000));
        it.reject(
          refuse('EVENT_NOT_OPEN', { opens_at: iso(opens), starts_at: iso(j.startsMs) }, { 'Retry-After': String(Math.min(wait, 3600)) }),
        );
      } else if (j.status === 'EVENT_ENDED') it.reject(refuse('EVENT_ENDED', { reason: j.reason, ended_at: iso(j.endedMs) }));
      else if (j.status === 'PROOF_USED') it.reject(refuse('PROOF_USED', { reason: 'used' }));
      else it.reject(refuse(j.status));
    });
  }

  /**
   * One user's place. livenessMs > 0 also claims liveness for that long
   * (lua/includes/liveness.lua): for a poll (`holder` omitted), or for the
   * sockets of the instance named by `holder` (a socket attaching).
   */
  async status(token: string, livenessMs: number, holder = ''): Promise<StatusSnapshot | null> {
    const eventId = tokenEvent(token);
    if (!eventId) return null;
    const k = this.keys(eventId);
    const r = await this.run('status', [userKey(k, token), k.q, k.ready, k.live, k.cfg, k.eta, k.stats], k.base, [token, livenessMs, holder]);
    return decodeStatus(r, token, eventId);
  }

  private exitKeys(k: EventKeys, token: string): string[] {
    return [userKey(k, token), k.q, k.ready, k.live, k.stats, k.fin, k.exits, k.hist];
  }

  /**
   * userId: the caller's authenticated user ('' = none); a place bound to
   * another user is 403. A place admitted before answers `again: true` with
   * the admission it had (the caller decides whether it may be handed out).
   */
  /** An admission was redeemed or spent: its session slot (max_active_sessions) is free. */
  async endSession(eventId: string, token: string): Promise<boolean> {
    const k = this.keys(eventId);
    return num(await this.run('sessionEnd', [k.active], k.base, [token])) === 1;
  }

  /** The adaptive controller's decision (lease-fenced): false when this instance does not tick the event or adaptive outflow is off. */
  async setAdaptiveRate(eventId: string, instanceId: string, rate: number, reason: string, entry: string): Promise<boolean> {
    const k = this.keys(eventId);
    return num(await this.run('adaptiveSet', [k.cfg, k.bucket, k.lease, k.alog], k.base, [instanceId, rate, reason, entry])) === 1;
  }

  /** The controller's recent decisions, oldest first. */
  async adaptiveLog(eventId: string, max = 600): Promise<Array<{ atMs: number; rate: number; reason: string; p95Ms: number; errorShare: number; calls: number }>> {
    const k = this.keys(eventId);
    const rows = await this.guard(() => this.redis.lrange(k.alog, 0, max - 1));
    return rows.reverse().map((r) => {
      const [at, rate, reason, p95, err, calls] = r.split(' ');
      return { atMs: num(at), rate: num(rate), reason: reason ?? '', p95Ms: num(p95), errorShare: num(err), calls: num(calls) };
    });
  }

  /** Ready and admitted sessions holding a slot now (max_active_sessions). */
  async activeSessions(eventId: string): Promise<number> {
    const k = this.keys(eventId);
    return this.guard(() => this.redis.zcount(k.active, `(${Date.now()}`, '+inf'));
  }

  async enter(token: string, userId = '', authConfigured = false, admissionTtlMs = 300_000): Promise<{ eventId: string; readyAtMs: number; admittedMs: number; joinedMs: number; boundUser: string; again: boolean }> {
    const eventId = tokenEvent(token);
    if (!eventId) throw refuse('TOKEN_NOT_FOUND');
    const k = this.keys(eventId);
    const e = decodeEnter(await this.run('enter', this.exitKeys(k, token), k.base, [token, userId, authConfigured ? '1' : '0', admissionTtlMs]));
    switch (e.status) {
      case 'ADMITTED':
        return { eventId, readyAtMs: e.readyAtMs, admittedMs: e.admittedMs, joinedMs: e.joinedMs, boundUser: e.boundUser, again: false };
      case 'ALREADY_ADMITTED':
        return { eventId, readyAtMs: 0, admittedMs: e.admittedMs, joinedMs: e.joinedMs, boundUser: e.boundUser, again: true };
      case 'NOT_READY':
        throw refuse('NOT_READY', { position: e.position });
      case 'FINISHED':
        throw refuse('FINISHED', { reason: e.reason });
      case 'HOLDS_OTHER_PLACE':
        throw refuse('HOLDS_OTHER_PLACE', { waiting_token: e.otherToken });
      case 'USER_REQUIRED':
        throw refuse('USER_REQUIRED', { reason: 'missing' }, { 'WWW-Authenticate': 'Bearer' });
      default:
        throw refuse(e.status);
    }
  }

  async leave(token: string): Promise<void> {
    const eventId = tokenEvent(token);
    if (!eventId) throw refuse('TOKEN_NOT_FOUND');
    const k = this.keys(eventId);
    const r = await this.run('leave', [...this.exitKeys(k, token), k.cfg, k.entrants], k.base, [token]);
    const status = statusOf('leave', r);
    if (status === 'LEFT') return;
    if (status === 'FINISHED') throw refuse('FINISHED_LEAVE', { status: stateNames[str((r as unknown[])[1])] ?? 'unknown' });
    if (status === 'TOKEN_NOT_FOUND') throw refuse(status);
    throw unexpected('leave', status);
  }

  /**
   * Liveness claims of one instance (lua/includes/liveness.lua), deadline =
   * Redis now + window, for users still in line: 'hold' is this instance's
   * own claim for its sockets (set exactly), 'poll' a poll it answered (only
   * ever later). Returns the number of claims recorded.
   */
  async touch(eventId: string, instanceId: string, claims: ReadonlyArray<LivenessClaim>): Promise<number> {
    if (claims.length === 0) return 0;
    const k = this.keys(eventId);
    const args: (string | number)[] = [instanceId];
    for (const [t, kind, w] of claims) args.push(t, kind === 'hold' ? 'h' : 'p', Math.max(0, Math.round(w)));
    return num(await this.run('touch', [k.live], k.base, args));
  }

  /** Exact ranks (-1 = not in line) of many users as of one exit sequence number. */
  async ranks(eventId: string, tokens: readonly string[]): Promise<{ xseq: number; ranks: number[] }> {
    const k = this.keys(eventId);
    const r = (await this.run('ranks', [k.q, k.stats], k.base, tokens)) as unknown[];
    return { xseq: num(r[0]), ranks: r.slice(1).map((x) => num(x, -1)) };
  }

  async acquireLease(eventId: string, instanceId: string, leaseMs: number): Promise<boolean> {
    const k = this.keys(eventId);
    return num(await this.run('lease', [k.lease], k.base, [instanceId, leaseMs])) === 1;
  }

  async releaseLease(eventId: string, instanceId: string): Promise<boolean> {
    const k = this.keys(eventId);
    return num(await this.run('release', [k.lease], k.base, [instanceId])) === 1;
  }

  async tick(
    eventId: string,
    instanceId: string,
    o: { leaseMs: number; maxPromote: number; maxSweep: number; maxExits: number; gapMs?: number; quietMs?: number },
  ): Promise<TickResult | 'not-holder' | 'no-config'> {
    const k = this.keys(eventId);
    const r = await this.run('tick', [k.cfg, k.bucket, k.q, k.ready, k.live, k.stats, k.hist, k.exits, k.fin, k.eta, k.lease, k.seq, k.entrants, k.active], k.base, [
      instanceId,
      o.leaseMs,
      o.maxPromote,
      o.maxSweep,
      o.maxExits,
      o.gapMs ?? 10_000,
      o.quietMs ?? 60_000,
    ]);
    return decodeTick(r);
  }

  async cleanup(eventId: string, retentionMs: number, max: number): Promise<number> {
    const k = this.keys(eventId);
    return num(await this.run('cleanup', [k.fin, k.stats], k.base, [retentionMs, max]));
  }

  async putEvent(eventId: string, p: EventPatch): Promise<EventConfig & { created: boolean }> {
    const k = this.keys(eventId);
    const s = (v: number | string | undefined): string => (v === undefined ? '' : String(v));
    const r = await this.run('eventPut', [k.cfg, k.bucket, k.hist], k.base, [
      s(p.rate),
      s(p.burst),
      s(p.readyWindowSec),
      s(p.reconnectGraceSec),
      s(p.state),
      s(p.access),
      p.targetUrl === undefined ? '' : p.targetUrl === '' ? 'none' : p.targetUrl,
      p.notice === undefined ? '' : p.notice === null ? 'none' : JSON.stringify(p.notice),
      s(p.prequeueOpensMs),
      s(p.startsMs),
      p.endsMs === undefined ? '' : p.endsMs === null ? 'none' : String(p.endsMs),
      p.draw?.seed ?? '',
      p.draw?.commitment ?? '',
      p.adaptive === undefined ? '' : p.adaptive === null ? 'none' : adaptiveJson(p.adaptive),
      p.maxActiveSessions === undefined ? '' : p.maxActiveSessions === null ? 'none' : String(p.maxActiveSessions),
      p.challenge === undefined ? '' : p.challenge === null ? 'none' : JSON.stringify(p.challenge),
    ]);
    const status = statusOf('eventPut', r);
    const f = r as unknown[];
    if (status === 'STATE_CONFLICT') throw refuse('STATE_CONFLICT', { state: str(f[1]) });
    if (status !== 'CONFIGURED') throw unexpected('eventPut', status);
    return { ...toConfig(eventId, f.slice(2)), created: num(f[1]) === 1 };
  }

  /** Ends the event now (idempotent: a second end answers the first, `already`). */
  async endEvent(eventId: string, reason: string, notice: Notice | undefined): Promise<{ endedMs: number; reason: string; already: boolean }> {
    const k = this.keys(eventId);
    const r = await this.run('eventEnd', [k.cfg], k.base, [reason, notice ? JSON.stringify(notice) : '']);
    const status = statusOf('eventEnd', r);
    const f = r as unknown[];
    if (status === 'ENDED') return { endedMs: num(f[1]), reason, already: false };
    if (status === 'EVENT_ENDED') return { endedMs: num(f[2]), reason: str(f[1]), already: true };
    if (status === 'EVENT_NOT_FOUND') throw refuse('EVENT_NOT_FOUND');
    throw unexpected('eventEnd', status);
  }

  /** The draw as published: the seed only once drawn (docs/FAIRNESS.md); null when the event has no draw. */
  async drawInfo(eventId: string): Promise<DrawInfo | null> {
    const k = this.keys(eventId);
    const [v, entrants] = await this.guard(() =>
      Promise.all([
        this.redis.hmget(k.cfg, 'draw_commit', 'draw_committed_ms', 'draw_seed', 'drawn_ms', 'draw_entrants', 'draw_digest', 'prequeue_opens_ms', 'starts_ms', 'state'),
        this.redis.zcard(k.entrants),
      ]),
    );
    if (!v[0]) return null;
    const drawnMs = num(v[3]);
    return {
      commitment: v[0],
      committedMs: num(v[1]),
      seed: drawnMs > 0 ? (v[2] ?? '') : '',
      drawnMs,
      entrants: drawnMs > 0 ? num(v[4]) : entrants,
      digest: drawnMs > 0 ? (v[5] ?? '') : '',
      prequeueOpensMs: num(v[6]),
      startsMs: num(v[7]),
      state: (v[8] ?? 'closed') as EventState,
    };
  }

  /** One page of the entrant list in draw order: [receipt, draw key]; after the draw it never changes. */
  async entrants(eventId: string, offset: number, limit: number): Promise<Array<[string, number]>> {
    const k = this.keys(eventId);
    const flat = await this.guard(() => this.redis.zrange(k.entrants, offset, offset + limit - 1, 'WITHSCORES'));
    const out: Array<[string, number]> = [];
    for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, num(flat[i + 1])]);
    return out;
  }

  /** Records the entrant list's digest once (every instance computes the same value: the first write stays). */
  async saveDrawDigest(eventId: string, digest: string): Promise<string> {
    const k = this.keys(eventId);
    await this.guard(() => this.redis.hsetnx(k.cfg, 'draw_digest', digest));
    return (await this.guard(() => this.redis.hget(k.cfg, 'draw_digest'))) ?? digest;
  }

  /** Why the event ended and the operator's message, for the users told now. */
  async endInfo(eventId: string): Promise<{ reason: string; endedMs: number; notice: Notice | null }> {
    const k = this.keys(eventId);
    const v = await this.guard(() => this.redis.hmget(k.cfg, 'end_reason', 'ended_ms', 'notice'));
    return { reason: v[0] ?? '', endedMs: num(v[1]), notice: parseNotice(v[2]) };
  }

  /**
   * Deletes every key of an event (its hash tag puts them in one slot): a
   * bounded SCAN on each primary (only the slot's owner has any), UNLINK in
   * batches. Returns the number of keys removed.
   */
  async deleteEventKeys(eventId: string): Promise<number> {
    const k = this.keys(eventId);
    // glob characters in the prefix are matched literally
    const pattern = `${k.base.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
    const nodes: Redis[] = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
    let removed = 0;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, found] = await this.guard(() => node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000));
        cursor = next;
        for (let i = 0; i < found.length; i += 500) removed += await this.guard(() => node.unlink(...found.slice(i, i + 500)));
      } while (cursor !== '0');
    }
    return removed;
  }

  /** The operator's message now (one HGET; instances ask only when a tick shows it changed). */
  async getNotice(eventId: string): Promise<Notice | null> {
    const k = this.keys(eventId);
    return parseNotice(await this.guard(() => this.redis.hget(k.cfg, 'notice')));
  }

  async getEvent(eventId: string): Promise<EventConfig | null> {
    const k = this.keys(eventId);
    const v = await this.guard(() => this.redis.hmget(k.cfg, ...CONFIG_FIELDS));
    return v[4] ? toConfig(eventId, v) : null;
  }

  async stats(eventId: string): Promise<EventStats | null> {
    const k = this.keys(eventId);
    const res = await this.guard(() =>
      this.redis
        .multi()
        .hmget(k.cfg, ...CONFIG_FIELDS)
        .zcard(k.q)
        .zcard(k.ready)
        .hgetall(k.stats)
        .hget(k.bucket, 'tokens')
        .hgetall(k.eta)
        .get(k.lease)
        .exec(),
    );
    if (!res) return null;
    const v = res.map(([err, val]) => {
      if (err) throw err;
      return val;
    });
    const cfg = v[0] as (string | null)[];
    if (!cfg[4]) return null;
    const inLine = num(v[1]);
    const ready = num(v[2]);
    const counters: Record<string, number> = {};
    for (const [name, val] of Object.entries((v[3] as Record<string, string>) ?? {})) counters[name] = num(val);
    const eta: Record<string, number> = {};
    for (const [name, val] of Object.entries((v[5] as Record<string, string>) ?? {})) eta[name] = num(val);
    return {
      config: toConfig(eventId, cfg),
      inLine,
      ready,
      waiting: inLine - ready,
      counters,
      bucketTokens: num(v[4]),
      eta,
      tickerHolder: (v[6] as string | null) ?? null,
    };
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw storeError(err);
    }
  }
}

// ---------------------------------------------------------------------------
// Replies: one decoder per script, named fields out (the layouts are in each
// script's header; status codes in lua/status-codes.json)

type JoinReply =
  | { status: 'JOINED'; token: string; position: number; created: boolean }
  | { status: 'PREQUEUED'; token: string; receipt: string; created: boolean }
  | { status: 'DUPLICATE'; token: string; position: number; state: UserState | 'unknown' }
  | { status: 'EVENT_NOT_OPEN'; prequeueOpensMs: number; startsMs: number }
  | { status: 'EVENT_ENDED'; reason: string; endedMs: number }
  | { status: 'EVENT_NOT_FOUND' | 'EVENT_CLOSED' | 'PROOF_USED' };

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

/** join-batch: four fields per join, in the order the joins were sent; the i-th join's (read in place: this runs per join) */
function decodeJoin(r: readonly unknown[], i: number): JoinReply {
  const at = i * 4;
  const status = statusName('joinBatch', r[at]);
  switch (status) {
    case 'JOINED':
      return { status, token: str(r[at + 1]), position: num(r[at + 2]), created: num(r[at + 3]) === 1 };
    case 'PREQUEUED':
      return { status, token: str(r[at + 1]), receipt: str(r[at + 2]), created: num(r[at + 3]) === 1 };
    case 'DUPLICATE':
      return { status, token: str(r[at + 1]), position: num(r[at + 2]), state: stateNames[str(r[at + 3])] ?? 'unknown' };
    case 'EVENT_NOT_OPEN':
      return { status, prequeueOpensMs: num(r[at + 1]), startsMs: num(r[at + 2]) };
    case 'EVENT_ENDED':
      return { status, reason: str(r[at + 1]), endedMs: num(r[at + 2]) };
    case 'EVENT_NOT_FOUND':
    case 'EVENT_CLOSED':
    case 'PROOF_USED':
      return { status };
    default:
      throw unexpected('joinBatch', status);
  }
}

/** status: null for an unknown token */
function decodeStatus(r: unknown, token: string, eventId: string): StatusSnapshot | null {
  const status = statusOf('status', r);
  if (status === 'TOKEN_NOT_FOUND') return null;
  if (status !== 'FOUND') throw unexpected('status', status);
  const [, state, rank, readyCount, joinedMs, readyDeadlineMs, finishedMs, reason, eventState, nowMs, rate, rw, share, conf, spread, tokens, seq, xseq, grace, startsMs, endReason] =
    r as unknown[];
  const configured = num(rate);
  return {
    token,
    eventId,
    state: stateNames[str(state)] ?? 'expired',
    rank: num(rank, -1),
    readyCount: num(readyCount),
    joinedMs: num(joinedMs),
    readyDeadlineMs: num(readyDeadlineMs),
    finishedMs: num(finishedMs),
    reason: str(reason),
    eventState: str(eventState) as EventState,
    nowMs: num(nowMs),
    eta: {
      rate: configured,
      rw: num(rw, configured) || configured,
      share: num(share, 1) || 1,
      conf: num(conf, 0),
      spread: num(spread, 0.6) || 0.6,
      tokens: num(tokens, 0),
    },
    seq: num(seq),
    xseq: num(xseq),
    reconnectGraceSec: num(grace, 30),
    startsMs: num(startsMs),
    endReason: str(endReason),
  };
}

type EnterReply =
  | { status: 'ADMITTED'; readyAtMs: number; admittedMs: number; joinedMs: number; boundUser: string }
  | { status: 'ALREADY_ADMITTED'; admittedMs: number; joinedMs: number; boundUser: string }
  | { status: 'NOT_READY'; position: number }
  | { status: 'FINISHED'; state: string; reason: string }
  | { status: 'HOLDS_OTHER_PLACE'; otherToken: string }
  | { status: 'TOKEN_NOT_FOUND' | 'NOT_OWNER' | 'USER_REQUIRED' };

function decodeEnter(r: unknown): EnterReply {
  const status = statusOf('enter', r);
  const f = r as unknown[];
  switch (status) {
    case 'ADMITTED':
      return { status, readyAtMs: num(f[1]), admittedMs: num(f[2]), joinedMs: num(f[3]), boundUser: str(f[4]) };
    case 'ALREADY_ADMITTED':
      return { status, admittedMs: num(f[1]), joinedMs: num(f[2]), boundUser: str(f[3]) };
    case 'NOT_READY':
      return { status, position: num(f[1]) };
    case 'FINISHED':
      return { status, state: str(f[1]), reason: str(f[2]) };
    case 'HOLDS_OTHER_PLACE':
      return { status, otherToken: str(f[1]) };
    case 'TOKEN_NOT_FOUND':
    case 'NOT_OWNER':
    case 'USER_REQUIRED':
      return { status };
    default:
      throw unexpected('enter', status);
  }
}

function decodeTick(r: unknown): TickResult | 'not-holder' | 'no-config' {
  const status = statusOf('tick', r);
  if (status === 'NOT_LEASE_HOLDER') return 'not-holder';
  if (status === 'EVENT_NOT_FOUND') return 'no-config';
  if (status !== 'TICKED') throw unexpected('tick', status);
  const [, state, qlen, readyCount, tokens, promoted, expired, exits, eta, nowMs, xseq, grace, noticeMs, startsMs, transition] = r as unknown[];
  const e = (Array.isArray(eta) ? eta : []).map((x: unknown) => num(x));
  return {
    state: str(state) as EventState,
    qlen: num(qlen),
    readyCount: num(readyCount),
    tokens: num(tokens),
    promoted: records(promoted, 3, ([token, seq, deadline]) => [str(token), num(seq), num(deadline)] as const),
    expired: records(expired, 2, ([token, reason]) => [str(token), str(reason)] as const),
    exits: (Array.isArray(exits) ? exits : []).map((x: unknown) => {
      const [exitSeq, lineSeq, reason] = str(x).split(':');
      return [num(exitSeq), num(lineSeq), reason ?? ''] as const;
    }),
    eta: { rate: e[0] ?? 0, rw: e[1] ?? 0, r1: e[2] ?? 0, r5: e[3] ?? 0, r15: e[4] ?? 0, share: e[5] ?? 0, conf: e[6] ?? 0, spread: e[7] ?? 0 },
    nowMs: num(nowMs),
    xseq: num(xseq),
    reconnectGraceSec: num(grace, 30),
    noticeMs: num(noticeMs),
    startsMs: num(startsMs),
    transition: TRANSITIONS.has(str(transition)) ? (str(transition) as Transition) : '',
  };
}

const TRANSITIONS: ReadonlySet<string> = new Set<Transition>(['prequeue', 'drawn', 'ended']);
