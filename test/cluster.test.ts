import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from 'ioredis';
import { eventKeys } from '../src/redis/keys.js';
import { call, sleep, spawnGateway, startInProcessGateway, uniquePrefix, waitFor, type InProcessGateway } from './helpers/harness.js';
import { startCluster, type LocalCluster } from './helpers/cluster.js';
import { connect } from './helpers/ws-client.js';

// Redis Cluster (3 primaries, 3 replicas of local redis-server processes):
// events spread over shards, sharded pub/sub for ticks, a primary killed under
// load fails over without losing or duplicating a place, Redis frozen is a
// clean 503 with sockets paused and resumed, and a gateway killed mid-tick
// leaves no half-applied admission.

const ADMIN = 'cluster-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

let cl: LocalCluster;
let client: Cluster;
let gw: InProcessGateway;
let prefix: string;

beforeAll(async () => {
  cl = await startCluster();
  client = cl.client();
  prefix = uniquePrefix();
  gw = await startInProcessGateway(cl.seeds, {
    REDIS_CLUSTER_MODE: 'true',
    REDIS_KEY_PREFIX: prefix,
    ADMIN_TOKEN: ADMIN,
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_TICK_MS: '50',
    QUEUE_LEASE_MS: '1000',
  });
}, 60_000);
afterAll(async () => {
  await gw?.stop();
  client?.disconnect();
  await cl?.stop();
});

const join = async (event: string) => call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event });
const lineOf = (event: string) => client.zrange(eventKeys(prefix, event).q, 0, -1);

