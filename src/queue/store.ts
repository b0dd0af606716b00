import type { RedisClient } from '../redis/connect.js';
import { callStore, storeError } from '../redis/connect.js';
import type { ScriptKey, ScriptStatusName } from '../generated/lua.js';
import { AppError, type ErrorCode } from '../errors.js';
import { num, records, statusName, statusOf, str, unexpected } from '../redis/replies.js';
import { eventKeys, userKey, type EventKeys } from '../redis/keys.js';
import { tokenEvent } from './token.js';

// Typed access to the queue's Lua scripts. The scripts are the only writers
// of queue state; this module turns their replies into values or AppErrors.

export type UserState = 'waiting' | 'ready' | 'admitted' | 'expired' | 'left';
export type EventState = 'open' | 'paused' | 'closed';
/** user: a verified user enters (the place becomes theirs); anonymous: the waiting token is the credential */
export type EventAccess = 'user' | 'anonymous';

const stateNames: Record<string, UserState> = { w: 'waiting', r: 'ready', a: 'admitted', x: 'expired', l: 'left' };

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
}

/** [token, who claims, window ms]: see QueueStore.touch */
export type LivenessClaim = readonly [token: string, kind: 'hold' | 'poll', windowMs: number];

export interface JoinResult {
  readonly token: string;
  readonly position: number;
  readonly created: boolean;
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
  };
}

/** at most this many joins per script call (bounds the time one call holds Redis) */
const JOIN_BATCH_MAX = 256;

interface JoinBatch {
  eventId: string;
  d: JoinDefaults;
  items: { token: string; userId: string; idempotencyKey: string; resolve: (r: JoinResult) => void; reject: (e: unknown) => void }[];
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
  join(eventId: string, token: string, userId: string, idempotencyKey: string, d: JoinDefaults): Promise<JoinResult> {
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
      b.items.push({ token, userId, idempotencyKey, resolve, reject });
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
    const args: (string | number)[] = [d.livenessMs, d.autoCreate ? '1' : '0', d.rate, d.burst, d.readyWindowSec, d.reconnectGraceSec, d.idempotencyTtlSec, d.access];
    for (const it of b.items) args.push(it.token, it.userId, it.idempotencyKey);
    let r: unknown[];
    try {
      r = (await this.run('joinBatch', [k.cfg, k.seq, k.q, k.live, k.stats, k.bucket, k.hist], k.base, args)) as unknown[];
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
      else if (j.status === 'DUPLICATE') it.reject(refuse('DUPLICATE', { waiting_token: j.token, position: j.position, status: j.state }));
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
  async enter(token: string, userId = '', authConfigured = false): Promise<{ eventId: string; readyAtMs: number; admittedMs: number; joinedMs: number; boundUser: string; again: boolean }> {
    const eventId = tokenEvent(token);
    if (!eventId) throw refuse('TOKEN_NOT_FOUND');
    const k = this.keys(eventId);
    const e = decodeEnter(await this.run('enter', this.exitKeys(k, token), k.base, [token, userId, authConfigured ? '1' : '0']));
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
    const r = await this.run('leave', this.exitKeys(k, token), k.base, [token]);
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
    const r = await this.run('tick', [k.cfg, k.bucket, k.q, k.ready, k.live, k.stats, k.hist, k.exits, k.fin, k.eta, k.lease], k.base, [
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
    const r = (await this.run('eventPut', [k.cfg, k.bucket, k.hist], k.base, [
      s(p.rate),
      s(p.burst),
      s(p.readyWindowSec),
      s(p.reconnectGraceSec),
      s(p.state),
      s(p.access),
      p.targetUrl === undefined ? '' : p.targetUrl === '' ? 'none' : p.targetUrl,
      p.notice === undefined ? '' : p.notice === null ? 'none' : JSON.stringify(p.notice),
    ])) as unknown[];
    // {created(0|1), then the configuration's fields in toConfig's order}: a data reply, no status
    return { ...toConfig(eventId, r.slice(1)), created: num(r[0]) === 1 };
  }

  /** The operator's message now (one HGET; instances ask only when a tick shows it changed). */
  async getNotice(eventId: string): Promise<Notice | null> {
    const k = this.keys(eventId);
    return parseNotice(await this.guard(() => this.redis.hget(k.cfg, 'notice')));
  }

  async getEvent(eventId: string): Promise<EventConfig | null> {
    const k = this.keys(eventId);
    const v = await this.guard(() =>
      this.redis.hmget(k.cfg, 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_ms', 'updated_ms', 'access', 'target_url', 'notice', 'notice_ms'),
    );
    return v[4] ? toConfig(eventId, v) : null;
  }

  async stats(eventId: string): Promise<EventStats | null> {
    const k = this.keys(eventId);
    const res = await this.guard(() =>
      this.redis
        .multi()
        .hmget(k.cfg, 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_ms', 'updated_ms', 'access', 'target_url', 'notice', 'notice_ms')
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
  | { status: 'DUPLICATE'; token: string; position: number; state: UserState | 'unknown' }
  | { status: 'EVENT_NOT_FOUND' | 'EVENT_CLOSED' };

/** join-batch: four fields per join, in the order the joins were sent; the i-th join's (read in place: this runs per join) */
function decodeJoin(r: readonly unknown[], i: number): JoinReply {
  const at = i * 4;
  const status = statusName('joinBatch', r[at]);
  switch (status) {
    case 'JOINED':
      return { status, token: str(r[at + 1]), position: num(r[at + 2]), created: num(r[at + 3]) === 1 };
    case 'DUPLICATE':
      return { status, token: str(r[at + 1]), position: num(r[at + 2]), state: stateNames[str(r[at + 3])] ?? 'unknown' };
    case 'EVENT_NOT_FOUND':
    case 'EVENT_CLOSED':
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
  const [, state, rank, readyCount, joinedMs, readyDeadlineMs, finishedMs, reason, eventState, nowMs, rate, rw, share, conf, spread, tokens, seq, xseq, grace] = r as unknown[];
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
  const [, state, qlen, readyCount, tokens, promoted, expired, exits, eta, nowMs, xseq, grace, noticeMs] = r as unknown[];
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
  };
}
