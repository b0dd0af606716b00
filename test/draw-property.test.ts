import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { QueueStore, type JoinDefaults } from '../src/queue/store.js';
import { userKey } from '../src/redis/keys.js';
import { newWaitingToken } from '../src/queue/token.js';
import { commitmentOf, drawKey, receiptOf } from '../src/queue/draw.js';
import { AppError } from '../src/errors.js';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { redisClient, startRedis, uniquePrefix } from './helpers/harness.js';

/*
 * Model-based property of a scheduled event's life on the Lua scripts (real
 * redis-server, virtual clock): random sequences of joins (some with a user
 * id), leaves, polls, enters, clock advances (sometimes past the liveness
 * window, so pre-queue places lapse), ticks, and an operator end, across the
 * schedule's instants. After every step the event's state is read back and
 * checked against what the schedule and the history allow:
 *   1. the state follows the schedule on ticks only, each transition once and
 *      in order (scheduled -> prequeue -> open -> ended), never backwards;
 *   2. every join answer fits the state it met: refused while scheduled
 *      (EVENT_NOT_OPEN) and after the end (EVENT_ENDED), a receipt and no
 *      position in the pre-queue, a position after the draw;
 *   3. before the draw: the entrant list is exactly the receipts of the
 *      places in line, each under its key SHA-1(seed:receipt), which is also
 *      its score in the line; nobody is promoted; no answer shows a position
 *      (enter says NOT_READY with position 0, a duplicate join position 0);
 *   4. at and after the draw: the entrant list never changes again; the
 *      entrants still in line are ahead of every later arrival and in key
 *      order; positions from status are 1..n in line order;
 *   5. after the end: nobody is promoted, every place still waiting answers
 *      expired (ended), a ready user can still enter.
 */

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

const EV = 'sale';
const T0 = 1_800_000_000_000;
const OPENS = T0 + 2000;
const STARTS = T0 + 6000;
const LIVE_MS = 4000;
const DRAW_BASE = 2 ** 52;
const TICK = { leaseMs: 600_000, maxPromote: 1000, maxSweep: 1000, maxExits: 50_000 };

type Cmd =
  | { k: 'join'; user: number | null }
  | { k: 'leave'; i: number }
  | { k: 'poll'; i: number }
  | { k: 'enter'; i: number }
  | { k: 'advance'; ms: number }
  | { k: 'tick' }
  | { k: 'end' };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('join' as const), user: fc.option(fc.nat(3), { freq: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('leave' as const), i: fc.nat(15) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('poll' as const), i: fc.nat(15) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('enter' as const), i: fc.nat(15) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 0, max: 6000 })) }) },
  { weight: 4, arbitrary: fc.constant({ k: 'tick' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'end' as const }) },
);

const ORDER = ['scheduled', 'prequeue', 'open', 'ended'];
const seen: Record<string, number> = {};