describe('Redis Cluster', () => {
  it('spreads events over shards, keeps exact positions, and pushes ticks over sharded pub/sub', async () => {
    const events = Array.from({ length: 8 }, (_, i) => `shard-${i}`);
    const owners = new Set<number>();
    for (const e of events) {
      await call(gw.url, 'PUT', `/api/v1/admin/events/${e}`, { rate: 0.01, burst: 1, state: 'paused' }, auth);
      owners.add((await cl.primaryFor(eventKeys(prefix, e).q)).port);
    }
    expect(owners.size).toBeGreaterThanOrEqual(2); // events live on different primaries
    for (const e of events) {
      const tokens: string[] = [];
      for (let i = 0; i < 5; i++) tokens.push((await join(e)).body.waiting_token as string);
      for (let i = 0; i < 5; i++) expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${tokens[i]!}`)).body.position).toBe(i + 1);
    }
    // a socket in one event hears a leave ahead of it through the event's shard
    const e = events[3]!;
    const line = await lineOf(e);
    const c = await connect(gw.url, line[4]!);
    expect((await c.next((m) => m.type === 'welcome')).position).toBe(5);
    await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${line[0]!}`);
    expect((await c.next((m) => m.type === 'position' && m.position === 4, 5000)).position).toBe(4);
    await c.close();
  }, 60_000);

  it('a primary killed during load fails over; no place in line is lost or duplicated, and the line moves on', async () => {
    const e = 'failover';
    await call(gw.url, 'PUT', `/api/v1/admin/events/${e}`, { rate: 50, burst: 1, state: 'paused' }, auth);
    for (let i = 0; i < 60; i++) expect((await join(e)).status).toBe(202);
    await sleep(500); // let replication catch up: these places are established
    const before = await lineOf(e);
    expect(before).toHaveLength(60);
    const primary = await cl.primaryFor(eventKeys(prefix, e).q);

    // load: joins and polls keep coming while the primary dies
    let stop = false;
    const afterKill: string[] = [];
    let killed = false;
    const statuses: Record<string, number> = {};
    const load = (async () => {
      while (!stop) {
        const r = await join(e);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status === 202 && killed) afterKill.push(r.body.waiting_token as string);
        if (r.status !== 202) {
          expect(r.status).toBe(503); // a clear 503, never a 500, while the shard fails over
          expect(r.headers.get('retry-after')).toBeTruthy();
        }
        await call(gw.url, 'GET', `/api/v1/queue/status?token=${before[10]!}`);
        await sleep(20);
      }
    })();
    await sleep(300);
    killed = true;
    await cl.kill(primary);
    await waitFor('joins succeed after failover', async () => afterKill.length >= 5, 30_000, 200);
    stop = true;
    await load;

    const after = await lineOf(e);
    expect(new Set(after).size).toBe(after.length); // nobody twice
    // every place established before the kill survived, in the same order
    expect(after.slice(0, before.length)).toEqual(before);
    for (const t of afterKill) expect(after).toContain(t);
    // positions still exact after the failover
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${before[20]!}`)).body.position).toBe(21);
    // and the line moves: the ticker lease lives on (or moves to) the new primary
    await call(gw.url, 'PUT', `/api/v1/admin/events/${e}`, { state: 'open' }, auth);
    await waitFor('admissions after failover', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${before[0]!}`)).body.ready_for_entry === true, 15_000, 200);
    expect(statuses['500']).toBeUndefined();
  }, 90_000);

  it('Redis frozen: joins 503 + Retry-After, readiness 503, sockets stay open with paused, everything resumes by itself', async () => {
    const e = 'frozen';
    await call(gw.url, 'PUT', `/api/v1/admin/events/${e}`, { rate: 0.01, burst: 1, state: 'paused' }, auth);
    await join(e);
    const t = (await join(e)).body.waiting_token as string;
    const c = await connect(gw.url, t);
    await c.next((m) => m.type === 'welcome');
    const alive = cl.nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
    for (const n of alive) n.proc.kill('SIGSTOP');
    try {
      const r = await waitFor('503', async () => {
        const x = await join(e);
        return x.status === 503 ? x : undefined;
      }, 15_000, 200);
      expect((r.body.error as { code: string }).code).toBe('REDIS_UNAVAILABLE');
      expect(r.headers.get('retry-after')).toBeTruthy();
      await waitFor('readiness 503', async () => (await call(gw.url, 'GET', '/readyz')).status === 503, 10_000, 200);
      expect(await c.next((m) => m.type === 'paused' && m.event_state === 'unavailable', 10_000)).toBeTruthy();
      expect(c.ws.readyState).toBe(c.ws.OPEN);
    } finally {
      for (const n of alive) n.proc.kill('SIGCONT');
    }
    await waitFor('ready again', async () => (await call(gw.url, 'GET', '/readyz')).status === 200, 20_000, 200);
    await c.next((m) => m.type === 'resumed', 10_000);
    expect(c.ws.readyState).toBe(c.ws.OPEN);
    await waitFor('joins again', async () => (await join(e)).status === 202, 20_000, 200);
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${t}`)).body.position).toBe(2); // the place survived the outage
    await c.close();
  }, 90_000);

  it('a gateway killed mid-tick leaves no half-applied admission', async () => {
    const p2 = uniquePrefix();
    const e = 'midtick';
    const env = { REDIS_CLUSTER_MODE: 'true', REDIS_ADDRESS: cl.nodes.filter((n) => n.proc.exitCode === null).map((n) => `127.0.0.1:${n.port}`).join(','), REDIS_KEY_PREFIX: p2, ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '20', QUEUE_LEASE_MS: '500', QUEUE_AUTO_CREATE_EVENTS: 'true' };
    let g = await spawnGateway(env);
    await call(g.url, 'PUT', `/api/v1/admin/events/${e}`, { rate: 400, burst: 50, ready_window_sec: 600, state: 'paused' }, auth);
    await Promise.all(Array.from({ length: 600 }, () => call(g.url, 'POST', '/api/v1/queue/join', { event_id: e })));
    await call(g.url, 'PUT', `/api/v1/admin/events/${e}`, { state: 'open' }, auth);
    for (let round = 0; round < 3; round++) {
      await sleep(150 + round * 70); // in the middle of promoting (~8 per tick)
      await g.stop('SIGKILL');
      g = await spawnGateway(env);
    }
    await sleep(300);
    await g.stop('SIGKILL');
    const k = eventKeys(p2, e);
    const q = await client.zrange(k.q, 0, -1, 'WITHSCORES');
    const ready = new Set(await client.zrange(k.ready, 0, -1));
    const members = q.filter((_, i) => i % 2 === 0);
    const states = await Promise.all(members.map((t) => client.hget(`${k.base}u:${t}`, 's')));
    // ready users are exactly the head of the line and exactly the users in state r
    expect(members.slice(0, ready.size).every((t) => ready.has(t))).toBe(true);
    members.forEach((t, i) => expect(states[i]).toBe(ready.has(t) ? 'r' : 'w'));
    // every promotion counted is a ready user (nobody entered or expired here): nothing half-applied
    const promoted = Number((await client.hget(k.stats, 'promoted')) ?? 0);
    expect(promoted).toBe(ready.size);
    expect(promoted).toBeGreaterThan(0);
    expect(Number(await client.hget(k.bucket, 'tokens'))).toBeLessThanOrEqual(50);
  }, 90_000);
});
