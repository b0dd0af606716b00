import { pack, unpack } from 'msgpackr';
import type { RedisClient } from '../redis/connect.js';
import { EVENT_STATES, type EventState, type TickResult } from './store.js';

// What a tick changed, published on the event's channel so every instance can
// update the users attached to it without asking Redis per user. Users are
// named by their line sequence number, never by token (tokens are bearer
// credentials and stay out of pub/sub).

export const TICK_MESSAGE_VERSION = 1;

export interface Promotion {
  readonly seq: number;
  /** Redis time, ms */
  readonly readyDeadlineMs: number;
}

export interface Exit {
  /** the event's exit counter: consecutive, so a gap shows a lost message */
  readonly exitSeq: number;
  /** the line sequence number of the user who left */
  readonly lineSeq: number;
  /** admitted, left, ready_timeout, liveness, ... */
  readonly reason: string;
}

export type TickEta = TickResult['eta'] & { readonly tokens: number };

/** What one tick changed, as every instance reads it. */
export interface Tick {
  readonly eventId: string;
  /** Redis time of the tick, ms */
  readonly redisTimeMs: number;
  readonly state: EventState;
  /** people in line (ready + waiting) */
  readonly inLine: number;
  /** ready users (the head of the line) */
  readonly readyCount: number;
  readonly promoted: readonly Promotion[];
  /** exits since the previous tick, in exit order */
  readonly exits: readonly Exit[];
  /** exit sequence number of the last exit that happened before this tick */
  readonly lastExitSeq: number;
  readonly reconnectGraceSec: number;
  /** version of the operator's message (notice_ms, 0 = never set); undefined from instances older than script protocol 3 */
  readonly noticeVersion: number | undefined;
  /** the event's scheduled start (Redis ms, 0 = none); undefined from instances older than script protocol 5 */
  readonly startsMs?: number;
  readonly eta: TickEta;
}

/**
 * The wire form (msgpack), short names because every instance reads every
 * tick. Fields are only added within a version; a reader drops messages of
 * another version rather than guess.
 */
export interface TickWire {
  readonly v: typeof TICK_MESSAGE_VERSION;
  readonly e: string;
  readonly t: number;
  readonly s: EventState;
  readonly q: number;
  readonly r: number;
  /** [seq, readyDeadlineMs] */
  readonly p: ReadonlyArray<readonly [number, number]>;
  /** [exitSeq, lineSeq, reason] */
  readonly o: ReadonlyArray<readonly [number, number, string]>;
  readonly xs: number;
  readonly g: number;
  readonly n?: number;
  readonly sa?: number;
  readonly eta: TickEta;
}

export function tickOf(eventId: string, r: TickResult): Tick {
  return {
    eventId,
    redisTimeMs: r.nowMs,
    state: r.state,
    inLine: r.qlen,
    readyCount: r.readyCount,
    promoted: r.promoted.map(([, seq, readyDeadlineMs]) => ({ seq, readyDeadlineMs })),
    exits: r.exits.map(([exitSeq, lineSeq, reason]) => ({ exitSeq, lineSeq, reason })),
    lastExitSeq: r.xseq,
    reconnectGraceSec: r.reconnectGraceSec,
    noticeVersion: r.noticeMs,
    startsMs: r.startsMs,
    eta: { ...r.eta, tokens: r.tokens },
  };
}

export function encodeTick(t: Tick): Buffer {
  const wire: TickWire = {
    v: TICK_MESSAGE_VERSION,
    e: t.eventId,
    t: t.redisTimeMs,
    s: t.state,
    q: t.inLine,
    r: t.readyCount,
    p: t.promoted.map((p) => [p.seq, p.readyDeadlineMs] as const),
    o: t.exits.map((x) => [x.exitSeq, x.lineSeq, x.reason] as const),
    xs: t.lastExitSeq,
    g: t.reconnectGraceSec,
    ...(t.noticeVersion === undefined ? {} : { n: t.noticeVersion }),
    ...(t.startsMs ? { sa: t.startsMs } : {}),
    eta: t.eta,
  };
  return pack(wire);
}

export class BadTickMessage extends Error {
  override readonly name = 'BadTickMessage';
}

