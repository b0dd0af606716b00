// Scenario 4 (several instances on one Redis) and scenario 5 (reconnect
// storm). K gateway instances share one Redis; N users per instance hold a
// WebSocket to it from client processes on 127.0.0.2, 127.0.0.3, ... (at most
// 4,000 sockets per process, far below the 20,000 open-file limit).
//  - memory and connect rate per instance;
//  - latency: the head of the line leaves; from the tick that published it to
//    each socket's update, on every instance;
//  - storm: every socket is dropped and reconnected at once (to the same
//    instance); time until every user is welcomed again with the position
//    Redis says is theirs (ZRANK + 1; the event is paused so nothing moves).
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { unpack } from 'msgpackr';
import { eventKeys } from '../src/redis/keys.js';
import { decodeTick } from '../src/queue/broker.js';
import { Client, PREFIX, here, pct, pool, putEvent, round, rssKb, sleep, sourceAddress, startGateway, stopChild, track, type Proc } from './lib.js';

export interface MultiOptions {
  redisAddress: string;
  instances: number;
  perInstance: number;
  rounds: number;
  storm: boolean;
}

const PER_WORKER = 4000;

export async function runMulti(o: MultiOptions): Promise<Record<string, unknown>> {
  const EVENT = 'storm';
  const total = o.instances * o.perInstance;
  const gws: Proc[] = [];
  const workers: Array<{ w: ChildProcess; inst: number; tokens: string[] }> = [];
  const [host, port] = o.redisAddress.split(':');
  const redis = new Redis({ host, port: Number(port), enableAutoPipelining: true });
  const sub = new Redis({ host, port: Number(port) });
  try {
    for (let i = 0; i < o.instances; i++) {
      gws.push(
        await startGateway(o.redisAddress, {
          QUEUE_TICK_MS: '250',
          QUEUE_RECONNECT_GRACE_SEC: '120',
          REALTIME_NEAR_FRONT: '1000000',
          WS_IDLE_TIMEOUT_SEC: '120',
          WS_MAX_CONNECTIONS: String(o.perInstance + 1000),
        }),
      );
    }
    await putEvent(gws[0]!.url, EVENT, { rate: 1, burst: 1, reconnect_grace_sec: 120, state: 'paused' });
    // the heads whose leaves drive the latency rounds, then everyone else (joins spread over the instances)
    const clients = gws.map((g) => new Client(g.url, 32));
    const joinOn = async (k: number): Promise<string> =>
      (JSON.parse((await clients[k % clients.length]!.req('POST', '/api/v1/queue/join', `{"event_id":"${EVENT}"}`)).body) as { waiting_token: string }).waiting_token;
    const heads: string[] = [];
    for (let r = 0; r < o.rounds; r++) heads.push(await joinOn(r));
    const t0 = Date.now();
    const tokens = await pool(Array.from({ length: total }, (_, i) => i), 96, (i) => joinOn(i));
    const joinSec = (Date.now() - t0) / 1000;
    for (const c of clients) c.close();
    await sleep(2000);
    const rssBefore = gws.map((g) => rssKb(g.pid));

    // attach: instance i gets tokens [i*per, (i+1)*per), over ceil(per/PER_WORKER) processes
    for (let i = 0; i < o.instances; i++) {
      const mine = tokens.slice(i * o.perInstance, (i + 1) * o.perInstance);
      for (let s = 0; s < mine.length; s += PER_WORKER) {
        workers.push({ w: track(fork(join(here, 'storm-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })), inst: i, tokens: mine.slice(s, s + PER_WORKER) });
      }
    }
    const onceMsg = <T>(w: ChildProcess, kind: string, pred: (m: T & { kind: string }) => boolean = () => true): Promise<T> =>
      new Promise((resolve) => {
        const h = (m: T & { kind: string }): void => {
          if (m.kind === kind && pred(m)) {
            w.off('message', h);
            resolve(m);
          }
        };
        w.on('message', h);
      });
    const connectStart = Date.now();
    const readies = workers.map((x) => onceMsg<{ welcomed: number; failed: number; retries: number }>(x.w, 'ready'));
    workers.forEach((x, j) => x.w.send({ kind: 'start', url: gws[x.inst]!.url.replace('http', 'ws'), tokens: x.tokens, localAddress: sourceAddress(j) }));
    const ready = await Promise.all(readies);
    const connectMs = Date.now() - connectStart;
    const welcomed = ready.reduce((a, r) => a + r.welcomed, 0);
    await sleep(5000);
    const rssAfter = gws.map((g) => rssKb(g.pid));

    // latency rounds
    const channel = eventKeys(PREFIX, EVENT).channel;
    const tickTimes: number[] = [];
    sub.on('messageBuffer', (_c: Buffer, data: Buffer) => {
      const m = decodeTick(data);
      if (m.exits.length > 0) tickTimes.push(m.redisTimeMs);
    });
    await sub.subscribe(channel);
    const all: number[] = [];
    const lastPerRound: number[] = [];
    let missing = 0;
    for (let r = 0; r < o.rounds; r++) {
      const res = workers.map((x) => onceMsg<{ times: number[] }>(x.w, 'round', (m) => (m as unknown as { round: number }).round === r));
      workers.forEach((x) => x.w.send({ kind: 'round', round: r }));
      await sleep(200);
      const before = tickTimes.length;
      await fetch(`${gws[r % gws.length]!.url}/api/v1/queue/leave?token=${encodeURIComponent(heads[r]!)}`, { method: 'DELETE' });
      const times = (await Promise.all(res)).flatMap((x) => x.times);
      const tt = tickTimes[before];
      if (tt === undefined) throw new Error('no tick message seen for the round');
      const got = times.filter((t) => t > 0).map((t) => t - tt);
      missing += times.length - got.length;
      all.push(...got);
      lastPerRound.push(Math.max(...got));
      await sleep(500);
    }

    const out: Record<string, unknown> = {
      instances: o.instances,
      per_instance: o.perInstance,
      client_processes: workers.length,
      joins_sec: round(joinSec),
      welcomed,
      failed: ready.reduce((a, r) => a + r.failed, 0),
      connect_retries: ready.reduce((a, r) => a + r.retries, 0),
      connect_ms: connectMs,
      connect_per_sec: Math.round((welcomed / connectMs) * 1000),
      rss_before_mb: rssBefore.map((x) => Math.round(x / 1024)),
      rss_after_mb: rssAfter.map((x) => Math.round(x / 1024)),
      rss_per_user_kb: rssAfter.map((a, i) => round((a - rssBefore[i]!) / o.perInstance)),
      tick_to_update_p50_ms: pct(all, 50),
      tick_to_update_p99_ms: pct(all, 99),
      tick_to_last_update_ms: lastPerRound,
      updates_missing: missing,
    };

    if (o.storm) {
      // the truth after the rounds: rank in Redis (paused event: nothing moves during the storm)
      const q = eventKeys(PREFIX, EVENT).q;
      const storms = workers.map((x) =>
        onceMsg<{ t0: number; welcomed: number; failed: number; retries: number; reasons: Record<string, number>; welcomeAt: number[]; welcomePos: number[]; before: number[] }>(x.w, 'storm'),
      );
      const sent = Date.now();
      // how long each gateway takes to answer a plain request during the storm: its event loop's delay
      const probeMax = gws.map(() => 0);
      let probing = true;
      const probes = gws.map(async (g, i) => {
        while (probing) {
          const t = Date.now();
          await fetch(`${g.url}/healthz`).catch(() => undefined);
          probeMax[i] = Math.max(probeMax[i]!, Date.now() - t);
          await sleep(100);
        }
      });
      workers.forEach((x) => x.w.send({ kind: 'storm' }));
      const res = await Promise.all(storms);
      probing = false;
      await Promise.all(probes);
      let right = 0;
      let wrong = 0;
      let lastRight = 0;
      const recon: number[] = [];
      for (let j = 0; j < workers.length; j++) {
        const r = res[j]!;
        const ranks = await Promise.all(workers[j]!.tokens.map((t) => redis.zrank(q, t)));
        r.welcomeAt.forEach((at, i) => {
          if (!at) return;
          recon.push(at - sent);
          if (r.welcomePos[i] === (ranks[i] ?? -2) + 1) {
            right++;
            lastRight = Math.max(lastRight, at);
          } else wrong++;
        });
      }
      out.storm = {
        sockets: total,
        welcomed_again: res.reduce((a, r) => a + r.welcomed, 0),
        failed: res.reduce((a, r) => a + Math.max(0, r.failed), 0),
        retries: res.reduce((a, r) => a + r.retries, 0),
        retry_reasons: res.reduce<Record<string, number>>((a, r) => {
          for (const [k, v] of Object.entries(r.reasons)) a[k] = (a[k] ?? 0) + v;
          return a;
        }, {}),
        right_position: right,
        wrong_position: wrong,
        all_back_right_after_ms: right === total ? lastRight - sent : null,
        reconnect_p50_ms: pct(recon, 50),
        reconnect_p99_ms: pct(recon, 99),
        in_line_after: await redis.zcard(q),
        gateway_probe_max_ms: probeMax,
        client_lag_max_ms: res.map((r) => Math.round((r as { lagMaxMs?: number }).lagMaxMs ?? 0)),
      };
    }
    return out;
  } finally {
    for (const x of workers) {
      try {
        x.w.send({ kind: 'stop' });
      } catch {
        /* already gone */
      }
    }
    await sleep(300);
    for (const x of workers) await stopChild(x.w, 1000);
    sub.disconnect();
    redis.disconnect();
    for (const g of gws) await g.stop();
  }
}
