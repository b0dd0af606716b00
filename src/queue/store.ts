import type { RedisClient } from '../redis/connect.js';
import { callStore, storeError } from '../redis/connect.js';
import type { ScriptKey } from '../generated/lua.js';
import { AppError, type ErrorCode } from '../errors.js';
import { eventKeys, userKey, type EventKeys } from './keys.js';
import { tokenEvent } from './token.js';

// Typed access to the queue's Lua scripts. The scripts are the only writers
// of queue state; this module turns their replies into values or AppErrors.

export type UserState = 'waiting' | 'ready' | 'admitted' | 'expired' | 'left';
export type EventState = 'open' | 'paused' | 'closed';
/** user: a verified user enters (the place becomes theirs); anonymous: the waiting token is the credential */
export type EventAccess = 'user' | 'anonymous';

const stateNames: Record<string, UserState> = { w: 'waiting', r: 'ready', a: 'admitted', x: 'expired', l: 'left' };

/** Lua status codes -> typed errors, for every script that can refuse. One table. */
const luaStatus: Partial<Record<ScriptKey, Record<number, [ErrorCode, string]>>> = {
  joinBatch: {
    1: ['DUPLICATE_REQUEST', 'already in line for this event'],
    2: ['EVENT_NOT_FOUND', 'no such event'],
    3: ['EVENT_CLOSED', 'this event is closed to new arrivals'],
  },
  enter: {
    2: ['TOKEN_NOT_FOUND', 'unknown waiting token'],
    3: ['NOT_READY', 'not your turn yet: keep waiting'],
    4: ['ALREADY_ADMITTED', 'this waiting token was already admitted'],
    5: ['TOKEN_EXPIRED', 'this place in line has expired'],
    7: ['FORBIDDEN', 'this place in line belongs to another user'],
    8: ['DUPLICATE_REQUEST', 'this user already holds another place in this event'],
    9: ['UNAUTHORIZED', 'a bearer token is required to enter this event'],
  },
  leave: {
    2: ['TOKEN_NOT_FOUND', 'unknown waiting token'],
    6: ['NOT_IN_LINE', 'this waiting token is no longer in line'],
  },
};

function refuse(script: ScriptKey, code: number, details?: Record<string, unknown>): AppError {
  const entry = luaStatus[script]?.[code];
  if (!entry) return new AppError('INTERNAL', `script ${script} returned unexpected status ${code}`);
  return new AppError(entry[0], entry[1], details);
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

const num = (v: unknown, d = 0): number => {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : d;
};

function pairs<T>(flat: unknown[], size: number, map: (chunk: unknown[]) => T): T[] {
  const out: T[] = [];
  for (let i = 0; i + size <= flat.length; i += size) out.push(map(flat.slice(i, i + size)));
  return out;
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
    b.items.forEach((it, i) => {
      const code = num(r[i * 4]);
      if (code === 0) it.resolve({ token: String(r[i * 4 + 1]), position: num(r[i * 4 + 2]), created: num(r[i * 4 + 3]) === 1 });
      else if (code === 1) it.reject(refuse('joinBatch', 1, { waiting_token: String(r[i * 4 + 1]), position: num(r[i * 4 + 2]), status: stateNames[String(r[i * 4 + 3])] ?? 'unknown' }));
      else it.reject(refuse('joinBatch', code));
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
    const r = (await this.run('status', [userKey(k, token), k.q, k.ready, k.live, k.cfg, k.eta, k.stats], k.base, [token, livenessMs, holder])) as unknown[];
    if (num(r[0]) === 0) return null;
    const rate = num(r[10]);
    return {
      token,
      eventId,
      state: stateNames[String(r[1])] ?? 'expired',
      rank: num(r[2], -1),
      readyCount: num(r[3]),
      joinedMs: num(r[4]),
      readyDeadlineMs: num(r[5]),
      finishedMs: num(r[6]),
      reason: String(r[7] ?? ''),
      eventState: String(r[8]) as EventState,
      nowMs: num(r[9]),
      eta: {
        rate,
        rw: num(r[11], rate) || rate,
        share: num(r[12], 1) || 1,
        conf: num(r[13], 0),
        spread: num(r[14], 0.6) || 0.6,
        tokens: num(r[15], 0),
      },
      seq: num(r[16]),
      xseq: num(r[17]),
      reconnectGraceSec: num(r[18], 30),
    };
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
    if (!eventId) throw refuse('enter', 2);
    const k = this.keys(eventId);
    const r = (await this.run('enter', this.exitKeys(k, token), k.base, [token, userId, authConfigured ? '1' : '0'])) as unknown[];
    const code = num(r[0]);
    if (code === 1) return { eventId, readyAtMs: num(r[1]), admittedMs: num(r[2]), joinedMs: num(r[3]), boundUser: String(r[4] ?? ''), again: false };
    if (code === 4) return { eventId, readyAtMs: 0, admittedMs: num(r[1]), joinedMs: num(r[2]), boundUser: String(r[3] ?? ''), again: true };
    if (code === 3) throw refuse('enter', 3, { position: num(r[1]) });
    if (code === 5) throw refuse('enter', 5, { reason: String(r[2] ?? '') });
    if (code === 8) throw refuse('enter', 8, { waiting_token: String(r[1]) });
    if (code === 9) throw new AppError('UNAUTHORIZED', 'a bearer token is required to enter this event', { reason: 'missing' }, { 'WWW-Authenticate': 'Bearer' });
    throw refuse('enter', code);
  }

  async leave(token: string): Promise<void> {
    const eventId = tokenEvent(token);
    if (!eventId) throw refuse('leave', 2);
    const k = this.keys(eventId);
    const r = (await this.run('leave', this.exitKeys(k, token), k.base, [token])) as unknown[];
    const code = num(r[0]);
    if (code === 1) return;
    if (code === 6) throw refuse('leave', 6, { status: stateNames[String(r[1])] ?? 'unknown' });
    throw refuse('leave', code);
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
    const r = (await this.run('tick', [k.cfg, k.bucket, k.q, k.ready, k.live, k.stats, k.hist, k.exits, k.fin, k.eta, k.lease], k.base, [
      instanceId,
      o.leaseMs,
      o.maxPromote,
      o.maxSweep,
      o.maxExits,
      o.gapMs ?? 10_000,
      o.quietMs ?? 60_000,
    ])) as unknown[];
    const code = num(r[0]);
    if (code === -1) return 'not-holder';
    if (code === -2) return 'no-config';
    const e = (r[8] as unknown[]).map((x) => num(x));
    return {
      state: String(r[1]) as EventState,
      qlen: num(r[2]),
      readyCount: num(r[3]),
      tokens: num(r[4]),
      promoted: pairs(r[5] as unknown[], 3, (c) => [String(c[0]), num(c[1]), num(c[2])] as const),
      expired: pairs(r[6] as unknown[], 2, (c) => [String(c[0]), String(c[1])] as const),
      exits: (r[7] as unknown[]).map((s) => {
        const [x, q, why] = String(s).split(':');
        return [num(x), num(q), why ?? ''] as const;
      }),
      eta: { rate: e[0]!, rw: e[1]!, r1: e[2]!, r5: e[3]!, r15: e[4]!, share: e[5]!, conf: e[6]!, spread: e[7]! },
      nowMs: num(r[9]),
      xseq: num(r[10]),
      reconnectGraceSec: num(r[11], 30),
      noticeMs: num(r[12]),
    };
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