const STATES: ReadonlySet<string> = new Set<EventState>(EVENT_STATES);
const ETA_FIELDS = ['rate', 'rw', 'r1', 'r5', 'r15', 'share', 'conf', 'spread', 'tokens'] as const;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** A tick message from the channel, checked field by field; throws BadTickMessage naming what is wrong. */
export function decodeTick(data: Uint8Array): Tick {
  let m: unknown;
  try {
    m = unpack(data);
  } catch (err) {
    throw new BadTickMessage(`not msgpack: ${(err as Error).message}`);
  }
  const bad = (what: string): never => {
    throw new BadTickMessage(`tick message: ${what}`);
  };
  if (typeof m !== 'object' || m === null) return bad('not a map');
  const w = m as Record<string, unknown>;
  if (w.v !== TICK_MESSAGE_VERSION) return bad(`version ${String(w.v)}, this instance reads ${TICK_MESSAGE_VERSION}`);
  if (typeof w.e !== 'string') bad('e (event id)');
  if (!isNum(w.t)) bad('t (time)');
  if (typeof w.s !== 'string' || !STATES.has(w.s)) bad('s (state)');
  for (const f of ['q', 'r', 'xs', 'g'] as const) if (!isNum(w[f])) bad(f);
  if (w.n !== undefined && !isNum(w.n)) bad('n (notice version)');
  if (w.sa !== undefined && !isNum(w.sa)) bad('sa (starts at)');
  if (!Array.isArray(w.p)) bad('p (promoted)');
  if (!Array.isArray(w.o)) bad('o (exits)');
  const promoted: Promotion[] = [];
  for (const x of w.p as unknown[]) {
    if (!Array.isArray(x) || !isNum(x[0]) || !isNum(x[1])) bad('p entry');
    const [seq, readyDeadlineMs] = x as [number, number];
    promoted.push({ seq, readyDeadlineMs });
  }
  const exits: Exit[] = [];
  for (const x of w.o as unknown[]) {
    if (!Array.isArray(x) || !isNum(x[0]) || !isNum(x[1]) || typeof x[2] !== 'string') bad('o entry');
    const [exitSeq, lineSeq, reason] = x as [number, number, string];
    exits.push({ exitSeq, lineSeq, reason });
  }
  const eta = w.eta as Record<string, unknown> | undefined;
  if (typeof eta !== 'object' || eta === null) return bad('eta');
  for (const f of ETA_FIELDS) if (!isNum(eta[f])) bad(`eta.${f}`);
  return {
    eventId: w.e as string,
    redisTimeMs: w.t as number,
    state: w.s as EventState,
    inLine: w.q as number,
    readyCount: w.r as number,
    promoted,
    exits,
    lastExitSeq: w.xs as number,
    reconnectGraceSec: w.g as number,
    noticeVersion: w.n as number | undefined,
    startsMs: (w.sa as number | undefined) ?? 0,
    eta: eta as unknown as TickEta,
  };
}

export interface Broker {
  publish(channel: string, tick: Tick): Promise<void>;
  /** `onTick` gets checked ticks only; a message that does not decode goes to the broker's error handler */
  subscribe(channel: string, onTick: (tick: Tick) => void): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Redis pub/sub; on Redis Cluster sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis
 * 7), so an event's tick messages stay inside its shard. The subscriber needs
 * its own connection.
 */
export class RedisBroker implements Broker {
  private readonly handlers = new Map<string, (tick: Tick) => void>();
  private subscriber: RedisClient | undefined;

  constructor(
    private readonly pub: RedisClient,
    private readonly makeSubscriber: () => RedisClient,
    private readonly sharded = false,
    private readonly onError: (err: Error) => void = () => undefined,
    /** a message on a tick channel that does not decode (another version in a rolling deploy, or not ours) */
    private readonly onBadMessage: (err: Error) => void = onError,
  ) {}

  async publish(channel: string, tick: Tick): Promise<void> {
    if (this.sharded) await this.pub.spublish(channel, encodeTick(tick));
    else await this.pub.publish(channel, encodeTick(tick));
  }

  async subscribe(channel: string, onTick: (tick: Tick) => void): Promise<void> {
    if (!this.subscriber) {
      this.subscriber = this.makeSubscriber();
      // a subscriber's errors (reconnects, refused commands) are reported, never an unhandled 'error' event
      this.subscriber.on('error', (err: Error) => this.onError(err));
      const deliver = (ch: Buffer, data: Buffer): void => {
        const h = this.handlers.get(ch.toString());
        if (!h) return;
        let tick: Tick;
        try {
          tick = decodeTick(data);
        } catch (err) {
          this.onBadMessage(err as Error);
          return;
        }
        h(tick);
      };
      this.subscriber.on(this.sharded ? 'smessageBuffer' : 'messageBuffer', deliver);
    }
    this.handlers.set(channel, onTick);
    if (this.sharded) await this.subscriber.ssubscribe(channel);
    else await this.subscriber.subscribe(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.handlers.delete(channel);
    if (this.sharded) await this.subscriber?.sunsubscribe(channel);
    else await this.subscriber?.unsubscribe(channel);
  }

  async close(): Promise<void> {
    this.handlers.clear();
    this.subscriber?.disconnect();
    this.subscriber = undefined;
  }
}
