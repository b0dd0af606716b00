import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { AIMD, decide, judgedSeconds, newControllerState } from '../src/queue/adaptive.js';
import { LATENCY_BOUNDS_MS, percentile, BackendHealth, type BackendWindow } from '../src/queue/backend-health.js';
import { QueueStore, type AdaptivePolicy, type JoinDefaults } from '../src/queue/store.js';
import { createLogger } from '../src/log.js';
import { redisClient, startRedis, uniquePrefix } from './helpers/harness.js';

// Adaptive outflow (src/queue/adaptive.ts) and admission by active sessions.
//
// The controller against a simulated backend, second by second (virtual
// time, deterministic): every admitted user makes one reservation call; the
// backend serves `capacity` calls per second at its base latency, and its
// latency grows with load as a single queue's does (base / (1 - load), and
// without bound past capacity: calls then time out as errors). Midway it
// degrades (capacity / 4: at the same load, latency x 4 and more), then
// fails 5 % of calls whatever the load, then recovers.
//
// The band it is held to (stated in docs/OPERATIONS.md): while the backend
// is degraded and the objective reachable, once settled (20 s after the
// change), the p95 the controller measures is within the objective in at
// least 80 % of its steps and never above 1.5x it; at least 90 % of all calls
// are served within the objective; and the mean rate is at least 80 % of the
// highest rate that meets the objective (it does not give away capacity).
// The rate never leaves [floor, ceiling]; while calls fail at 5 % (objective
// 1 %) it goes to the floor; after recovery it is back at the ceiling within
// 60 s. (This simulation measured, at the time of writing: 85 % of steps,
// 93 % of calls, p95 at most 1.33x, mean rate 91 % of the best, back at the
// ceiling 45 s after the recovery.)

const POLICY: AdaptivePolicy = { floor: 2, ceiling: 100, p95Ms: 300, errorShare: 0.01 };
const WINDOW_SEC = 10;
const INTERVAL_SEC = 3;

interface Phase {
  untilSec: number;
  capacity: number;
  baseMs: number;
  failShare: number;
}

/** latency of one second's calls at this load (ms); Infinity past capacity */
const latencyAt = (calls: number, p: Phase): number => (calls >= p.capacity ? Infinity : p.baseMs / (1 - calls / p.capacity));

function simulate(phases: Phase[], totalSec: number) {
  const secs: { calls: number; failures: number; buckets: number[]; phase: number }[] = [];
  const s = newControllerState();
  let rate = POLICY.ceiling;
  let admitted = 0;
  const steps: { t: number; rate: number; p95: number; errorShare: number; reason: string; phase: number }[] = [];
  for (let t = 0; t < totalSec; t++) {
    const pi = phases.findIndex((p) => t < p.untilSec);
    const p = phases[pi]!;
    // whole admissions: the fractions carry over to the next second
    const before = Math.floor(admitted);
    admitted += rate;
    const calls = Math.floor(admitted) - before;
    const lat = latencyAt(calls, p);
    const buckets = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    // past capacity calls time out (3 s deadline): failures in the slowest bucket
    const timedOut = lat === Infinity ? calls : 0;
    const failed = timedOut + (calls - timedOut) * p.failShare;
    let b = 0;
    while (b < LATENCY_BOUNDS_MS.length && Math.min(lat, 3000) > LATENCY_BOUNDS_MS[b]!) b++;
    buckets[b] = calls;
    secs.push({ calls, failures: failed, buckets, phase: pi });
    if (t > 0 && t % INTERVAL_SEC === 0) {
      const win = secs.slice(-judgedSeconds(s, t * 1000, INTERVAL_SEC * 1000, WINDOW_SEC));
      const n = win.reduce((a, x) => a + x.calls, 0);
      const f = win.reduce((a, x) => a + x.failures, 0);
      const merged = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
      for (const x of win) x.buckets.forEach((c, i) => (merged[i]! += c));
      const w: BackendWindow = { calls: n, failures: f, errorShare: n ? f / n : 0, p95Ms: percentile(merged, n, 0.95) };
      const d = decide(rate, POLICY, w, s, t * 1000);
      rate = d.rate;
      steps.push({ t, rate, p95: w.p95Ms, errorShare: w.errorShare, reason: d.reason, phase: pi });
    }
  }
  return { steps, secs };
}

