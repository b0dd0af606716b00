import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { QueueStore, type JoinDefaults } from '../src/queue/store.js';
import { newWaitingToken } from '../src/queue/token.js';
import { AppError } from '../src/errors.js';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { redisClient, startRedis, uniquePrefix } from './helpers/harness.js';

// The Lua scripts against a real redis-server, one key prefix per test.

let redis: EmbeddedRedis;
let client: Redis;
const clients: Redis[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = redisClient(redis.address);
});
afterAll(async () => {
  for (const c of [client, ...clients]) c.disconnect();
  await redis.stop();
});

const defaults = (o: Partial<JoinDefaults> = {}): JoinDefaults => ({
  autoCreate: true,
  rate: 10,
  burst: 5,
  readyWindowSec: 60,
  reconnectGraceSec: 30,
  livenessMs: 60_000,
  idempotencyTtlSec: 600,
  access: 'user',
  ...o,
});

/** A store on a virtual clock the test moves by hand. */
function virtualStore(c: Redis = client): { store: QueueStore; clock: { now: number } } {
  const clock = { now: 1_700_000_000_000 };
  return { store: new QueueStore(c, uniquePrefix(), () => clock.now), clock };
}

// gap detection off (tests below move the virtual clock in big steps), except where tested
const tickOpts = { leaseMs: 10_000, maxPromote: 10_000, maxSweep: 10_000, maxExits: 100_000, gapMs: 1e15, quietMs: 0 };

async function tick(store: QueueStore, eventId: string, who = 'inst-1') {
  await store.acquireLease(eventId, who, 10_000);
  const r = await store.tick(eventId, who, tickOpts);
  if (typeof r === 'string') throw new Error(`tick refused: ${r}`);
  return r;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  return err as AppError;
}

async function position(store: QueueStore, token: string): Promise<number> {
  const s = await store.status(token, 0);
  if (!s || s.rank < 0) throw new Error(`${token} not in line`);
  return s.rank + 1;
}

describe('join: exact arrival order', () => {
  it('concurrent joins from many connections get positions exactly 1..N in the order the authority saw them', async () => {
    for (let i = 0; i < 8; i++) clients.push(redisClient(redis.address));
    const prefix = uniquePrefix();
    const stores = clients.map((c) => new QueueStore(c, prefix));
    const N = 2000;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) => stores[i % stores.length]!.join('fifo', newWaitingToken('fifo'), '', '', defaults())),
    );
    const positions = results.map((r) => r.position).sort((a, b) => a - b);
    expect(positions).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    // The line itself is in that order, and every user's status says the same position.
    const line = await client.zrange(stores[0]!.keys('fifo').q, 0, -1);
    const byPosition = [...results].sort((a, b) => a.position - b.position).map((r) => r.token);
    expect(line).toEqual(byPosition);
    const sample = results.filter((_, i) => i % 97 === 0);
    for (const r of sample) expect(await position(stores[0]!, r.token)).toBe(r.position);
  });
});

describe('positions drop when people ahead exit', () => {
  it('enter, leave and expiry (ready window and liveness) of people ahead each move everyone behind up by one', async () => {
    const { store, clock } = virtualStore();
    const ev = 'drops';
    const d = defaults({ rate: 1, burst: 1, readyWindowSec: 10, livenessMs: 30_000 });
    const t: string[] = [];
    for (let i = 0; i < 6; i++) t.push((await store.join(ev, newWaitingToken(ev), '', '', d)).token);
    const last = t[5]!;
    expect(await position(store, last)).toBe(6);

    // t0 promoted (ready) and enters: the last user moves to 5
    const r1 = await tick(store, ev);
    expect(r1.promoted.map((p) => p[0])).toEqual([t[0]]);
    expect(await position(store, last)).toBe(6); // a ready user is still ahead until they go through
    await store.enter(t[0]!);
    expect(await position(store, last)).toBe(5);

    // t2 (waiting) leaves: 4
    await store.leave(t[2]!);
    expect(await position(store, last)).toBe(4);

    // t1 promoted after 1 s, then lets its ready window pass: expired by the tick, 3
    clock.now += 1000;
    const r2 = await tick(store, ev);
    expect(r2.promoted.map((p) => p[0])).toEqual([t[1]]);
    // keep the others live while time passes
    clock.now += 10_001;
    await store.touch(ev, 'inst-1', t.map((x) => [x, 'poll', 30_000] as const));
    const r3 = await tick(store, ev);
    expect(r3.expired).toContainEqual([t[1], 'ready_timeout']);
    // that tick also promoted t3 (tokens accrued), which is still ahead of last
    expect(r3.promoted.map((p) => p[0])).toEqual([t[3]]);
    expect(await position(store, last)).toBe(3);
    expect(await store.status(t[1]!, 0)).toMatchObject({ state: 'expired', reason: 'ready_timeout' });

    // t4 stops polling; everyone else keeps polling: t4 is removed by the server, last moves to 2
    clock.now += 20_000;
    await store.touch(ev, 'inst-1', [[t[3]!, 'poll', 30_000], [last, 'poll', 30_000]]);
    clock.now += 15_000;
    const r4 = await tick(store, ev);
    expect(r4.expired).toContainEqual([t[4], 'liveness']);
    expect(await position(store, last)).toBeLessThanOrEqual(2);
    expect((await store.status(t[4]!, 0))?.state).toBe('expired');
  });
});

