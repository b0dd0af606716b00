import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import type { QueueStore } from '../src/queue/store.js';
import type { Realtime } from '../src/realtime/realtime.js';
import type { SocketSink } from '../src/realtime/event-room.js';
import type { Metrics } from '../src/metrics.js';
import { call, sleep, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';
import { connect, type Msg } from './helpers/ws-client.js';

// The real-time layer with real sockets: pushes, socket liveness with the
// reconnect grace, enter/leave over the socket, JSON and msgpack.

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let gw: InProcessGateway;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, { ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '50', QUEUE_LEASE_MS: '1000' });
});
afterAll(async () => {
  // a gateway that fails to stop must not leave its redis-server behind
  try {
    await gw?.stop();
  } finally {
    await redis?.stop();
  }
});

const join = async (event: string): Promise<string> => {
  const r = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event });
  expect(r.status).toBe(202);
  return r.body.waiting_token as string;
};
const putEvent = (event: string, body: Record<string, unknown>) => call(gw.url, 'PUT', `/api/v1/admin/events/${event}`, body, auth);
const stats = async (event: string) => (await call(gw.url, 'GET', `/api/v1/admin/events/${event}/stats`, undefined, auth)).body;
const positions = (msgs: Msg[]) => msgs.filter((m) => m.type === 'welcome' || m.type === 'position').map((m) => m.position as number);

describe('push', () => {
  it('position updates arrive and fall monotonically to ready as people ahead enter', async () => {
    await putEvent('mono', { rate: 20, burst: 1, ready_window_sec: 60, state: 'paused' });
    const ahead: string[] = [];
    for (let i = 0; i < 8; i++) ahead.push(await join('mono'));
    const me = await join('mono');
    const c = await connect(gw.url, me);
    const welcome = await c.next((m) => m.type === 'welcome');
    expect(welcome).toMatchObject({ v: 1, event_id: 'mono', status: 'waiting', position: 9, people_ahead: 8 });
    for (const f of ['eta_sec', 'eta_low', 'eta_high', 'confidence']) expect(typeof welcome[f]).toBe('number');
    await putEvent('mono', { state: 'open' });
    // everyone ahead enters as soon as they are ready
    const entering = (async () => {
      for (const t of ahead) {
        await waitFor('ahead ready', async () => (await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: t })).status === 200, 10_000, 20);
      }
    })();
    const ready = await c.next((m) => m.type === 'ready', 15_000);
    await entering;
    const seen = positions(c.messages);
    expect(seen.length).toBeGreaterThan(2);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeLessThanOrEqual(seen[i - 1]!);
    expect(seen[0]).toBe(9);
    expect(typeof ready.ready_deadline).toBe('string');
    const finalPos = await waitFor('position 1', async () => (positions(c.messages).at(-1) === 1 ? 1 : undefined), 5000);
    expect(finalPos).toBe(1);
    await c.close();
  });

  it('paused and resumed are pushed', async () => {
    await putEvent('pause', { rate: 0.01, burst: 1 });
    await join('pause'); // takes the only token
    const me = await join('pause');
    const c = await connect(gw.url, me);
    await c.next((m) => m.type === 'welcome');
    await putEvent('pause', { state: 'paused' });
    await c.next((m) => m.type === 'paused');
    await putEvent('pause', { state: 'open' });
    await c.next((m) => m.type === 'resumed');
    await putEvent('pause', { state: 'closed' });
    expect(await c.next((m) => m.type === 'paused' && m.event_state === 'closed')).toBeTruthy();
    await c.next((m) => m.type === 'position' && m.event_state === 'closed');
    await putEvent('pause', { state: 'open' });
    await c.next((m) => m.type === 'resumed' && m.event_state === 'open', 10_000, c.messages.length);
    await c.close();
  });
});

