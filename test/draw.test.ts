import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { QueueStore, type JoinDefaults } from '../src/queue/store.js';
import { commitmentOf, drawKey, receiptOf } from '../src/queue/draw.js';
import { verifyDraw, type DrawPublished, type Entrant } from '../src/tools/verify-draw.js';
import { AppError } from '../src/errors.js';
import { redisClient, startRedis, uniquePrefix } from './helpers/harness.js';

// The schedule, the pre-queue draw and the end, on the Lua scripts with a
// virtual clock (status, join, tick as the gateway calls them). The gateway
// journey over HTTP and sockets is in draw-gateway.test.ts.

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

const T0 = 1_800_000_000_000;
const defaults: JoinDefaults = { autoCreate: false, rate: 5, burst: 5, readyWindowSec: 60, reconnectGraceSec: 30, livenessMs: 3_600_000, idempotencyTtlSec: 60, access: 'anonymous' };
const TICK = { leaseMs: 600_000, maxPromote: 1000, maxSweep: 1000, maxExits: 50_000 };

/** A token as the gateway makes them, but reproducible: the chi-square test below is then a fixed computation, not a roll of dice. */
const tokenFor = (eventId: string, label: string): string => `${eventId}.${createHash('sha256').update(label).digest('base64url').slice(0, 22)}`;

function setup(): { store: QueueStore; clock: { now: number } } {
  const clock = { now: T0 };
  return { store: new QueueStore(client, uniquePrefix(), () => clock.now), clock };
}

async function scheduled(store: QueueStore, eventId: string, seed: string, opensMs: number, startsMs: number, extra: { endsMs?: number; rate?: number } = {}): Promise<void> {
  await store.putEvent(eventId, {
    rate: extra.rate ?? 1000,
    burst: extra.rate ?? 1000,
    readyWindowSec: 60,
    reconnectGraceSec: 30,
    access: 'anonymous',
    prequeueOpensMs: opensMs,
    startsMs,
    ...(extra.endsMs ? { endsMs: extra.endsMs } : {}),
    draw: { seed, commitment: commitmentOf(seed) },
  });
  expect(await store.acquireLease(eventId, 'ticker', 600_000)).toBe(true);
}

const tick = async (store: QueueStore, eventId: string) => {
  const r = await store.tick(eventId, 'ticker', TICK);
  if (typeof r === 'string') throw new Error(`tick: ${r}`);
  return r;
};

const refusal = async (p: Promise<unknown>): Promise<AppError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
};