describe('the adaptive controller against a simulated backend', () => {
  // healthy: 200 calls/s capacity at 40 ms; degraded: 50/s at 160 ms (x4)
  const healthy: Omit<Phase, 'untilSec'> = { capacity: 200, baseMs: 40, failShare: 0 };
  const phases: Phase[] = [
    { untilSec: 60, ...healthy },
    { untilSec: 240, capacity: 50, baseMs: 160, failShare: 0 },
    { untilSec: 330, capacity: 50, baseMs: 160, failShare: 0.05 },
    { untilSec: 500, ...healthy },
  ];
  const { steps, secs } = simulate(phases, 500);
  // the highest rate that meets the objective while degraded: 160 / (1 - r/50) <= 300 -> r <= 23.3
  const bestDegraded = 50 * (1 - 160 / POLICY.p95Ms);

  it('never leaves [floor, ceiling], and sits at the ceiling while the backend is healthy', () => {
    for (const s of steps) {
      expect(s.rate).toBeLessThanOrEqual(POLICY.ceiling);
      expect(s.rate).toBeGreaterThanOrEqual(POLICY.floor);
    }
    for (const s of steps.filter((x) => x.phase === 0)) expect(s.rate).toBe(POLICY.ceiling);
  });

  it('degraded (latency x4): p95 within the objective in >= 80 % of steps and >= 90 % of calls once settled, never above 1.5x, at >= 80 % of the best rate', () => {
    const settled = steps.filter((s) => s.phase === 1 && s.t >= 60 + 20);
    expect(settled.length).toBeGreaterThan(40);
    const trace = JSON.stringify(settled.map((s) => [s.t, s.rate, s.p95]));
    const within = settled.filter((s) => s.p95 <= POLICY.p95Ms).length / settled.length;
    expect(within, trace).toBeGreaterThanOrEqual(0.8);
    for (const s of settled) expect(s.p95, `t=${s.t}`).toBeLessThanOrEqual(1.5 * POLICY.p95Ms);
    const seconds = secs.slice(80, 240);
    const okBucket = LATENCY_BOUNDS_MS.indexOf(POLICY.p95Ms);
    const callsWithin = seconds.reduce((a, x) => a + x.buckets.slice(0, okBucket + 1).reduce((q, c) => q + c, 0), 0) / seconds.reduce((a, x) => a + x.calls, 0);
    expect(callsWithin, trace).toBeGreaterThanOrEqual(0.9);
    const mean = settled.reduce((a, s) => a + s.rate, 0) / settled.length;
    expect(mean).toBeGreaterThanOrEqual(bestDegraded * 0.8);
    expect(mean).toBeLessThanOrEqual(bestDegraded * 1.05);
  });

  it('failing (5 % errors against a 1 % objective): goes to the floor and stays there', () => {
    const failing = steps.filter((s) => s.phase === 2 && s.t >= 240 + 20);
    for (const s of failing) expect(s.rate).toBe(POLICY.floor);
  });

  it('recovers to the ceiling within 60 s after the backend recovers', () => {
    const back = steps.find((s) => s.phase === 3 && s.rate === POLICY.ceiling);
    expect(back).toBeDefined();
    expect(back!.t - 330).toBeLessThanOrEqual(60);
    for (const s of steps.filter((x) => x.phase === 3 && x.t > back!.t)) expect(s.rate).toBe(POLICY.ceiling);
  });

  it('decide: no judgement on too few calls; after a change only the calls since count (anti-windup); back to the last limit in a jump, then a creep', () => {
    const s = newControllerState();
    const bad: BackendWindow = { calls: 100, failures: 0, errorShare: 0, p95Ms: 1000 };
    // within the objective but not far inside it (roomy: half of it or less)
    const good: BackendWindow = { calls: 100, failures: 0, errorShare: 0, p95Ms: 200 };
    const roomy: BackendWindow = { calls: 100, failures: 0, errorShare: 0, p95Ms: 100 };
    expect(decide(50, POLICY, { calls: AIMD.minCalls - 1, failures: 4, errorShare: 1, p95Ms: 5000 }, s, 10_000)).toEqual({ rate: 50, reason: 'no_data' });
    expect(decide(50, POLICY, bad, s, 20_000)).toEqual({ rate: 35, reason: 'latency' });
    // the next step judges the 3 s since the cut, not the 10 s window
    expect(judgedSeconds(s, 23_000, 3000, 10)).toBe(3);
    expect(judgedSeconds(s, 60_000, 3000, 10)).toBe(10);
    expect(decide(35, POLICY, good, s, 23_000)).toEqual({ rate: 45, reason: 'healthy' });
    expect(decide(45, POLICY, good, s, 26_000)).toEqual({ rate: 45.5, reason: 'healthy' });
    expect(decide(45.5, POLICY, { ...bad, errorShare: 0.5, failures: 50 }, s, 29_000)).toEqual({ rate: 22.75, reason: 'errors' });
    // far inside the objective: x1.3 whatever the last cut said
    expect(decide(22.75, POLICY, roomy, s, 32_000)).toEqual({ rate: 29.575, reason: 'healthy' });
    expect(decide(500, POLICY, good, s, 80_000)).toEqual({ rate: 100, reason: 'at_ceiling' });
    expect(decide(1, POLICY, bad, s, 90_000)).toEqual({ rate: 2, reason: 'at_floor' });
  });
});