describe('enter and leave', () => {
  it('enter over the socket: admitted with a reservation token, then close 4000 (terminal)', async () => {
    await putEvent('sock-enter', { rate: 50, burst: 5 });
    const me = await join('sock-enter');
    const c = await connect(gw.url, me);
    await c.next((m) => m.type === 'ready' || (m.type === 'welcome' && m.status === 'ready'));
    c.send({ type: 'enter' });
    const adm = await c.next((m) => m.type === 'admitted');
    expect(typeof adm.reservation_token).toBe('string');
    expect(adm.ttl_sec).toBe(300);
    expect((await c.closed).code).toBe(4000);
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`)).body.status).toBe('admitted');
  });

  it('enter over HTTP while the socket is open: the socket hears admitted and closes 4000', async () => {
    await putEvent('http-enter', { rate: 50, burst: 5 });
    const me = await join('http-enter');
    const c = await connect(gw.url, me);
    await c.next((m) => m.type === 'ready' || (m.type === 'welcome' && m.status === 'ready'));
    const r = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: me });
    expect(r.status).toBe(200);
    await c.next((m) => m.type === 'admitted');
    expect((await c.closed).code).toBe(4000);
  });

  it('enter too early over the socket is an error message, not a close; leave closes 4001', async () => {
    await putEvent('early', { rate: 0.01, burst: 1 });
    await join('early');
    const me = await join('early');
    const c = await connect(gw.url, me);
    await c.next((m) => m.type === 'welcome');
    c.send({ type: 'enter' });
    expect(await c.next((m) => m.type === 'error')).toMatchObject({ code: 'NOT_READY', position: 2 });
    c.send({ type: 'ping' });
    await c.next((m) => m.type === 'pong');
    c.send({ type: 'leave' });
    await c.next((m) => m.type === 'left');
    expect((await c.closed).code).toBe(4001);
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`)).status).toBe(404);
  });

  it('frames sent right at open are answered after welcome, which is always first', async () => {
    await putEvent('early-frames', { rate: 1, burst: 1, state: 'paused' });
    await join('early-frames');
    const me = await join('early-frames');
    const c = await connect(gw.url, me);
    c.send({ type: 'ping' });
    c.send({ type: 'leave' });
    expect((await c.closed).code).toBe(4001);
    expect(c.messages[0]).toMatchObject({ type: 'welcome', position: 2 });
    expect(c.messages.map((m) => m.type)).toEqual(expect.arrayContaining(['pong', 'left']));
    expect(c.messages.findIndex((m) => m.type === 'pong')).toBeLessThan(c.messages.findIndex((m) => m.type === 'left'));
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`)).status).toBe(404);
  });

  it('unknown token closes 4004, a bad frame closes 4400, an admitted token closes 4000', async () => {
    const u = await connect(gw.url, 'nope.AAAAAAAAAAAAAAAAAAAAAA');
    expect((await u.closed).code).toBe(4004);
    const g = await connect(gw.url, 'garbage');
    expect((await g.closed).code).toBe(4004);
    await putEvent('bad', { rate: 0.01, burst: 1 });
    const me = await join('bad');
    const c = await connect(gw.url, me);
    await c.next((m) => m.type === 'welcome');
    c.ws.send('{"type":"teleport"}');
    expect((await c.closed).code).toBe(4400);
    // still in line: a bad client message does not cost the place
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`)).status).toBe(200);
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`)).body.ready_for_entry === true);
    await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: me });
    const again = await connect(gw.url, me);
    expect((await again.closed).code).toBe(4000);
  });
});

describe('socket liveness', () => {
  it('a closed socket frees its place after the grace and not before', async () => {
    await putEvent('grace', { rate: 0.01, burst: 1, reconnect_grace_sec: 2, state: 'paused' });
    const a = await join('grace');
    const b = await join('grace');
    const ca = await connect(gw.url, a);
    const cb = await connect(gw.url, b);
    await ca.next((m) => m.type === 'welcome');
    expect((await cb.next((m) => m.type === 'welcome')).position).toBe(2);
    // polls would count as heartbeats, so nobody polls here: watch b's pushes and the admin stats
    await sleep(3500); // longer than the grace while connected: nothing happens
    expect((await stats('grace')).in_line).toBe(2);
    const closedAt = Date.now();
    await ca.close();
    await sleep(1500);
    expect((await stats('grace')).in_line).toBe(2);
    expect(positions(cb.messages).at(-1)).toBe(2);
    const moved = await cb.next((m) => m.type === 'position' && m.position === 1, 5000);
    const after = Date.now() - closedAt;
    expect(moved.position).toBe(1);
    expect(after).toBeGreaterThanOrEqual(1950);
    expect(after).toBeLessThan(2000 + 50 + 1000);
    expect((await stats('grace')).expired_liveness_total).toBe(1);
    const gone = await call(gw.url, 'GET', `/api/v1/queue/status?token=${a}`);
    expect(gone.body.error).toMatchObject({ code: 'TOKEN_EXPIRED', reason: 'liveness' });
    await cb.close();
  });

  it('a reconnect within the grace keeps the place exactly', async () => {
    await putEvent('back', { rate: 0.01, burst: 1, reconnect_grace_sec: 2, state: 'paused' });
    const a = await join('back');
    const b = await join('back');
    const c = await join('back');
    const cb = await connect(gw.url, b);
    const cc = await connect(gw.url, c);
    const ca = await connect(gw.url, a);
    expect((await cb.next((m) => m.type === 'welcome')).position).toBe(2);
    await ca.next((m) => m.type === 'welcome');
    await cc.next((m) => m.type === 'welcome');
    await cb.close();
    await sleep(1200);
    const again = await connect(gw.url, b);
    expect((await again.next((m) => m.type === 'welcome')).position).toBe(2);
    await sleep(3000); // past the original grace: still there
    expect((await stats('back')).in_line).toBe(3);
    expect(positions(cc.messages).at(-1)).toBe(3);
    for (const x of [ca, cc, again]) await x.close();
  });

  it('a user whose socket closed but who keeps polling over HTTP keeps the place past the grace', async () => {
    await putEvent('fallback', { rate: 0.01, burst: 1, reconnect_grace_sec: 2, state: 'paused' });
    const a = await join('fallback');
    const b = await join('fallback');
    const ca = await connect(gw.url, a);
    await ca.next((m) => m.type === 'welcome');
    await ca.close(); // e.g. WebSockets blocked by a proxy from now on: the client falls back to polling
    const until = Date.now() + 4500; // more than twice the grace
    while (Date.now() < until) {
      const r = await call(gw.url, 'GET', `/api/v1/queue/status?token=${a}`);
      expect(r.status).toBe(200);
      expect(r.body.position).toBe(1);
      await sleep(700);
    }
    expect((await stats('fallback')).in_line).toBe(2);
    expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${b}`)).body.position).toBe(2);
  });
});

