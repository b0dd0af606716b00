import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { eventKeys, userKey } from '../src/redis/keys.js';
import { call, redisClient, sleep, spawnGateway, startRedis, uniquePrefix, waitFor, type SpawnedGateway } from './helpers/harness.js';
import { connect, reconnecting, type Client, type ReconnectingClient } from './helpers/ws-client.js';

// Three gateway processes on one Redis. Users join through one instance and
// hold sockets on the others; every socket's position must equal a ZRANK
// recount in Redis. Killing an instance (SIGKILL) loses nobody, at a short
// reconnect grace (4 s): its users' clients reconnect elsewhere by
// themselves, as the real client does, and keep their exact place; everyone
// else's socket stays open throughout; the ticker moves to a survivor.
// SIGTERM tells sockets to reconnect (4100).

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };
const EVENT = 'multi';

let redis: EmbeddedRedis;
let client: Redis;
let prefix: string;
const gws: SpawnedGateway[] = [];
const clients: Client[] = [];
const held: ReconnectingClient[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = redisClient(redis.address);
  prefix = uniquePrefix();
  const env = { REDIS_ADDRESS: redis.address, REDIS_KEY_PREFIX: prefix, ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '100', QUEUE_LEASE_MS: '1500', QUEUE_RECONNECT_GRACE_SEC: '4' };
  for (const name of ['a', 'b', 'c']) gws.push(await spawnGateway({ ...env, INSTANCE_ID: `${name}-${prefix}` }));
});
afterAll(async () => {
  await Promise.all(held.map((c) => c.stop()));
  for (const c of clients) c.ws.terminate();
  await Promise.all(gws.map((g) => g.stop('SIGKILL')));
  client?.disconnect();
  await redis?.stop();
});

const lastPosition = (c: ReconnectingClient): number | undefined => c.positions.at(-1);

async function redisPosition(token: string): Promise<number> {
  const r = await client.zrank(eventKeys(prefix, EVENT).q, token);
  return r === null ? -1 : r + 1;
}

// When a check fails, say why for every user whose place differs: what Redis
// recorded for them (state, reason, when) and what their socket saw.
async function explain(tokens: readonly string[], sockOf: Map<string, { c: ReconnectingClient; on: SpawnedGateway }>, expected?: readonly number[]): Promise<string> {
  const lines: string[] = [];
  for (const [i, t] of tokens.entries()) {
    const got = await redisPosition(t);
    const s = sockOf.get(t)!;
    if (expected ? got === expected[i] : got === lastPosition(s.c)) continue;
    const rec = await client.hgetall(userKey(eventKeys(prefix, EVENT), t));
    const live = await client.zscore(eventKeys(prefix, EVENT).live, t);
    lines.push(
      `user ${i} on ${s.on.instanceId}: redis position ${got} (expected ${expected?.[i] ?? lastPosition(s.c)}), record ${JSON.stringify(rec)}, live ${live}, ` +
        `socket state ${s.c.current?.ws.readyState} closes ${JSON.stringify(s.c.closes)} terminal ${JSON.stringify(s.c.terminal)}, last messages ${JSON.stringify(s.c.current?.messages.slice(-3))}`,
    );
  }
  for (const g of gws) {
    const m = await fetch(`${g.url}/metrics`).then((r) => r.text(), () => '');
    lines.push(`${g.instanceId}: ${m.split('\n').filter((l) => /^(ws_|websocket_)[a-z_]*(closed|dropped)/.test(l)).join('; ')}`);
  }
  const stats = await client.hgetall(eventKeys(prefix, EVENT).stats);
  const warnings = gws.flatMap((g) => g.logs.filter((l) => /"level":(40|50|60)/.test(l)).map((l) => `${g.instanceId}: ${l}`));
  return `${lines.join('\n')}\ngateway warnings:\n${warnings.slice(-20).join('\n')}\nstats ${JSON.stringify(stats)} redis time ${JSON.stringify(await client.time())}`;
}