describe('token bucket', () => {
  it('is a hard bound: over every window, promotions <= burst + rate x seconds (random tick spacing)', async () => {
    const { store, clock } = virtualStore();
    const ev = 'bucket';
    const rate = 7.5;
    const burst = 4;
    const d = defaults({ rate, burst, livenessMs: 10 ** 9, readyWindowSec: 86_400 });
    await Promise.all(Array.from({ length: 3000 }, () => store.join(ev, newWaitingToken(ev), '', '', d)));
    const events: { t: number; n: number }[] = [{ t: clock.now, n: 0 }];
    let seed = 42;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 400; i++) {
      clock.now += Math.floor(rnd() * 900) + 1; // 1..900 ms apart, irregular like a real ticker under load
      const r = await tick(store, ev);
      events.push({ t: clock.now, n: r.promoted.length });
    }
    const total = events.reduce((a, e) => a + e.n, 0);
    expect(total).toBeGreaterThan(0);
    for (let i = 0; i < events.length; i++) {
      let sum = 0;
      for (let j = i; j < events.length; j++) {
        sum += events[j]!.n;
        const seconds = (events[j]!.t - events[i]!.t) / 1000;
        expect(sum).toBeLessThanOrEqual(burst + rate * seconds + 1e-9);
      }
    }
    // and nothing is starved: each tick admits exactly what a reference bucket
    // with partial tokens kept (capped at burst) allows
    let tokens = burst;
    for (let i = 1; i < events.length; i++) {
      tokens = Math.min(burst, tokens + ((events[i]!.t - events[i - 1]!.t) / 1000) * rate);
      const n = Math.floor(tokens + 1e-9);
      expect(events[i]!.n).toBe(n);
      tokens -= n;
    }
  });

  it('paused promotes nobody, open resumes; closed refuses joins', async () => {
    const { store, clock } = virtualStore();
    const ev = 'states';
    await store.putEvent(ev, { rate: 100, burst: 100, readyWindowSec: 60, reconnectGraceSec: 30, state: 'paused' });
    const a = await store.join(ev, newWaitingToken(ev), '', '', defaults({ autoCreate: false }));
    clock.now += 5000;
    expect((await tick(store, ev)).promoted).toHaveLength(0);
    await store.putEvent(ev, { state: 'open' });
    clock.now += 100;
    expect((await tick(store, ev)).promoted.map((p) => p[0])).toEqual([a.token]);
    await store.putEvent(ev, { state: 'closed' });
    await expectCode(store.join(ev, newWaitingToken(ev), '', '', defaults({ autoCreate: true })), 'EVENT_CLOSED');
    await expectCode(store.join('nope', newWaitingToken('nope'), '', '', defaults({ autoCreate: false })), 'EVENT_NOT_FOUND');
  });
});

