import type { RedisClient } from '../redis/connect.js';
import type { Logger } from '../log.js';

// How the backends are doing, as every gateway instance sees them, shared
// through Redis so the one instance that runs an event's adaptive controller
// judges all traffic, not its own share. Each instance counts its calls per
// service and second (count, failures, a latency histogram of fixed
// buckets) and adds them to Redis once a second, one hash per service and
// second (hash tag per service: one slot); the controller reads the last
// window's hashes in one pipeline. Costs one HINCRBY batch per second per
// instance, nothing per call but an array increment.

/** upper bounds of the latency buckets, ms; one more bucket for anything slower */
export const LATENCY_BOUNDS_MS = [5, 10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10_000];

export interface BackendWindow {
  readonly calls: number;
  readonly failures: number;
  /** failures / calls (0 without calls) */
  readonly errorShare: number;
  /** the upper bound of the bucket holding the 95th percentile (ms), 0 without calls */
  readonly p95Ms: number;
}

interface Tally {
  calls: number;
  failures: number;
  buckets: number[];
}

const KEEP_SEC = 300;

export class BackendHealth {
  private pending = new Map<string, Tally>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  private key(service: string, sec: number): string {
    return `${this.prefix}{bh:${service}}:${sec}`;
  }

  /** One call's outcome (the gRPC client calls this for every call). */
  record(service: string, ms: number, failed: boolean): void {
    const k = `${service}\u0000${Math.floor(Date.now() / 1000)}`;
    let t = this.pending.get(k);
    if (!t) this.pending.set(k, (t = { calls: 0, failures: 0, buckets: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0) }));
    t.calls++;
    if (failed) t.failures++;
    let i = 0;
    while (i < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[i]!) i++;
    t.buckets[i]!++;
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      const p = this.redis.pipeline();
      for (const [k, t] of batch) {
        const [service, sec] = k.split('\u0000') as [string, string];
        const key = this.key(service, Number(sec));
        p.hincrby(key, 'n', t.calls);
        if (t.failures) p.hincrby(key, 'f', t.failures);
        t.buckets.forEach((c, i) => c && p.hincrby(key, `b${i}`, c));
        p.expire(key, KEEP_SEC);
      }
      await p.exec();
    } catch (err) {
      // lost for the window: the controller sees fewer calls, never wrong ones
      this.log.warn({ err }, 'backend health: could not record a second of calls');
    }
  }

  /** The last `seconds` whole seconds of calls to `service`, all instances. */
  async window(service: string, seconds: number, nowMs = Date.now()): Promise<BackendWindow> {
    const last = Math.floor(nowMs / 1000) - 1;
    const p = this.redis.pipeline();
    for (let s = last - seconds + 1; s <= last; s++) p.hgetall(this.key(service, s));
    const res = (await p.exec()) ?? [];
    let calls = 0;
    let failures = 0;
    const buckets = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    for (const [err, v] of res) {
      if (err) throw err;
      const h = v as Record<string, string>;
      calls += Number(h.n ?? 0);
      failures += Number(h.f ?? 0);
      for (let i = 0; i < buckets.length; i++) buckets[i]! += Number(h[`b${i}`] ?? 0);
    }
    return { calls, failures, errorShare: calls ? failures / calls : 0, p95Ms: percentile(buckets, calls, 0.95) };
  }
}

/** The upper bound of the bucket that holds quantile q (the last bucket: twice the last bound). */
export function percentile(buckets: readonly number[], total: number, q: number): number {
  if (total <= 0) return 0;
  const rank = Math.min(total, Math.ceil(q * total));
  let acc = 0;
  for (let i = 0; i < buckets.length; i++) {
    acc += buckets[i]!;
    if (acc >= rank) return LATENCY_BOUNDS_MS[i] ?? LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]! * 2;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]! * 2;
}