describe('formats', () => {
  it('msgpack and JSON clients get the same information', async () => {
    await putEvent('fmt', { rate: 5, burst: 1, state: 'paused' });
    await join('fmt');
    const me = await join('fmt');
    const j = await connect(gw.url, me, 'json');
    const m = await connect(gw.url, me, 'msgpack');
    expect(m.ws.protocol).toBe('waiting-room.v1.msgpack');
    expect(j.ws.protocol).toBe('waiting-room.v1.json');
    const wj = await j.next((x) => x.type === 'welcome');
    const wm = await m.next((x) => x.type === 'welcome');
    expect(wm).toEqual(wj);
    await putEvent('fmt', { state: 'open' });
    const rj = await j.next((x) => x.type === 'ready', 10_000);
    const rm = await m.next((x) => x.type === 'ready', 10_000);
    expect(rm).toEqual(rj);
    // a msgpack client may send msgpack frames
    m.ws.send(pack({ type: 'ping' }));
    await m.next((x) => x.type === 'pong');
    m.ws.send(pack({ type: 'enter' }));
    const aj = await j.next((x) => x.type === 'admitted');
    const am = await m.next((x) => x.type === 'admitted');
    expect(am).toEqual(aj);
    expect((await j.closed).code).toBe(4000);
    expect((await m.closed).code).toBe(4000);
  });
});