describe('the pre-queue draw (lua/includes/draw.lua = src/queue/draw.ts)', () => {
  it('scheduled -> prequeue -> open on Redis time, each once; joins refused before, accepted without a position during, FIFO after; positions are the draw and the verifier reproduces them', async () => {
    const { store, clock } = setup();
    const ev = 'sched';
    const seed = 'a'.repeat(64);
    await scheduled(store, ev, seed, T0 + 10_000, T0 + 20_000);
    expect((await store.getEvent(ev))!.state).toBe('scheduled');

    // scheduled: refused with the opening time
    const early = await refusal(store.join(ev, tokenFor(ev, 'early'), '', '', defaults));
    expect(early.code).toBe('EVENT_NOT_OPEN');
    expect(early.details).toMatchObject({ opens_at: new Date(T0 + 10_000).toISOString(), starts_at: new Date(T0 + 20_000).toISOString() });
    expect(Number(early.headers?.['Retry-After'])).toBeGreaterThanOrEqual(1);
    expect((await tick(store, ev)).transition).toBe('');

    clock.now = T0 + 10_000;
    const opened = await tick(store, ev);
    expect(opened.transition).toBe('prequeue');
    expect(opened.state).toBe('prequeue');
    expect((await tick(store, ev)).transition).toBe('');

    // prequeue: accepted, a receipt, no position; nobody admitted however many tokens the bucket has
    const tokens: string[] = [];
    for (let i = 0; i < 40; i++) {
      clock.now += 50;
      const tok = tokenFor(ev, `u${i}`);
      const j = await store.join(ev, tok, '', '', defaults);
      expect(j).toMatchObject({ token: tok, position: 0, receipt: receiptOf(tok) });
      tokens.push(tok);
    }
    // one leaves before the draw: not an entrant any more
    await store.leave(tokens[7]!);
    const entrantTokens = tokens.filter((_, i) => i !== 7);
    const pre = await tick(store, ev);
    expect(pre.promoted).toHaveLength(0);
    const s0 = (await store.status(entrantTokens[0]!, 0))!;
    expect(s0.state).toBe('prequeue');
    expect(s0.startsMs).toBe(T0 + 20_000);
    const info0 = (await store.drawInfo(ev))!;
    expect(info0).toMatchObject({ commitment: commitmentOf(seed), seed: '', drawnMs: 0, entrants: 39 });

    // the start: one tick draws, everyone has a place in the order the seed gives
    clock.now = T0 + 20_000;
    const drawn = await tick(store, ev);
    expect(drawn.transition).toBe('drawn');
    expect(drawn.state).toBe('open');
    expect((await tick(store, ev)).transition).toBe('');
    const expectedOrder = [...entrantTokens].sort((a, b) => drawKey(seed, receiptOf(a)) - drawKey(seed, receiptOf(b)));
    const given = new Map<string, number>();
    for (const tok of entrantTokens) {
      const s = (await store.status(tok, 0))!;
      expect(['waiting', 'ready']).toContain(s.state);
      given.set(tok, s.rank + 1);
    }
    expect([...given.values()].sort((a, b) => a - b)).toEqual(entrantTokens.map((_, i) => i + 1));
    expect(entrantTokens.map((t) => given.get(t))).toEqual(entrantTokens.map((t) => expectedOrder.indexOf(t) + 1));
    expect(await store.status(tokens[7]!, 0)).toMatchObject({ state: 'left' });

    // later arrivals queue FIFO behind every entrant
    const late = await store.join(ev, tokenFor(ev, 'late'), '', '', defaults);
    expect(late.position).toBe(40);
    expect(late.receipt).toBeUndefined();

    // the published draw verifies, against the positions the gateway gave
    const info = (await store.drawInfo(ev))!;
    expect(info.seed).toBe(seed);
    expect(info.entrants).toBe(39);
    const list: Entrant[] = (await store.entrants(ev, 0, 1000)).map(([receipt, key], i) => ({ position: i + 1, receipt, key }));
    const published: DrawPublished = {
      event_id: ev,
      algorithm: 'wr-draw-v1',
      status: 'drawn',
      commitment: info.commitment,
      seed: info.seed,
      entrants: info.entrants,
      entrants_digest: (await import('../src/queue/draw.js')).entrantsDigest(list.map((e) => e.receipt)),
    };
    const observed = new Map([...given].map(([tok, pos]) => [receiptOf(tok), pos]));
    expect(verifyDraw(published, list, observed, commitmentOf(seed))).toMatchObject({ ok: true, entrants: 39 });
    // and a tampered list or position does not
    const swapped = list.map((e) => ({ ...e }));
    [swapped[0]!.receipt, swapped[1]!.receipt] = [swapped[1]!.receipt, swapped[0]!.receipt];
    expect(verifyDraw(published, swapped).ok).toBe(false);
    expect(verifyDraw(published, list, new Map([[list[0]!.receipt, 2]])).ok).toBe(false);
    expect(verifyDraw({ ...published, seed: 'b'.repeat(64) }, list).ok).toBe(false);
  });

  it('the Lua receipt and key are the TypeScript ones, and the commitment made at scheduling never changes', async () => {
    const { store, clock } = setup();
    const ev = 'commit';
    const seed = createHash('sha256').update('commit-seed').digest('hex');
    await scheduled(store, ev, seed, T0, T0 + 5000);
    const c0 = (await store.drawInfo(ev))!.commitment;
    // a later PUT with another seed (as a second admin PUT with a new starts_at would bring) keeps the first
    await store.putEvent(ev, { startsMs: T0 + 6000, draw: { seed: 'f'.repeat(64), commitment: commitmentOf('f'.repeat(64)) } });
    expect((await store.drawInfo(ev))!.commitment).toBe(c0);
    await tick(store, ev);
    for (let i = 0; i < 20; i++) {
      const tok = tokenFor(ev, `k${i}`);
      const j = await store.join(ev, tok, '', '', defaults);
      expect(j.receipt).toBe(receiptOf(tok));
      const key = await client.zscore(store.keys(ev).entrants, j.receipt!);
      expect(Number(key)).toBe(drawKey(seed, receiptOf(tok)));
    }
    clock.now = T0 + 6000;
    expect((await tick(store, ev)).transition).toBe('drawn');
    const after = (await store.drawInfo(ev))!;
    expect(after.commitment).toBe(c0);
    expect(after.seed).toBe(seed);
    // the schedule of a started event and the state of a scheduled one cannot be changed by hand
    expect((await refusal(store.putEvent(ev, { startsMs: T0 + 9000 }))).code).toBe('EVENT_STATE_CONFLICT');
    const { store: s2 } = setup();
    await scheduled(s2, 'x', seed, T0 + 1000, T0 + 2000);
    expect((await refusal(s2.putEvent('x', { state: 'open' }))).code).toBe('EVENT_STATE_CONFLICT');
  });

  it('no bias by arrival order: a chi-square test over 400 draws of 8 entrants (arrival rank x drawn position)', async () => {
    const { store, clock } = setup();
    const N = 8;
    const DRAWS = 400;
    const counts = Array.from({ length: N }, () => new Array<number>(N).fill(0));
    for (let d = 0; d < DRAWS; d++) {
      const ev = `chi${d}`;
      // fixed seeds and tokens: the statistic is one fixed number, so the test cannot flake
      const seed = createHash('sha256').update(`chi-seed-${d}`).digest('hex');
      clock.now = T0;
      await scheduled(store, ev, seed, T0, T0 + 1000);
      await tick(store, ev);
      const toks: string[] = [];
      for (let i = 0; i < N; i++) {
        clock.now += 10;
        const tok = tokenFor(ev, `chi-${d}-${i}`);
        await store.join(ev, tok, '', '', defaults);
        toks.push(tok);
      }
      clock.now = T0 + 1000;
      expect((await tick(store, ev)).transition).toBe('drawn');
      const ranks = await store.ranks(ev, toks);
      ranks.ranks.forEach((r, arrival) => counts[arrival]![r]!++);
    }
    const expected = DRAWS / N;
    let chi2 = 0;
    for (const row of counts) for (const c of row) chi2 += (c - expected) ** 2 / expected;
    // (N-1)^2 = 49 degrees of freedom: P(chi2 > 85.35) = 0.001 for an unbiased draw
    expect(chi2, `counts by arrival rank (rows) and drawn position (columns): ${JSON.stringify(counts)}`).toBeLessThan(85.35);
    // each position is taken exactly once per draw
    for (let p = 0; p < N; p++) expect(counts.reduce((s, row) => s + row[p]!, 0)).toBe(DRAWS);
  });
});