describe('duplicate joins', () => {
  it('same Idempotency-Key or same user returns 409 with the existing token; after leaving, the user may join again at the back', async () => {
    const { store } = virtualStore();
    const ev = 'dup';
    const first = await store.join(ev, newWaitingToken(ev), 'alice', 'key-00000001', defaults());
    const byKey = await expectCode(store.join(ev, newWaitingToken(ev), '', 'key-00000001', defaults()), 'DUPLICATE_REQUEST');
    expect(byKey.details).toMatchObject({ waiting_token: first.token, position: 1, status: 'waiting' });
    const byUser = await expectCode(store.join(ev, newWaitingToken(ev), 'alice', '', defaults()), 'DUPLICATE_REQUEST');
    expect(byUser.details).toMatchObject({ waiting_token: first.token });
    const bob = await store.join(ev, newWaitingToken(ev), 'bob', '', defaults());
    expect(bob.position).toBe(2);
    // the same user in another event is a different place
    await store.join('dup-other', newWaitingToken('dup-other'), 'alice', '', defaults());
    await store.leave(first.token);
    const again = await store.join(ev, newWaitingToken(ev), 'alice', '', defaults());
    expect(again.token).not.toBe(first.token);
    expect(again.position).toBe(2); // behind bob
    await store.leave(first.token); // leaving twice is fine
  });

  it('joins of one turn go in one batch, decided in call order exactly as one by one (duplicates inside the batch too)', async () => {
    const { store } = virtualStore();
    const ev = 'dup-batch';
    await store.join(ev, newWaitingToken(ev), '', '', defaults()); // scripts loaded before counting
    await store.leave((await client.zrange(store.keys(ev).q, 0, 0))[0]!);
    const scriptCalls = async (): Promise<number> => {
      const info = await client.info('commandstats');
      return [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const before = await scriptCalls();
    const dflt = defaults(); // one defaults object, as the route passes it: joins sharing it are batched
    const calls = Array.from({ length: 300 }, (_, i) => {
      // 0 and 5 share an Idempotency-Key, 1 and 7 a user id; 300 > one batch (256)
      const key = i === 0 || i === 5 ? 'key-batch-0001' : '';
      const user = i === 1 || i === 7 ? 'dora' : '';
      return store.join(ev, newWaitingToken(ev), user, key, dflt).then(
        (r) => ({ ok: true as const, r }),
        (e: AppError) => ({ ok: false as const, e }),
      );
    });
    const out = await Promise.all(calls);
    expect(await scriptCalls()).toBe(before + 2); // 256 + 44
    const joined = out.flatMap((o, i) => (o.ok ? [{ i, ...o.r }] : []));
    expect(joined).toHaveLength(298);
    expect(joined.map((j) => j.position)).toEqual(Array.from({ length: 298 }, (_, n) => n + 1));
    const d5 = out[5]!;
    const d7 = out[7]!;
    if (d5.ok || d7.ok) throw new Error('a duplicate inside the batch took a place');
    expect([d5.e.code, d7.e.code]).toEqual(['DUPLICATE_REQUEST', 'DUPLICATE_REQUEST']);
    expect(d5.e.details).toMatchObject({ waiting_token: joined[0]!.token, position: 1 });
    expect(d7.e.details).toMatchObject({ waiting_token: joined[1]!.token, position: 2 });
    const inLine = await client.zrange(store.keys(ev).q, 0, -1);
    expect(inLine).toEqual(joined.map((j) => j.token));
  });

  it('an admitted user cannot take a second place until their record is cleaned up', async () => {
    const { store, clock } = virtualStore();
    const ev = 'dup-adm';
    const a = await store.join(ev, newWaitingToken(ev), 'carol', '', defaults());
    clock.now += 10;
    await tick(store, ev);
    const first = await store.enter(a.token);
    expect(await store.enter(a.token)).toMatchObject({ again: true, admittedMs: first.admittedMs });
    await expectCode(store.join(ev, newWaitingToken(ev), 'carol', '', defaults()), 'DUPLICATE_REQUEST');
    await expectCode(store.leave(a.token), 'NOT_IN_LINE');
    clock.now += 3_600_001;
    expect(await store.cleanup(ev, 3_600_000, 100)).toBe(1);
    expect(await store.status(a.token, 0)).toBeNull();
    expect((await store.join(ev, newWaitingToken(ev), 'carol', '', defaults())).position).toBe(1);
  });
});

describe('enter', () => {
  it('only a ready user inside the window; once', async () => {
    const { store, clock } = virtualStore();
    const ev = 'enter';
    const d = defaults({ rate: 1, burst: 1, readyWindowSec: 5 });
    const a = await store.join(ev, newWaitingToken(ev), '', '', d);
    const b = await store.join(ev, newWaitingToken(ev), '', '', d);
    const notReady = await expectCode(store.enter(a.token), 'NOT_READY');
    expect(notReady.details).toMatchObject({ position: 1 });
    await tick(store, ev);
    const r = await store.enter(a.token);
    expect(r.admittedMs).toBe(clock.now);
    expect(r.again).toBe(false);
    clock.now += 1;
    // once: entering again reports the admission it had
    expect(await store.enter(a.token)).toMatchObject({ again: true, admittedMs: r.admittedMs, joinedMs: r.joinedMs });
    clock.now -= 1;
    clock.now += 1000;
    await tick(store, ev);
    clock.now += 5001; // window passed, no tick yet: enter itself expires the place
    await expectCode(store.enter(b.token), 'TOKEN_EXPIRED');
    expect((await store.status(b.token, 0))?.state).toBe('expired');
    await expectCode(store.enter('enter.AAAAAAAAAAAAAAAAAAAAAA'), 'TOKEN_NOT_FOUND');
    await expectCode(store.enter('garbage'), 'TOKEN_NOT_FOUND');
  });
});

describe('ETA parameters', () => {
  it('the share who take their slot is per joiner (not per exit), and survives a rate change that drops the rate history', async () => {
    const { store, clock } = virtualStore();
    const ev = 'eta-share';
    await store.putEvent(ev, { rate: 10, burst: 10, readyWindowSec: 60, reconnectGraceSec: 30, state: 'open' });
    const joined = await Promise.all(Array.from({ length: 100 }, () => store.join(ev, newWaitingToken(ev), '', '', defaults())));
    // 20 of 100 give up while waiting; 10 are promoted: an exit ratio would say 1/3 leave
    for (const j of joined.slice(60, 80)) await store.leave(j.token);
    clock.now += 1000;
    const first = await tick(store, ev);
    expect(first.promoted).toHaveLength(10);
    expect(first.eta.share).toBeCloseTo(1 - 20 / 105, 6);
    expect(first.eta.rate).toBe(10);
    await store.putEvent(ev, { rate: 5 });
    clock.now += 1000;
    const after = await tick(store, ev);
    expect(after.eta.share).toBeCloseTo(1 - 20 / 105, 6);
    // promotions and busy time at the old rate are gone: the new rate is the prior
    expect(after.eta.rw).toBe(5);
  });
});

describe('ticker lease', () => {
  it('only the holder ticks; another instance takes over once it lapses or is released', async () => {
    const { store, clock } = virtualStore();
    const ev = 'lease';
    await store.join(ev, newWaitingToken(ev), '', '', defaults());
    expect(await store.acquireLease(ev, 'a', 300)).toBe(true);
    expect(await store.acquireLease(ev, 'b', 300)).toBe(false);
    expect(await store.tick(ev, 'b', tickOpts)).toBe('not-holder');
    expect(typeof (await store.tick(ev, 'a', { ...tickOpts, leaseMs: 300 }))).toBe('object');
    // Redis expires the lease in real time (PX), independent of the virtual clock
    await new Promise((r) => setTimeout(r, 400));
    expect(await store.acquireLease(ev, 'b', 300)).toBe(true);
    expect(await store.tick(ev, 'a', tickOpts)).toBe('not-holder');
    expect(await store.releaseLease(ev, 'a')).toBe(false);
    expect(await store.releaseLease(ev, 'b')).toBe(true);
    expect(await store.acquireLease(ev, 'a', 300)).toBe(true);
    clock.now += 1;
  });
});

describe('after an outage', () => {
  it('nobody is removed for lapsed liveness until everyone had one window to be refreshed', async () => {
    const { store, clock } = virtualStore();
    const ev = 'outage';
    const d = defaults({ rate: 0.001, burst: 1, livenessMs: 5_000 });
    const a = await store.join(ev, newWaitingToken(ev), '', '', d);
    const b = await store.join(ev, newWaitingToken(ev), '', '', d);
    const c = await store.join(ev, newWaitingToken(ev), '', '', d);
    const opts = { ...tickOpts, gapMs: 15_000, quietMs: 20_000 };
    await store.acquireLease(ev, 'inst-1', 60_000);
    expect(typeof (await store.tick(ev, 'inst-1', opts))).toBe('object');
    // Redis (or every gateway) gone for 30 s: all three deadlines lapsed meanwhile
    clock.now += 30_000;
    const first = await store.tick(ev, 'inst-1', opts);
    if (typeof first === 'string') throw new Error(first);
    expect(first.expired).toEqual([]); // the quiet period began
    // b and c are refreshed by their instances/polls within the window; a never comes back
    clock.now += 5_000;
    await store.touch(ev, 'inst-1', [[b.token, 'hold', 5_000], [c.token, 'poll', 5_000]]);
    clock.now += 4_000;
    await store.touch(ev, 'inst-1', [[b.token, 'hold', 5_000], [c.token, 'poll', 5_000]]);
    expect((await store.tick(ev, 'inst-1', opts) as unknown as { expired: unknown[] }).expired).toEqual([]);
    clock.now += 11_001; // the quiet period is over
    await store.touch(ev, 'inst-1', [[b.token, 'hold', 5_000], [c.token, 'poll', 5_000]]);
    const after = await store.tick(ev, 'inst-1', opts);
    if (typeof after === 'string') throw new Error(after);
    expect(after.expired).toEqual([[a.token, 'liveness']]);
    expect((await store.status(b.token, 0))?.state).toBe('waiting');
    expect((await store.status(c.token, 0))?.state).toBe('waiting');
  });
});

describe('liveness claims: a place goes only when no holder keeps it', () => {
  const live = async (store: QueueStore, ev: string, tok: string): Promise<number> => Number(await client.zscore(store.keys(ev).live, tok));

  it('one instance closing never shortens what another instance or a poll holds; the last close gives exactly the grace', async () => {
    const { store, clock } = virtualStore();
    const ev = 'claims';
    const t0 = clock.now;
    const { token } = await store.join(ev, newWaitingToken(ev), '', '', defaults({ livenessMs: 60_000 }));
    expect(await live(store, ev, token)).toBe(t0 + 60_000); // the join's window
    // a socket attaches on A: A's claim replaces the join's window
    await store.status(token, 9_000, 'A');
    expect(await live(store, ev, token)).toBe(t0 + 9_000);
    await store.touch(ev, 'B', [[token, 'hold', 9_000]]); // and a second tab on B
    clock.now += 2_000;
    await store.touch(ev, 'B', [[token, 'hold', 9_000]]); // B renews
    expect(await live(store, ev, token)).toBe(t0 + 11_000);
    // A's socket closes: A's claim becomes now + 3 s; B's renewal still holds the place
    await store.touch(ev, 'A', [[token, 'hold', 3_000]]);
    expect(await live(store, ev, token)).toBe(t0 + 11_000);
    // B's closes too: exactly now + the grace
    clock.now += 1_000;
    await store.touch(ev, 'B', [[token, 'hold', 3_000]]);
    expect(await live(store, ev, token)).toBe(t0 + 3_000 + 3_000);
    // a poll holds past that, and a later close cannot cut it short
    await store.status(token, 8_000);
    await store.touch(ev, 'A', [[token, 'hold', 0]]);
    expect(await live(store, ev, token)).toBe(t0 + 3_000 + 8_000);
    // a poll never moves the deadline earlier
    await store.touch(ev, 'C', [[token, 'poll', 1_000]]);
    expect(await live(store, ev, token)).toBe(t0 + 3_000 + 8_000);
  });

  it('lapsed claims of instances that died are dropped; finished users are never claimed back', async () => {
    const { store, clock } = virtualStore();
    const ev = 'claims2';
    const a = await store.join(ev, newWaitingToken(ev), '', '', defaults());
    await store.touch(ev, 'dead', [[a.token, 'hold', 1_000]]);
    await store.touch(ev, 'alive', [[a.token, 'hold', 5_000]]);
    clock.now += 2_000; // the dead instance's claim lapsed
    await store.touch(ev, 'alive', [[a.token, 'hold', 500]]);
    expect(Object.keys(await client.hgetall(`${store.keys(ev).base}u:${a.token}`)).filter((f) => f.startsWith('lc:'))).toEqual(['lc:alive']);
    expect(await live(store, ev, a.token)).toBe(1_700_000_000_000 + 2_500);
    await store.leave(a.token);
    expect(await store.touch(ev, 'alive', [[a.token, 'hold', 9_000], [a.token, 'poll', 9_000]])).toBe(0);
    expect(await client.zscore(store.keys(ev).live, a.token)).toBeNull();
  });
});

describe('cleanup', () => {
  it('removes at most the given number of finished records per call and never touches people in line', async () => {
    const { store, clock } = virtualStore();
    const ev = 'clean';
    const toks = [];
    for (let i = 0; i < 30; i++) toks.push((await store.join(ev, newWaitingToken(ev), '', '', defaults())).token);
    for (const t of toks.slice(0, 20)) await store.leave(t);
    clock.now += 61_000;
    expect(await store.cleanup(ev, 60_000, 8)).toBe(8);
    expect(await store.cleanup(ev, 60_000, 8)).toBe(8);
    expect(await store.cleanup(ev, 60_000, 8)).toBe(4);
    expect(await store.cleanup(ev, 60_000, 8)).toBe(0);
    for (const t of toks.slice(20)) expect((await store.status(t, 0))?.state).toBe('waiting');
  });
});
