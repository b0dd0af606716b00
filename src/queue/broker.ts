import { pack, unpack } from 'msgpackr';
import type { RedisClient } from '../redis/connect.js';
import type { TickResult } from './store.js';

// What a tick changed, published on the event's channel so every instance can
// update the users attached to it without asking Redis per user. Users are
// named by their line sequence number, never by token (tokens are bearer
// credentials and stay out of pub/sub).

export const TICK_MESSAGE_VERSION = 1;

export interface TickMessage {
  readonly v: typeof TICK_MESSAGE_VERSION;
  /** event id */
  readonly e: string;
  /** Redis time of the tick, ms */
  readonly t: number;
  readonly s: TickResult['state'];
  /** people in line (ready + waiting) */
  readonly q: number;
  /** ready users (the head of the line) */
  readonly r: number;
  /** promoted: [seq, readyDeadlineMs] */
  readonly p: ReadonlyArray<readonly [number, number]>;
  /** exits since the previous tick: [exitSeq, lineSeq, reason] */
  readonly o: ReadonlyArray<readonly [number, number, string]>;
  /** exit sequence number of the last exit that happened before this tick */
  readonly xs: number;
  /** the event's reconnect grace, seconds */
  readonly g: number;
  /** version of the operator's message (notice_ms, 0 = never set); absent from older instances */
  readonly n?: number;
  readonly eta: TickResult['eta'] & { tokens: number };
}

export function toMessage(eventId: string, r: TickResult): TickMessage {
  return {
    v: TICK_MESSAGE_VERSION,
    e: eventId,
    t: r.nowMs,
    s: r.state,
    q: r.qlen,
    r: r.readyCount,
    p: r.promoted.map(([, seq, dl]) => [seq, dl] as const),
    o: r.exits,
    xs: r.xseq,
    g: r.reconnectGraceSec,
    n: r.noticeMs,
    eta: { ...r.eta, tokens: r.tokens },
  };
}

export interface Broker {
  publish(channel: string, msg: TickMessage): Promise<void>;
  subscribe(channel: string, onMessage: (msg: TickMessage) => void): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Redis pub/sub; on Redis Cluster sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis
 * 7), so an event's tick messages stay inside its shard. The subscriber needs
 * its own connection.
 */
export class RedisBroker implements Broker {
  private readonly handlers = new Map<string, (msg: TickMessage) => void>();
  private subscriber: RedisClient | undefined;

  constructor(
    private readonly pub: RedisClient,
    private readonly makeSubscriber: () => RedisClient,
    private readonly sharded = false,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  async publish(channel: string, msg: TickMessage): Promise<void> {
    if (this.sharded) await this.pub.spublish(channel, pack(msg));
    else await this.pub.publish(channel, pack(msg));
  }

  async subscribe(channel: string, onMessage: (msg: TickMessage) => void): Promise<void> {
    if (!this.subscriber) {
      this.subscriber = this.makeSubscriber();
      // a subscriber's errors (reconnects, refused commands) are reported, never an unhandled 'error' event
      this.subscriber.on('error', (err: Error) => this.onError(err));
      const deliver = (ch: Buffer, data: Buffer): void => {
        const h = this.handlers.get(ch.toString());
        if (h) h(unpack(data) as TickMessage);
      };
      this.subscriber.on(this.sharded ? 'smessageBuffer' : 'messageBuffer', deliver);
    }
    this.handlers.set(channel, onMessage);
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