describe('the end (lua/event-end-1.lua, tick-13.lua)', () => {
  it('ends: joins refused, every waiting and pre-queue place answers ended at once and is released in bounded steps, ready users keep their window, and DELETE takes every key', async () => {
    const { store, clock } = setup();
    const ev = 'fin';
    await store.putEvent(ev, { rate: 2, burst: 2, readyWindowSec: 60, reconnectGraceSec: 30, state: 'open', access: 'anonymous' });
    await store.acquireLease(ev, 'ticker', 600_000);
    const toks: string[] = [];
    for (let i = 0; i < 30; i++) toks.push((await store.join(ev, tokenFor(ev, `f${i}`), '', '', defaults)).token);
    clock.now += 10;
    const t1 = await tick(store, ev);
    expect(t1.readyCount).toBe(2);
    const r = await store.endEvent(ev, 'sold_out', { en: 'All sold. Thank you.' });
    expect(r).toMatchObject({ already: false, reason: 'sold_out' });
    expect(await store.endEvent(ev, 'other', undefined)).toMatchObject({ already: true, reason: 'sold_out' });
    // at once, before any tick
    const w = (await store.status(toks[10]!, 0))!;
    expect(w).toMatchObject({ state: 'expired', reason: 'ended', endReason: 'sold_out' });
    expect((await store.endInfo(ev)).notice).toEqual({ en: 'All sold. Thank you.' });
    const joinAfter = await refusal(store.join(ev, tokenFor(ev, 'after'), '', '', defaults));
    expect(joinAfter.code).toBe('EVENT_ENDED');
    expect(joinAfter.details).toMatchObject({ reason: 'sold_out' });
    expect((await refusal(store.enter(toks[10]!))).details).toMatchObject({ reason: 'ended' });
    // released in bounded steps (maxSweep 10 per tick here); nobody promoted
    for (let i = 0; i < 3; i++) {
      clock.now += 100;
      const t = await store.tick(ev, 'ticker', { ...TICK, maxSweep: 10 });
      if (typeof t === 'string') throw new Error(t);
      expect(t.promoted).toHaveLength(0);
    }
    expect(await client.zcard(store.keys(ev).q)).toBe(2);
    expect(await client.hget(`${store.keys(ev).base}u:${toks[29]}`, 'why')).toBe('ended');
    // the ready users keep their window
    const e = await store.enter(toks[0]!);
    expect(e.again).toBe(false);
    // every key goes
    const n = await store.deleteEventKeys(ev);
    expect(n).toBeGreaterThan(30);
    expect(await client.keys(`${store.keys(ev).base}*`)).toEqual([]);
  });

  it('ends_at ends the event on time; an event ended in its pre-queue lets every entrant go', async () => {
    const { store, clock } = setup();
    const ev = 'endsat';
    await scheduled(store, ev, 'c'.repeat(64), T0, T0 + 10_000, { endsMs: T0 + 20_000 });
    await tick(store, ev);
    const tok = (await store.join(ev, tokenFor(ev, 'e1'), '', '', defaults)).token;
    clock.now = T0 + 20_000;
    const t = await tick(store, ev);
    expect(t.transition).toBe('ended');
    expect(t.state).toBe('ended');
    expect((await store.getEvent(ev))!.endReason).toBe('ends_at');
    expect(await store.status(tok, 0)).toMatchObject({ state: 'expired', reason: 'ended', endReason: 'ends_at' });
    // never drawn
    expect((await store.drawInfo(ev))!.drawnMs).toBe(0);
  });
});