describe('HTTP polling from memory', () => {
  it('a poll for a user this instance holds is answered from memory, with the same position Redis has', async () => {
    await putEvent('mem', { rate: 0.01, burst: 1, state: 'paused' });
    const t: string[] = [];
    for (let i = 0; i < 5; i++) t.push(await join('mem'));
    await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${t[1]!}`);
    const metric = async () => {
      const text = (await call(gw.url, 'GET', '/metrics')).text;
      return Number(/realtime_status_answers_total\{source="memory"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const first = await call(gw.url, 'GET', `/api/v1/queue/status?token=${t[4]!}`); // from Redis, attaches
    expect(first.body.position).toBe(4);
    const before = await metric();
    // a tick message makes the memory view current: wait for the room's first one (a fixed 200 ms
    // was too short once in a fresh-clone run, while the browser tests loaded the machine)
    await waitFor('the user attached and a tick message in the room', async () => {
      const room = gw.gateway.realtime.roomFor('mem');
      return room && room.users.has(t[4]!) && room.lastTickAt > 0 ? true : undefined;
    }, 5000);
    const second = await call(gw.url, 'GET', `/api/v1/queue/status?token=${t[4]!}`);
    expect(await metric()).toBe(before + 1);
    expect(second.body).toMatchObject({ status: 'waiting', position: 4, people_ahead: 3 });
    // someone ahead leaves: the memory answer follows at the next tick
    await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${t[0]!}`);
    await waitFor('position 3 from memory', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${t[4]!}`)).body.position === 3, 3000);
  });
});

/** A Realtime of its own on this gateway's Redis (its store, or a wrapper of it), with a broker of its own; stop() stops both. */
async function localRealtime(o: { store?: QueueStore; sink: SocketSink; instanceId: string; attachConcurrency: number; metrics?: Metrics }): Promise<{ rt: Realtime; stop: () => Promise<void> }> {
  const { RedisBroker } = await import('../src/queue/broker.js');
  const { Realtime } = await import('../src/realtime/realtime.js');
  const { createMetrics } = await import('../src/metrics.js');
  const { createLogger } = await import('../src/log.js');
  const { Redis } = await import('ioredis');
  const g = gw.gateway;
  const broker = new RedisBroker(g.redis, () => (g.redis as InstanceType<typeof Redis>).duplicate({ enableOfflineQueue: true, enableAutoPipelining: false }), false, () => undefined);
  const options = { instanceId: o.instanceId, tickMs: 50, pollTimeoutMs: 60_000, reconnectGraceMs: 30_000, nearFront: 1000, attachConcurrency: o.attachConcurrency };
  const rt = new Realtime(o.store ?? g.store, broker, o.sink, options, createLogger('silent'), o.metrics ?? createMetrics());
  return {
    rt,
    stop: async () => {
      await rt.stop();
      await broker.close();
    },
  };
}

describe('fan-out while a socket closes', () => {
  it('a slow consumer closed in the middle of a push does not make the next socket of that user miss it', async () => {
    // The real Realtime and room on this gateway's Redis, with a socket layer
    // that behaves as uWS does for a slow consumer: the send that overflows
    // closes the socket, and its close handler runs synchronously, inside the
    // send loop.
    await putEvent('slow', { rate: 0.01, burst: 1, state: 'paused' });
    const token = await join('slow');
    const got: number[] = [];
    let rt: Realtime | undefined;
    const sink = {
      send: (id: number) => {
        got.push(id);
        if (id === 1) rt!.socketClosed('slow', token, 1); // overflow: closed on the spot
        return id !== 1;
      },
      close: () => undefined,
    };
    const local = await localRealtime({ sink, instanceId: 'fanout-test', attachConcurrency: 256 });
    rt = local.rt;
    try {
      const r = await rt.attach(token, true);
      if (!r.ok) throw new Error('attach failed');
      for (const id of [1, 2, 3]) rt.socketOpened(r.room, r.user, id);
      r.room.pushPosition(r.user, true);
      expect(got).toEqual([1, 2, 3]);
      expect(r.user.sockets).toEqual([2, 3]);
    } finally {
      await local.stop();
    }
  });
});

describe('attach reads in a storm', () => {
  it('are bounded per instance, and the ones still waiting when Redis stops answering fail at once (REDIS_UNAVAILABLE), without a read', async () => {
    await putEvent('storm-reads', { rate: 0.01, burst: 1, state: 'paused' });
    const [a, b, c] = [await join('storm-reads'), await join('storm-reads'), await join('storm-reads')];
    const g = gw.gateway;
    // the real store, with its status reads counted and held until released
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const reads: string[] = [];
    const store = Object.create(g.store) as typeof g.store;
    store.status = async (...args: Parameters<typeof g.store.status>) => {
      reads.push(args[0]);
      await held;
      return g.store.status(...args);
    };
    const { createMetrics } = await import('../src/metrics.js');
    const metrics = createMetrics();
    const { rt, stop } = await localRealtime({ store, sink: { send: () => true, close: () => undefined }, instanceId: 'reads-test', attachConcurrency: 1, metrics });
    try {
      const first = rt.attach(a, true);
      const second = rt.attach(b, true);
      const third = rt.attach(c, true);
      await sleep(50);
      expect(reads).toEqual([a]); // one in flight, two waiting their turn
      expect((await metrics.attachWaiting.get()).values[0]!.value).toBe(2);
      rt.storeAvailability(false);
      release();
      expect((await first).ok).toBe(true); // the read under way finishes
      await expect(second).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE' });
      await expect(third).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE' });
      expect(reads).toEqual([a]);
      expect((await metrics.attachWaiting.get()).values[0]!.value).toBe(0);
    } finally {
      await stop();
    }
  });
});

describe('positions that move', () => {
  it('people already called no longer count: position is 1 + those still waiting ahead, the same over HTTP, WebSocket and a recount', async () => {
    // burst 3 and a slow refill: the first three are called at once and do not enter
    await putEvent('called', { rate: 0.01, burst: 3, state: 'paused' });
    const ahead = [await join('called'), await join('called'), await join('called')];
    const waitingAhead = await join('called');
    const me = await join('called');
    const c = await connect(gw.url, me);
    expect((await c.next((m) => m.type === 'welcome')).position).toBe(5);
    await putEvent('called', { state: 'open' });
    // the three are called (ready, not entered): I move from 5 to 2 at once, not when they go through
    const moved = await c.next((m) => m.type === 'position' && m.position === 2, 5000);
    expect(moved).toMatchObject({ position: 2, people_ahead: 1, being_let_in: 3 });
    const polled = await call(gw.url, 'GET', `/api/v1/queue/status?token=${me}`);
    expect(polled.body).toMatchObject({ status: 'waiting', position: 2, people_ahead: 1, being_let_in: 3 });
    // the recount in Redis: ZRANK - ZCARD(ready) + 1
    const { redisClient } = await import('./helpers/harness.js');
    const { eventKeys } = await import('../src/redis/keys.js');
    const rc = redisClient(redis.address);
    try {
      const k = eventKeys(gw.gateway.config.redis.keyPrefix, 'called');
      const [rank, ready] = await Promise.all([rc.zrank(k.q, me), rc.zcard(k.ready)]);
      expect(rank! - ready + 1).toBe(2);
    } finally {
      rc.disconnect();
    }
    // a called user sees position 1 and its ready message says so too
    const first = await call(gw.url, 'GET', `/api/v1/queue/status?token=${ahead[0]!}`);
    expect(first.body).toMatchObject({ status: 'ready', position: 1, people_ahead: 0 });
    expect(waitingAhead).toBeTruthy();
    await c.close();
  });
});