async function run(seedHex: string, rate: number, cmds: Cmd[]): Promise<void> {
  const clock = { now: T0 };
  const store = new QueueStore(client, uniquePrefix(), () => clock.now);
  const k = store.keys(EV);
  const d: JoinDefaults = { autoCreate: false, rate, burst: rate, readyWindowSec: 30, reconnectGraceSec: 30, livenessMs: LIVE_MS, idempotencyTtlSec: 60, access: 'anonymous' };
  await store.putEvent(EV, { rate, burst: rate, readyWindowSec: 30, reconnectGraceSec: 30, access: 'anonymous', prequeueOpensMs: OPENS, startsMs: STARTS, draw: { seed: seedHex, commitment: commitmentOf(seedHex) } });
  await store.acquireLease(EV, 'ticker', 600_000);
  const tokens: string[] = [];
  let state = 'scheduled';
  let frozen: string[] | undefined;
  const transitions: string[] = [];

  for (const c of cmds) {
    const pick = (i: number): string | undefined => tokens[i % Math.max(1, tokens.length)];
    switch (c.k) {
      case 'join': {
        const tok = newWaitingToken(EV);
        try {
          const j = await store.join(EV, tok, c.user === null ? '' : `u${c.user}`, '', d);
          tokens.push(tok);
          if (state === 'prequeue') {
            expect(j.position).toBe(0);
            expect(j.receipt).toBe(receiptOf(tok));
            seen['join prequeue'] = 1;
          } else {
            expect(state).toBe('open');
            expect(j.position).toBeGreaterThan(0);
            expect(j.receipt).toBeUndefined();
            seen['join open'] = 1;
          }
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
          const expected = state === 'scheduled' ? 'EVENT_NOT_OPEN' : state === 'ended' ? 'EVENT_ENDED' : 'DUPLICATE_REQUEST';
          expect(err.code).toBe(expected);
          if (err.code === 'DUPLICATE_REQUEST' && state === 'prequeue') expect(err.details?.position).toBe(0);
          seen[`join ${err.code}`] = 1;
        }
        break;
      }
      case 'leave': {
        const t = pick(c.i);
        if (t) await store.leave(t).catch((e: unknown) => expect(e).toBeInstanceOf(AppError));
        break;
      }
      case 'poll': {
        const t = pick(c.i);
        if (!t) break;
        const s = await store.status(t, LIVE_MS);
        if (s?.state === 'prequeue') expect(['scheduled', 'prequeue']).toContain(state);
        if (s && state === 'ended' && (s.state === 'waiting' || s.state === 'prequeue')) throw new Error('a waiting place of an ended event answered as waiting');
        break;
      }
      case 'enter': {
        const t = pick(c.i);
        if (!t) break;
        try {
          await store.enter(t);
          expect(['open', 'ended']).toContain(state);
          seen[`enter ok ${state}`] = 1;
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
          if (err.code === 'NOT_READY' && state === 'prequeue') {
            expect(err.details?.position).toBe(0);
            seen['enter in prequeue'] = 1;
          }
        }
        break;
      }
      case 'advance':
        clock.now += c.ms;
        break;
      case 'tick': {
        const r = await store.tick(EV, 'ticker', TICK);
        if (typeof r === 'string') throw new Error(r);
        if (r.transition) transitions.push(r.transition);
        // 1. on ticks only, by the schedule
        const expected = state === 'scheduled' && clock.now >= STARTS ? 'open' : state === 'scheduled' && clock.now >= OPENS ? 'prequeue' : state === 'prequeue' && clock.now >= STARTS ? 'open' : state;
        expect(r.state).toBe(expected);
        if (state !== 'open' && r.state === 'open') {
          expect(r.transition).toBe('drawn');
          expect(r.promoted).toHaveLength(0);
          frozen = (await client.zrange(k.entrants, 0, -1)).sort();
          seen['drawn'] = 1;
        }
        if (r.state !== 'open') expect(r.promoted).toHaveLength(0);
        state = r.state;
        break;
      }
      case 'end': {
        await store.endEvent(EV, 'sold_out', undefined);
        if (state !== 'ended') transitions.push('ended');
        state = 'ended';
        seen['ended'] = 1;
        break;
      }
    }
    await check();
  }

  async function check(): Promise<void> {
    const cfg = await store.getEvent(EV);
    expect(cfg!.state).toBe(state);
    expect(ORDER.indexOf(state)).toBeGreaterThanOrEqual(0);
    // each transition at most once, in order
    expect(new Set(transitions).size).toBe(transitions.length);
    const line = await client.zrange(k.q, 0, -1, 'WITHSCORES');
    const members: [string, number][] = [];
    for (let i = 0; i < line.length; i += 2) members.push([line[i]!, Number(line[i + 1])]);
    const entrants = await client.zrange(k.entrants, 0, -1, 'WITHSCORES');
    const entrantKey = new Map<string, number>();
    for (let i = 0; i < entrants.length; i += 2) entrantKey.set(entrants[i]!, Number(entrants[i + 1]));
    if (state === 'scheduled' || state === 'prequeue') {
      // 3. the entrant list is exactly the receipts of the places in line, each under its key
      expect(entrantKey.size).toBe(members.length);
      for (const [tok, score] of members) {
        const rc = receiptOf(tok);
        expect(score).toBe(drawKey(seedHex, rc));
        expect(entrantKey.get(rc)).toBe(score);
        expect(await client.hget(userKey(k, tok), 's')).toBe('p');
      }
      expect(await client.zcard(k.ready)).toBe(0);
    } else if (frozen) {
      // 4. frozen at the draw; entrants ahead of later arrivals, in key order
      expect([...entrantKey.keys()].sort()).toEqual(frozen);
      let lastKey = -1;
      let sawLater = false;
      for (const [tok, score] of members) {
        if (score < DRAW_BASE) {
          expect(sawLater).toBe(false);
          expect(score).toBeGreaterThanOrEqual(lastKey);
          expect(entrantKey.get(receiptOf(tok))).toBe(score);
          lastKey = score;
        } else sawLater = true;
      }
      if (state === 'open') {
        for (const [i, [tok]] of members.entries()) expect((await store.status(tok, 0))!.rank).toBe(i);
      }
    }
    if (state === 'ended') {
      // 5. only ready users are still in line after the sweep; waiting ones answer ended
      for (const tok of tokens) {
        const s = await store.status(tok, 0);
        if (s && s.state !== 'ready' && s.state !== 'admitted' && s.state !== 'left') expect(s.state).toBe('expired');
      }
    }
  }
}

describe('scheduled event: random histories across the schedule (model-based)', () => {
  it('transitions once and on time, the pre-queue hides positions and keeps its entrant list, the draw orders by key, the end releases everyone waiting', async () => {
    for (let batch = 0; batch < 3 && (batch === 0 || ['drawn', 'join prequeue', 'join open', 'ended', 'enter in prequeue'].some((w) => !seen[w])); batch++) {
      await fc.assert(
        fc.asyncProperty(fc.hexaString({ minLength: 64, maxLength: 64 }), fc.constantFrom(1, 3, 50), fc.array(cmdArb, { maxLength: 50, size: 'max' }), (seed, rate, cmds) =>
          run(seed.toLowerCase(), rate, cmds),
        ),
        { numRuns: 60 },
      );
    }
    for (const w of ['drawn', 'join prequeue', 'join open', 'ended', 'join EVENT_NOT_OPEN', 'join EVENT_ENDED']) expect(seen[w] ?? 0, w).toBeGreaterThan(0);
  }, 300_000);
});