describe('many instances, one line', () => {
  it('positions pushed by every instance match Redis; SIGKILL of the ticking instance loses no place', async () => {
    const [a] = gws as [SpawnedGateway];
    await call(a.url, 'PUT', `/api/v1/admin/events/${EVENT}`, { rate: 50, burst: 1, reconnect_grace_sec: 4, state: 'paused' }, auth);
    const holderId = await waitFor('ticker', async () => (await client.get(eventKeys(prefix, EVENT).lease)) ?? undefined);
    const holder = gws.find((g) => g.instanceId === holderId)!;
    const other = gws.find((g) => g !== holder && g !== a) ?? gws.find((g) => g !== holder)!;
    const survivor = gws.find((g) => g !== holder)!;

    // 40 users join through instance a; even ones hold a socket on the ticking instance, odd ones on another
    const tokens: string[] = [];
    for (let i = 0; i < 40; i++) tokens.push((await call(a.url, 'POST', '/api/v1/queue/join', { event_id: EVENT })).body.waiting_token as string);
    // each client goes back to its own instance while it is up, else to the survivor (the load balancer's choice)
    const alive = (g: SpawnedGateway): boolean => g.proc.exitCode === null && g.proc.signalCode === null;
    const sockOf = new Map<string, { c: ReconnectingClient; on: SpawnedGateway }>();
    for (let i = 0; i < 40; i++) {
      const on = i % 2 === 0 ? holder : other;
      const c = reconnecting(tokens[i]!, () => (alive(on) ? on.url : survivor.url));
      held.push(c);
      sockOf.set(tokens[i]!, { c, on });
    }
    await waitFor('every client welcomed', async () => held.every((c) => c.positions.length > 0), 10_000);
    // some leave (through a), some leave over their socket: everyone behind moves up on every instance
    for (const i of [0, 7, 13]) await call(a.url, 'DELETE', `/api/v1/queue/leave?token=${tokens[i]!}`);
    for (const i of [20, 31]) sockOf.get(tokens[i]!)!.c.current!.send({ type: 'leave' });
    const remaining = tokens.filter((_, i) => ![0, 7, 13, 20, 31].includes(i));
    const matches = async (): Promise<boolean> => {
      for (const t of remaining) if (lastPosition(sockOf.get(t)!.c) !== (await redisPosition(t))) return false;
      return true;
    };
    await waitFor('every socket matches Redis', matches, 10_000, 100).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await explain(remaining, sockOf)}`);
    });
    const before = await Promise.all(remaining.map(redisPosition));
    const inOrder = Array.from({ length: remaining.length }, (_, i) => i + 1);
    expect(before, await explain(remaining, sockOf, inOrder)).toEqual(inOrder);

    // kill the ticking instance without a goodbye
    await holder.stop('SIGKILL');
    const killedAt = Date.now();
    const orphaned = remaining.filter((t) => sockOf.get(t)!.on === holder);
    expect(orphaned.length).toBeGreaterThan(10);
    // their clients notice (1006) and come back on the survivor by themselves, at their own backoff, at the same place
    for (const t of orphaned) {
      const c = sockOf.get(t)!.c;
      await waitFor(`user ${remaining.indexOf(t)} back`, async () => c.closes.length > 0 && c.welcomes >= 2, 10_000, 20);
      expect(c.positions.at(-1)).toBe(before[remaining.indexOf(t)]);
    }
    // 11 s after the kill (well past the 4 s grace plus the killed instance's last renewal): still everyone in line, same order
    await sleep(Math.max(0, 11_000 - (Date.now() - killedAt)));
    // nobody on the other instances ever lost their socket, and nobody was told their place expired
    expect(remaining.filter((t) => sockOf.get(t)!.on !== holder).map((t) => sockOf.get(t)!.c.closes.length)).toEqual(remaining.filter((t) => sockOf.get(t)!.on !== holder).map(() => 0));
    expect(held.filter((c) => c.terminal && remaining.includes(c.token))).toEqual([]);
    const after = await Promise.all(remaining.map(redisPosition));
    expect(after, await explain(remaining, sockOf, before)).toEqual(before);
    expect(await client.zcard(eventKeys(prefix, EVENT).q)).toBe(remaining.length);
    const newHolder = await client.get(eventKeys(prefix, EVENT).lease);
    expect(newHolder).not.toBe(holder.instanceId);
    expect(gws.filter((g) => g !== holder).map((g) => g.instanceId)).toContain(newHolder);

    // and the surviving ticker admits: open the event, the head gets `ready` on its socket
    await call(survivor.url, 'PUT', `/api/v1/admin/events/${EVENT}`, { state: 'open' }, auth);
    await sockOf.get(remaining[0]!)!.c.current!.next((m) => m.type === 'ready', 10_000);
    const stats = await call(survivor.url, 'GET', `/api/v1/admin/events/${EVENT}/stats`, undefined, auth);
    expect(stats.body.expired_liveness_total).toBe(0);
  }, 60_000);

  it('SIGTERM: sockets are told to reconnect (4100), readiness fails first, the process exits 0', async () => {
    const alive = gws.filter((g) => g.proc.exitCode === null && g.proc.signalCode === null);
    const [leaving, staying] = alive as [SpawnedGateway, SpawnedGateway];
    const t = (await call(staying.url, 'POST', '/api/v1/queue/join', { event_id: EVENT })).body.waiting_token as string;
    const c = await connect(leaving.url, t);
    clients.push(c);
    await c.next((m) => m.type === 'welcome');
    const pos = await redisPosition(t);
    leaving.proc.kill('SIGTERM');
    expect((await c.closed).code).toBe(4100);
    expect((await leaving.exited).code).toBe(0);
    const back = await connect(staying.url, t);
    clients.push(back);
    expect((await back.next((m) => m.type === 'welcome')).position).toBeLessThanOrEqual(pos);
  }, 30_000);
});
