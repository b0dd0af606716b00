import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { eventKeys, userKey } from '../src/redis/keys.js';
import { call, redisClient, sleep, spawnGateway, startInProcessGateway, startRedis, uniquePrefix, waitFor, type InProcessGateway, type SpawnedGateway } from './helpers/harness.js';
import { connect, reconnecting, type Client, type ReconnectingClient } from './helpers/ws-client.js';
import { startTcpProxy, type TcpProxy } from '../bench/tcp-proxy.js';

// "Nobody loses their place" across instances: a place is removed only when
// no holder keeps it (docs/PROTOCOL.md, section 6). Each case here failed
// before liveness claims were per holder (a socket closing on one instance
// cut short what another instance's open socket, or a poll, had granted).

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

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

describe('two tabs on two instances', () => {
  const gws: SpawnedGateway[] = [];
  const sockets: Client[] = [];
  let prefix: string;
  afterAll(async () => {
    for (const c of sockets) c.ws.terminate();
    await Promise.all(gws.map((g) => g.stop('SIGKILL')));
  });

  it('closing the tab on one instance never removes a user whose tab on another instance is open (grace 3 s)', async () => {
    prefix = uniquePrefix();
    const env = { REDIS_ADDRESS: redis.address, REDIS_KEY_PREFIX: prefix, ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '100', QUEUE_LEASE_MS: '1500' };
    gws.push(await spawnGateway({ ...env, INSTANCE_ID: `a-${prefix}` }), await spawnGateway({ ...env, INSTANCE_ID: `b-${prefix}` }));
    const [a, b] = gws as [SpawnedGateway, SpawnedGateway];
    const ev = 'tabs';
    await call(a.url, 'PUT', `/api/v1/admin/events/${ev}`, { rate: 0.01, burst: 1, reconnect_grace_sec: 3, state: 'paused' }, auth);
    const tokens: string[] = [];
    for (let i = 0; i < 8; i++) tokens.push((await call(a.url, 'POST', '/api/v1/queue/join', { event_id: ev })).body.waiting_token as string);
    const onA: Client[] = [];
    const onB: Client[] = [];
    for (const t of tokens) {
      const ca = await connect(a.url, t);
      const cb = await connect(b.url, t);
      sockets.push(ca, cb);
      onA.push(ca);
      onB.push(cb);
    }
    for (const [i, c] of [...onA, ...onB].entries()) expect((await c.next((m) => m.type === 'welcome')).position).toBe((i % 8) + 1);
    // let both instances renew their claims a few times with sockets open
    await sleep(1500);
    const firstClose = Date.now();
    for (const c of onA) {
      await c.close();
      await sleep(700);
    }
    await sleep(Math.max(0, 9000 - (Date.now() - firstClose)));
    const k = eventKeys(prefix, ev);
    const why = async (): Promise<string> => {
      const recs = await Promise.all(tokens.map((t) => client.hgetall(userKey(k, t))));
      return JSON.stringify({ recs, closes: onB.map((c) => c.closeInfo ?? null) });
    };
    expect(await client.zcard(k.q), await why()).toBe(8);
    expect(onB.map((c) => c.closeInfo?.code ?? 'open'), await why()).toEqual(tokens.map(() => 'open'));
    expect(onB.every((c) => !c.messages.some((m) => m.type === 'expired'))).toBe(true);
    const stats = await call(a.url, 'GET', `/api/v1/admin/events/${ev}/stats`, undefined, auth);
    expect(stats.body.expired_liveness_total ?? 0).toBe(0);
    // and the promise still holds: once the last tab closes, the place goes after exactly the grace
    const closedAt = Date.now();
    await onB[0]!.close();
    const moved = await onB[1]!.next((m) => m.type === 'position' && m.position === 1, 8000);
    expect(moved.position).toBe(1);
    const after = Date.now() - closedAt;
    expect(after).toBeGreaterThanOrEqual(2950);
    expect(after).toBeLessThan(3000 + 100 + 1000);
  }, 60_000);
});