let redis: EmbeddedRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis();
  client = redisClient(redis.address);
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe('backend health shared through Redis', () => {
  it('two instances record their calls; the window sums them and finds the p95 bucket', async () => {
    const prefix = uniquePrefix();
    const log = createLogger('silent');
    const a = new BackendHealth(client, prefix, log);
    const b = new BackendHealth(client, prefix, log);
    for (let i = 0; i < 90; i++) a.record('reservation', 20, false);
    for (let i = 0; i < 10; i++) b.record('reservation', 800, i < 4);
    b.record('payment', 5, true);
    await a.flush();
    await b.flush();
    const w = await a.window('reservation', 5, Date.now() + 1000);
    expect(w).toEqual({ calls: 100, failures: 4, errorShare: 0.04, p95Ms: 1000 });
    expect((await b.window('payment', 5, Date.now() + 1000)).calls).toBe(1);
  });
});

describe('admission by active sessions (max_active_sessions)', () => {
  const T0 = 1_800_000_000_000;
  const d: JoinDefaults = { autoCreate: false, rate: 100, burst: 100, readyWindowSec: 30, reconnectGraceSec: 30, livenessMs: 3_600_000, idempotencyTtlSec: 60, access: 'anonymous' };
  const TICK = { leaseMs: 600_000, maxPromote: 1000, maxSweep: 1000, maxExits: 50_000 };

  it('never more than N ready + admitted; the next is admitted as one ends (used, expired, timed out, left)', async () => {
    const clock = { now: T0 };
    const store = new QueueStore(client, uniquePrefix(), () => clock.now);
    const ev = 'sessions';
    const N = 3;
    await store.putEvent(ev, { rate: 100, burst: 100, readyWindowSec: 30, reconnectGraceSec: 30, state: 'open', access: 'anonymous', maxActiveSessions: N });
    await store.acquireLease(ev, 'ticker', 600_000);
    const tokens: string[] = [];
    for (let i = 0; i < 20; i++) tokens.push((await store.join(ev, `${ev}.${createHash('sha256').update(`s${i}`).digest('base64url').slice(0, 22)}`, '', '', d)).token);
    const k = store.keys(ev);
    const holding = async (): Promise<number> => {
      const ready = await client.zcard(k.ready);
      let admitted = 0;
      for (const t of tokens) {
        const u = await client.hmget(`${k.base}u:${t}`, 's', 'ad');
        if (u[0] === 'a' && Number(u[1]) + 60_000 > clock.now && (await client.zscore(k.active, t)) !== null) admitted++;
      }
      return ready + admitted;
    };
    const tick = async () => {
      clock.now += 100;
      const r = await store.tick(ev, 'ticker', TICK);
      if (typeof r === 'string') throw new Error(r);
      const h = await holding();
      expect(h).toBeLessThanOrEqual(N);
      return r;
    };
    let r = await tick();
    expect(r.promoted.length).toBe(N);
    const ready = () => r.promoted.map(([t]) => t);
    // entering keeps the slot (admission valid 60 s here)
    const first = ready();
    for (const t of first) await store.enter(t, '', false, 60_000);
    r = await tick();
    expect(r.promoted).toHaveLength(0);
    // one admission used (redeemed / spent): the next user is let in
    expect(await store.endSession(ev, first[0]!)).toBe(true);
    r = await tick();
    expect(r.promoted).toHaveLength(1);
    // an admission that expires frees its slot
    clock.now += 61_000;
    r = await tick();
    // two admissions expired (the third slot is the user promoted above, its ready window passed too: 30 s)
    expect(r.promoted.length).toBeGreaterThanOrEqual(2);
    // leaving or timing out frees a ready slot
    const nowReady = await client.zrange(k.ready, 0, -1);
    await store.leave(nowReady[0]!);
    r = await tick();
    expect(r.promoted).toHaveLength(1);
    expect(await client.zcard(k.active)).toBeLessThanOrEqual(N);
    // random churn: never above N
    for (let i = 0; i < 40; i++) {
      const inLine = await client.zrange(k.ready, 0, -1);
      if (inLine.length && i % 3 === 0) await store.enter(inLine[0]!, '', false, 60_000).catch(() => undefined);
      if (i % 5 === 0) clock.now += 31_000;
      const active = await client.zrange(k.active, 0, -1);
      if (active.length && i % 4 === 0) await store.endSession(ev, active[0]!);
      await tick();
    }
  });
});