describe('one instance', () => {
  let gw: InProcessGateway;
  beforeAll(async () => {
    gw = await startInProcessGateway(redis.address, { ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '50', QUEUE_LEASE_MS: '1000', QUEUE_POLL_TIMEOUT_SEC: '8' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('a poll answered from memory keeps the place for the poll timeout after the socket closes', async () => {
    const ev = 'pollclose';
    await call(gw.url, 'PUT', `/api/v1/admin/events/${ev}`, { rate: 0.01, burst: 1, reconnect_grace_sec: 1, state: 'paused' }, auth);
    const me = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: ev })).body.waiting_token as string;
    const behind = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: ev })).body.waiting_token as string;
    const c = await connect(gw.url, me);
    await c.next((m) => m.type === 'welcome');
    const cb = await connect(gw.url, behind);
    await cb.next((m) => m.type === 'welcome');
    // the poll is answered from this instance's memory (no Redis read)
    const fromMemory = async (): Promise<number> => (await gw.gateway.metrics.statusFromMemory.get()).values.find((x) => x.labels.source === 'memory')?.value ?? 0;
    const before = await fromMemory();
    await waitFor('a tick message reached the room', async () => (gw.gateway.realtime.roomFor(ev)?.lastTickAt ?? 0) > Date.now() - 500);
    const polledAt = Date.now();
    const p = await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`);
    expect(p.body.position).toBe(1);
    expect(await fromMemory()).toBe(before + 1);
    await c.close();
    // past the 1 s grace, and past a refresh interval: the poll still holds the place
    await sleep(3500);
    const k = eventKeys(gw.gateway.config.redis.keyPrefix, ev);
    expect(await client.zcard(k.q), JSON.stringify([await client.hgetall(userKey(k, me)), await client.hgetall(userKey(k, behind)), cb.messages])).toBe(2);
    // nobody polls again: it goes once the poll timeout (8 s) has passed
    const moved = await cb.next((m) => m.type === 'position' && m.position === 1, 10_000);
    expect(moved.position).toBe(1);
    const after = Date.now() - polledAt;
    expect(after).toBeGreaterThanOrEqual(7900);
    expect(after).toBeLessThan(8000 + 2000);
    await cb.close();
  }, 30_000);
});

describe('an instance cut off from Redis', () => {
  const gws: SpawnedGateway[] = [];
  const clients: ReconnectingClient[] = [];
  let proxy: TcpProxy;
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(gws.map((g) => g.stop('SIGKILL')));
    await proxy?.stop();
  });

  it('closes its sockets with 4103 inside the grace, and its users keep their places on a healthy instance', async () => {
    const prefix = uniquePrefix();
    const ev = 'cut';
    const env = { REDIS_KEY_PREFIX: prefix, ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '100', QUEUE_LEASE_MS: '1500', REDIS_COMMAND_TIMEOUT_MS: '500' };
    // a: direct to Redis, and the ticker; b: through a proxy that will stop forwarding
    const a = await spawnGateway({ ...env, REDIS_ADDRESS: redis.address, INSTANCE_ID: `a-${prefix}` });
    gws.push(a);
    await call(a.url, 'PUT', `/api/v1/admin/events/${ev}`, { rate: 0.01, burst: 1, reconnect_grace_sec: 3, state: 'paused' }, auth);
    const k = eventKeys(prefix, ev);
    await waitFor('a ticks the event', async () => (await client.get(k.lease)) === a.instanceId);
    proxy = await startTcpProxy(redis.address);
    const b = await spawnGateway({ ...env, REDIS_ADDRESS: proxy.address, INSTANCE_ID: `b-${prefix}` });
    gws.push(b);
    const tokens: string[] = [];
    for (let i = 0; i < 6; i++) tokens.push((await call(a.url, 'POST', '/api/v1/queue/join', { event_id: ev })).body.waiting_token as string);
    // every user holds a socket on b; the load balancer sends reconnects to a once b is out of rotation
    let bInRotation = true;
    for (const t of tokens) clients.push(reconnecting(t, () => (bInRotation ? b.url : a.url)));
    await waitFor('all welcomed on b', async () => clients.every((c) => c.positions.length > 0), 10_000);
    await sleep(1000);
    proxy.blackhole();
    const cutAt = Date.now();
    bInRotation = false; // readiness fails on b: new connections go to a
    // b cannot renew its claims: it must hand its sockets back well inside the 3 s grace
    await waitFor('b closed its sockets', async () => clients.every((c) => c.closes.length > 0), 6000, 50);
    const closedWithin = Math.max(...clients.map((c) => c.closes[0]!.atMs)) - cutAt;
    expect(clients.map((c) => c.closes[0]!.code)).toEqual(tokens.map(() => 4103));
    expect(closedWithin).toBeLessThan(3000);
    // long past every claim b renewed: everyone still in line, in order, attached to a
    await sleep(Math.max(0, 9000 - (Date.now() - cutAt)));
    const ranks = await Promise.all(tokens.map((t) => client.zrank(k.q, t)));
    expect(ranks, JSON.stringify(clients.map((c) => ({ closes: c.closes, terminal: c.terminal })))).toEqual(tokens.map((_, i) => i));
    expect(clients.map((c) => c.terminal)).toEqual(tokens.map(() => undefined));
    expect(clients.map((c) => c.current?.ws.readyState)).toEqual(tokens.map(() => 1));
  }, 60_000);
});
