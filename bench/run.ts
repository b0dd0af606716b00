// `npm run bench` [-- --quick] [-- --only=join,status,flow,ws,multi,eta,adaptive]
//
// Starts Redis, the gateway and a bare uWebSockets.js baseline on loopback,
// runs each scenario, prints one table and writes bench/results/<date>.json
// (and .md). Every HTTP figure is also given as a ratio to the baseline,
// measured with the same load generator right before the gateway run, because
// the machine is shared and noisy. The join and status scenarios run with two
// generators: autocannon (in this process; it saturates near 20,000 req/s
// here, so its ratios flatter the gateway) and wrk (C, bench/wrk.ts), with
// the gateway's CPU time per request from /proc.
// Bounded in time; every child process is stopped at the end, on errors and
// on Ctrl-C.
import { fork, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import autocannon, { type Result } from 'autocannon';
import { Redis, Cluster } from 'ioredis';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import { startCluster, type LocalCluster } from '../src/redis/local-cluster.js';
import { eventKeys } from '../src/redis/keys.js';
import { runEta } from './eta-sim.js';
import { runMulti } from './ws-storm.js';
import { wrkShot, type WrkShot } from './wrk.js';
import {
  Client,
  PREFIX,
  cpuMs,
  here,
  installCleanup,
  loadavg,
  pct,
  pool,
  putEvent,
  root,
  round,
  sleep,
  sourceAddress,
  startBaseline,
  startGateway,
  stopChild,
  track,
  type Proc,
} from './lib.js';

const quick = process.argv.includes('--quick');
// --cluster: the same scenarios against a local 3-primary/3-replica Redis Cluster (events spread over shards)
const clusterMode = process.argv.includes('--cluster');
const only = (process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',') ?? []).filter(Boolean);
const want = (s: string): boolean => only.length === 0 || only.includes(s);
const P = quick
  ? // about a minute and a half: every scenario once, small (the full run has the figures that matter)
    { dur: 3, warm: 1, conns: 64, pollUsers: 1000, flowUsers: 1000, flowArrival: 3, flowRate: 250, ws: [1000], wsRounds: 2, multi: { instances: 3, perInstance: 1000 }, eta: { users: 1000, joinSec: 1, rate: 80, rateAfter: 40, limitSec: 60 } }
  : { dur: 30, warm: 3, conns: 64, pollUsers: 10000, flowUsers: 10000, flowArrival: 10, flowRate: 500, ws: [1000, 5000, 15000], wsRounds: 5, multi: { instances: 3, perInstance: 15000 }, eta: { users: 20000, joinSec: 20, rate: 150, rateAfter: 75, limitSec: 330 } };

interface Row {
  scenario: string;
  metric: string;
  value: number | string;
  baseline?: number | string;
  ratio?: number;
  target?: string;
  pass?: boolean;
}
const rows: Row[] = [];
const results: Record<string, unknown> = {};
const say = (m: string): void => void process.stderr.write(`[bench] ${m}\n`);

interface Shot {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  codes: Record<string, number>;
  gw_cpu_pct?: number;
  redis_cpu_pct?: number;
  loadgen_cpu_pct: number;
}

/** One autocannon run; CPU of the target (and Redis) and of this process over the run, in % of one core. */
async function shot(opts: Parameters<typeof autocannon>[0], pids: { target?: number; redis?: number } = {}): Promise<Shot> {
  const c0 = { t: pids.target ? cpuMs(pids.target) : 0, r: pids.redis ? cpuMs(pids.redis) : 0, me: process.cpuUsage() };
  const w0 = Date.now();
  const r: Result = await autocannon({ timeout: 10, ...opts });
  const wall = Date.now() - w0;
  const me = process.cpuUsage(c0.me);
  return {
    rps: Math.round(r.requests.average),
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
    ok2xx: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    codes: Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])),
    ...(pids.target ? { gw_cpu_pct: Math.round(((cpuMs(pids.target) - c0.t) / wall) * 100) } : {}),
    ...(pids.redis ? { redis_cpu_pct: Math.round(((cpuMs(pids.redis) - c0.r) / wall) * 100) } : {}),
    loadgen_cpu_pct: Math.round(((me.user + me.system) / 1000 / wall) * 100),
  };
}

function redisPid(port: number): number | undefined {
  // the embedded redis-server is our child; find it by its port in /proc (no shell tools)
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.startsWith('redis-server') && cmd.includes(`--port\0${port}\0`)) return Number(d);
      if (cmd.includes('redis-server') && cmd.includes(`:${port}`)) return Number(d);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

async function zcard(redis: Redis | Cluster, events: string[]): Promise<number> {
  let n = 0;
  for (const e of events) n += await redis.zcard(eventKeys(PREFIX, e).q);
  return n;
}

async function freshGateway(redis: Redis | Cluster, address: string, extra: Record<string, string> = {}): Promise<Proc> {
  if (redis instanceof Cluster) await Promise.all(redis.nodes('master').map((n) => n.flushall()));
  else await redis.flushall();
  return startGateway(address, clusterMode ? { REDIS_CLUSTER_MODE: 'true', ...extra } : extra);
}

const JOIN_BODY = '{"event_id":"j1"}';

async function main(): Promise<void> {
  installCleanup();
  const startedAt = new Date();
  const meta = {
    date: startedAt.toISOString(),
    // `npm run bench` is the bootstrap (install/build) followed by exactly this
    command: `node dist/bench/run.js${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    quick,
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model,
    loadavg_start: loadavg(),
    loadavg_end: '',
    params: P,
  };
  say(`start ${meta.date} loadavg ${meta.loadavg_start}${quick ? ' (quick)' : ''}`);
  let localCluster: LocalCluster | undefined;
  let emb: { address: string; port: number; host: string; stop(): Promise<void> };
  if (clusterMode) {
    localCluster = await startCluster();
    emb = { address: localCluster.seeds, port: localCluster.nodes[0]!.port, host: '127.0.0.1', stop: () => localCluster!.stop() };
  } else emb = await startEmbeddedRedis();
  const rpid = clusterMode ? undefined : redisPid(emb.port);
  const redis: Redis | Cluster = localCluster ? localCluster.client() : new Redis({ host: emb.host, port: emb.port });
  const base = await startBaseline();
  let gw: Proc | undefined;
  try {
    // ---- (1) join throughput
    if (want('join')) {
      gw = await freshGateway(redis, emb.address);
      await putEvent(gw.url, 'warm', { rate: 1, burst: 1, state: 'paused' });
      await putEvent(gw.url, 'j1', { rate: 1, burst: 1, state: 'paused' });
      const many = Array.from({ length: 100 }, (_, i) => `m${i}`);
      for (const e of many) await putEvent(gw.url, e, { rate: 1, burst: 1, state: 'paused' });
      const post = { method: 'POST', headers: { 'content-type': 'application/json' } };
      say('join: warm-up');
      await shot({ url: `${base.url}/api/v1/queue/join`, ...post, body: JOIN_BODY, connections: P.conns, duration: P.warm });
      await shot({ url: `${gw.url}/api/v1/queue/join`, ...post, body: '{"event_id":"warm"}', connections: P.conns, duration: P.warm });
      say(`join: baseline ${P.dur}s`);
      const b = await shot({ url: `${base.url}/api/v1/queue/join`, ...post, body: JOIN_BODY, connections: P.conns, duration: P.dur }, { target: base.pid });
      say(`join: gateway, one event, ${P.dur}s`);
      const one = await shot({ url: `${gw.url}/api/v1/queue/join`, ...post, body: JOIN_BODY, connections: P.conns, duration: P.dur }, { target: gw.pid, redis: rpid });
      await sleep(1000);
      const inRedisOne = await zcard(redis, ['j1']);
      say(`join: gateway, 100 events, ${P.dur}s`);
      let k = 0;
      const spread = await shot(
        {
          url: gw.url,
          connections: P.conns,
          duration: P.dur,
          requests: [{ method: 'POST', path: '/api/v1/queue/join', headers: { 'content-type': 'application/json' }, setupRequest: (req) => ({ ...req, body: `{"event_id":"m${k++ % 100}"}` }) }],
        },
        { target: gw.pid, redis: rpid },
      );
      await sleep(1000);
      const inRedisSpread = await zcard(redis, many);
      results.join = {
        baseline: b,
        one_event: { ...one, in_redis_after: inRedisOne, all_202_in_line: inRedisOne >= one.ok2xx, in_redis_minus_acked: inRedisOne - one.ok2xx },
        hundred_events: { ...spread, in_redis_after: inRedisSpread, all_202_in_line: inRedisSpread >= spread.ok2xx, in_redis_minus_acked: inRedisSpread - spread.ok2xx },
      };
      for (const [name, s, inR] of [['join, 1 event', one, inRedisOne], ['join, 100 events', spread, inRedisSpread]] as const) {
        const errs = s.errors + s.timeouts + s.non2xx;
        rows.push({ scenario: name, metric: 'req/s (autocannon)', value: s.rps, baseline: b.rps, ratio: round(s.rps / b.rps), target: '>= 30000, ratio >= 0.6', pass: s.rps >= 30000 && s.rps / b.rps >= 0.6 });
        rows.push({ scenario: name, metric: 'p99 ms', value: s.p99, baseline: b.p99, target: '<= 25', pass: s.p99 <= 25 });
        rows.push({ scenario: name, metric: 'errors (non-2xx+err+timeout)', value: errs, target: '0', pass: errs === 0 });
        rows.push({ scenario: name, metric: '202s acked / in Redis after', value: `${s.ok2xx} / ${inR}`, target: 'all in line', pass: inR >= s.ok2xx });
        rows.push({ scenario: name, metric: 'CPU % gw / redis / loadgen', value: `${s.gw_cpu_pct} / ${s.redis_cpu_pct} / ${s.loadgen_cpu_pct}`, baseline: `${b.gw_cpu_pct} / - / ${b.loadgen_cpu_pct}` });
      }
      // the same with wrk: baseline, then the gateway (one event, then 100)
      say(`join: wrk baseline ${P.dur}s`);
      const wb = await wrkShot({ url: base.url, method: 'POST', paths: ['/api/v1/queue/join'], bodies: [JOIN_BODY], connections: P.conns, durationSec: P.dur }, { target: base.pid });
      const before1 = await zcard(redis, ['j1']);
      say(`join: wrk gateway, one event, ${P.dur}s`);
      const w1 = await wrkShot({ url: gw.url, method: 'POST', paths: ['/api/v1/queue/join'], bodies: [JOIN_BODY], connections: P.conns, durationSec: P.dur }, { target: gw.pid, redis: rpid });
      await sleep(1000);
      const inR1 = (await zcard(redis, ['j1'])) - before1;
      const beforeMany = await zcard(redis, many);
      say(`join: wrk gateway, 100 events, ${P.dur}s`);
      const w100 = await wrkShot(
        { url: gw.url, method: 'POST', paths: many.map(() => '/api/v1/queue/join'), bodies: many.map((e) => `{"event_id":"${e}"}`), connections: P.conns, durationSec: P.dur },
        { target: gw.pid, redis: rpid },
      );
      await sleep(1000);
      const inR100 = (await zcard(redis, many)) - beforeMany;
      (results.join as Record<string, unknown>).wrk = { baseline: wb, one_event: { ...w1, in_redis_after: inR1 }, hundred_events: { ...w100, in_redis_after: inR100 } };
      for (const [name, s, inR] of [['join, 1 event', w1, inR1], ['join, 100 events', w100, inR100]] as const) wrkRows(name, s, wb, { rps: 30000, ratio: 0.6, cpuUs: 35 }, `${s.requests - s.non2xx} / ${inR}`);
      await gw.stop();
      gw = undefined;
    }

    // ---- (2) status polls for users already in line
    if (want('status')) {
      gw = await freshGateway(redis, emb.address);
      await putEvent(gw.url, 'poll', { rate: 1, burst: 1, state: 'paused' });
      const c = new Client(gw.url, 64);
      say(`status: ${P.pollUsers} users join`);
      const tokens = await pool(Array.from({ length: P.pollUsers }), 64, async () => {
        const r = await c.req('POST', '/api/v1/queue/join', '{"event_id":"poll"}');
        return (JSON.parse(r.body) as { waiting_token: string }).waiting_token;
      });
      c.close();
      const paths = tokens.map((t) => `/api/v1/queue/status?token=${encodeURIComponent(t)}`);
      let i = 0;
      const reqs = [{ method: 'GET', setupRequest: (req: { path?: string }) => ({ ...req, path: paths[i++ % paths.length] }) }];
      say('status: warm-up (every user polls once)');
      await shot({ url: `${base.url}/api/v1/queue/status?token=baseline.0.x`, connections: P.conns, duration: P.warm });
      await shot({ url: gw.url, connections: P.conns, duration: Math.max(P.warm, 2), requests: reqs });
      say(`status: baseline ${P.dur}s`);
      const b = await shot({ url: `${base.url}/api/v1/queue/status?token=baseline.0.x`, connections: P.conns, duration: P.dur }, { target: base.pid });
      say(`status: gateway ${P.dur}s`);
      const m0 = await (await fetch(`${gw.url}/metrics`)).text();
      const s = await shot({ url: gw.url, connections: P.conns, duration: P.dur, requests: reqs }, { target: gw.pid, redis: rpid });
      const m1 = await (await fetch(`${gw.url}/metrics`)).text();
      const src = (m: string, k: string): number => Number(new RegExp(`realtime_status_answers_total\\{source="${k}"\\} (\\S+)`).exec(m)?.[1] ?? 0);
      const fromMemory = src(m1, 'memory') - src(m0, 'memory');
      const fromRedis = src(m1, 'redis') - src(m0, 'redis');
      results.status = { users: P.pollUsers, baseline: b, gateway: { ...s, answered_from_memory: fromMemory, answered_from_redis: fromRedis } };
      const errs = s.errors + s.timeouts + s.non2xx;
      rows.push({ scenario: `status poll (${P.pollUsers} in line)`, metric: 'req/s (autocannon)', value: s.rps, baseline: b.rps, ratio: round(s.rps / b.rps), target: 'ratio >= 0.8', pass: s.rps / b.rps >= 0.8 });
      rows.push({ scenario: `status poll (${P.pollUsers} in line)`, metric: 'p99 ms', value: s.p99, baseline: b.p99, target: '<= 10', pass: s.p99 <= 10 });
      rows.push({ scenario: `status poll (${P.pollUsers} in line)`, metric: 'errors', value: errs, target: '0', pass: errs === 0 });
      rows.push({ scenario: `status poll (${P.pollUsers} in line)`, metric: 'answered memory / redis', value: `${fromMemory} / ${fromRedis}` });
      rows.push({ scenario: `status poll (${P.pollUsers} in line)`, metric: 'CPU % gw / redis / loadgen', value: `${s.gw_cpu_pct} / ${s.redis_cpu_pct} / ${s.loadgen_cpu_pct}`, baseline: `${b.gw_cpu_pct} / - / ${b.loadgen_cpu_pct}` });
      say(`status: wrk baseline ${P.dur}s`);
      const wb = await wrkShot({ url: base.url, method: 'GET', paths: ['/api/v1/queue/status?token=baseline.0.x'], connections: P.conns, durationSec: P.dur }, { target: base.pid });
      say(`status: wrk gateway ${P.dur}s`);
      const wm0 = await (await fetch(`${gw.url}/metrics`)).text();
      const ws = await wrkShot({ url: gw.url, method: 'GET', paths, connections: P.conns, durationSec: P.dur }, { target: gw.pid, redis: rpid });
      const wm1 = await (await fetch(`${gw.url}/metrics`)).text();
      (results.status as Record<string, unknown>).wrk = { baseline: wb, gateway: { ...ws, answered_from_memory: src(wm1, 'memory') - src(wm0, 'memory'), answered_from_redis: src(wm1, 'redis') - src(wm0, 'redis') } };
      wrkRows(`status poll (${P.pollUsers} in line)`, ws, wb, { ratio: 0.8, cpuUs: 20 }, `${src(wm1, 'memory') - src(wm0, 'memory')} / ${src(wm1, 'redis') - src(wm0, 'redis')}`);
      await gw.stop();
      gw = undefined;
    }

    // ---- (3) mixed launch burst, k6 flow (join, poll every 2-4 s, enter)
    if (want('flow')) {
      gw = await freshGateway(redis, emb.address);
      await putEvent(gw.url, 'launch', { rate: P.flowRate, burst: Math.ceil(P.flowRate / 2), state: 'open' });
      const flow = async (url: string, pid: number): Promise<Record<string, unknown>> => {
        const W = 2;
        const c0 = cpuMs(pid);
        const t0 = Date.now();
        const ws = Array.from({ length: W }, () => track(fork(join(here, 'flow-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })));
        const done = ws.map((w) => new Promise<Record<string, unknown>>((r) => w.once('message', (m: Record<string, unknown>) => r(m))));
        const limitMs = (P.flowArrival + P.flowUsers / P.flowRate) * 1000 + 20_000;
        ws.forEach((w, k) => w.send({ kind: 'start', url, users: Math.ceil(P.flowUsers / W), arrivalSec: P.flowArrival, eventId: 'launch', localAddress: sourceAddress(k), limitMs }));
        const parts = (await Promise.all(done)) as Array<{ lat: Record<string, number[]>; codes: Record<string, number>; errors: number; completed: number; notReady: number; waits: number[]; users: number }>;
        const wall = Date.now() - t0;
        for (const w of ws) await stopChild(w, 1000);
        const cat = (k: string): number[] => parts.flatMap((p) => p.lat[k] ?? []);
        const codes: Record<string, number> = {};
        for (const p of parts) for (const [k, v] of Object.entries(p.codes)) codes[k] = (codes[k] ?? 0) + v;
        const lat = (k: string): Record<string, number> => {
          const xs = cat(k);
          return { n: xs.length, p50: round(pct(xs, 50)), p95: round(pct(xs, 95)), p99: round(pct(xs, 99)), max: round(Math.max(...xs)) };
        };
        const total = ['join', 'status', 'enter'].reduce((a, k) => a + cat(k).length, 0);
        const waits = parts.flatMap((p) => p.waits);
        return {
          users: parts.reduce((a, p) => a + p.users, 0),
          completed: parts.reduce((a, p) => a + p.completed, 0),
          errors: parts.reduce((a, p) => a + p.errors, 0),
          enter_not_ready_retries: parts.reduce((a, p) => a + p.notReady, 0),
          codes,
          join: lat('join'),
          status: lat('status'),
          enter: lat('enter'),
          all_requests: total,
          req_per_sec: Math.round((total / wall) * 1000),
          wall_sec: round(wall / 1000),
          join_to_admitted_p50_sec: round(pct(waits, 50) / 1000),
          join_to_admitted_p95_sec: round(pct(waits, 95) / 1000),
          target_cpu_pct: Math.round(((cpuMs(pid) - c0) / wall) * 100),
        };
      };
      say(`flow: baseline (${P.flowUsers} users over ${P.flowArrival}s, simulated line at ${P.flowRate}/s)`);
      await fetch(`${base.url}/bench/flow?rate=${P.flowRate}`, { method: 'POST' });
      const b = await flow(base.url, base.pid);
      say(`flow: gateway (${P.flowUsers} users over ${P.flowArrival}s, rate ${P.flowRate}/s)`);
      const g = await flow(gw.url, gw.pid);
      results.flow = { users: P.flowUsers, arrival_sec: P.flowArrival, rate: P.flowRate, baseline: b, gateway: g };
      const sc = `launch flow (${P.flowUsers} users, ${P.flowRate}/s)`;
      const gl = (k: string) => g[k] as Record<string, number>;
      const bl = (k: string) => b[k] as Record<string, number>;
      rows.push({ scenario: sc, metric: 'admitted / users', value: `${g.completed} / ${g.users}`, baseline: `${b.completed} / ${b.users}`, target: 'all', pass: g.completed === g.users });
      rows.push({ scenario: sc, metric: 'network errors + 5xx', value: (g.errors as number) + Object.entries(g.codes as Record<string, number>).filter(([k]) => / 5\d\d$/.test(k)).reduce((a, [, v]) => a + v, 0), target: '0' });
      for (const k of ['join', 'status', 'enter']) rows.push({ scenario: sc, metric: `${k} p99 ms (p50)`, value: `${gl(k).p99} (${gl(k).p50})`, baseline: `${bl(k).p99} (${bl(k).p50})` });
      rows.push({ scenario: sc, metric: 'req/s (open loop, paced)', value: g.req_per_sec as number, baseline: b.req_per_sec as number, ratio: round((g.req_per_sec as number) / (b.req_per_sec as number)) });
      rows.push({ scenario: sc, metric: 'join->admitted p50/p95 s', value: `${g.join_to_admitted_p50_sec} / ${g.join_to_admitted_p95_sec}`, baseline: `${b.join_to_admitted_p50_sec} / ${b.join_to_admitted_p95_sec}` });
      await gw.stop();
      gw = undefined;
    }
    await base.stop();

    // ---- (4) WebSocket scale on one instance (bench/ws-scale.ts, its own Redis and gateway)
    if (want('ws')) {
      const wsRuns: Record<string, unknown>[] = [];
      for (const n of P.ws) {
        const workers = Math.max(2, Math.ceil(n / 4000));
        say(`ws: ${n} sockets, ${workers} client processes, ${P.wsRounds} rounds`);
        const child = track(spawn(process.execPath, [join(here, 'ws-scale.js'), String(n), String(workers), String(P.wsRounds)], { stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
        let out = '';
        let err = '';
        child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
        child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
        const timer = setTimeout(() => void stopChild(child, 1000), 240_000);
        const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
        clearTimeout(timer);
        const start = out.indexOf('{');
        if (code !== 0 || start < 0) {
          say(`ws ${n}: failed (exit ${code}): ${err.slice(-800)}`);
          wsRuns.push({ users: n, failed: true, exit: code, stderr: err.slice(-2000) });
          rows.push({ scenario: `ws ${n} sockets / 1 instance`, metric: 'run', value: `failed (exit ${code})` });
          continue;
        }
        const r = JSON.parse(out.slice(start)) as Record<string, number | number[]>;
        wsRuns.push(r);
        const sc = `ws ${n} sockets / 1 instance`;
        const last = r.tick_to_last_update_ms as number[];
        rows.push({ scenario: sc, metric: 'welcomed / failed', value: `${r.welcomed} / ${r.failed}` });
        rows.push({ scenario: sc, metric: 'connects/s', value: r.connect_per_sec as number });
        rows.push({ scenario: sc, metric: 'RSS KB per attached user', value: r.rss_per_user_kb as number, target: '<= 6', pass: (r.rss_per_user_kb as number) <= 6 });
        rows.push({
          scenario: sc,
          metric: 'tick->update p50 / p99 ms (all sockets)',
          value: `${r.tick_to_update_p50_ms} / ${r.tick_to_update_p99_ms}`,
          target: n >= 15000 ? 'p99 <= 250' : undefined,
          pass: n >= 15000 ? (r.tick_to_update_p99_ms as number) <= 250 : undefined,
        });
        rows.push({ scenario: sc, metric: 'tick->last update per round ms', value: `p50 ${pct(last, 50)} / max ${Math.max(...last)}`, target: undefined });
        rows.push({ scenario: sc, metric: 'updates missing', value: r.updates_missing as number, target: '0', pass: r.updates_missing === 0 });
      }
      results.ws = wsRuns;
    }

    // ---- (4b, 5) several instances on one Redis, then a reconnect storm
    if (want('multi')) {
      await redis.flushall();
      const { instances, perInstance } = P.multi;
      say(`multi: ${instances} instances x ${perInstance} sockets on one Redis, then a reconnect storm`);
      try {
        const m = await runMulti({ redisAddress: emb.address, instances, perInstance, rounds: 3, storm: true });
        results.multi = m;
        const sc = `ws ${instances} x ${perInstance} sockets, 1 Redis`;
        const rss = m.rss_per_user_kb as number[];
        rows.push({ scenario: sc, metric: 'welcomed / failed (retries)', value: `${m.welcomed} / ${m.failed} (${m.connect_retries})` });
        rows.push({ scenario: sc, metric: 'connects/s (all instances)', value: m.connect_per_sec as number });
        rows.push({ scenario: sc, metric: 'RSS KB per attached user, per instance', value: rss.join(' / '), target: '<= 6', pass: rss.every((x) => x <= 6) });
        rows.push({ scenario: sc, metric: 'tick->update p50 / p99 ms (all sockets)', value: `${m.tick_to_update_p50_ms} / ${m.tick_to_update_p99_ms}` });
        rows.push({ scenario: sc, metric: 'tick->last update per round ms', value: (m.tick_to_last_update_ms as number[]).join(', ') });
        rows.push({ scenario: sc, metric: 'updates missing', value: m.updates_missing as number, target: '0', pass: m.updates_missing === 0 });
        const st = m.storm as Record<string, number | null>;
        const sc5 = `reconnect storm, ${instances * perInstance} sockets`;
        rows.push({ scenario: sc5, metric: 'back with right position / wrong / failed', value: `${st.right_position} / ${st.wrong_position} / ${st.failed}` });
        rows.push({ scenario: sc5, metric: 'all back, right position, after ms', value: st.all_back_right_after_ms ?? 'not all', target: '<= 20000', pass: st.all_back_right_after_ms !== null && st.all_back_right_after_ms! <= 20_000 });
        rows.push({ scenario: sc5, metric: 'reconnect p50 / p99 ms (retries)', value: `${st.reconnect_p50_ms} / ${st.reconnect_p99_ms} (${st.retries})` });
        rows.push({ scenario: sc5, metric: 'failed attempts by reason', value: Object.entries((m.storm as { retry_reasons?: Record<string, number> }).retry_reasons ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none' });
        rows.push({ scenario: sc5, metric: 'in line after (expected)', value: `${st.in_line_after} (${instances * perInstance})`, pass: st.in_line_after === instances * perInstance });
      } catch (err) {
        say(`multi failed: ${(err as Error).message}`);
        results.multi = { failed: String((err as Error).stack ?? err) };
        rows.push({ scenario: 'ws multi-instance + storm', metric: 'run', value: `failed: ${(err as Error).message.slice(0, 80)}` });
      }
    }

    // ---- (6) ETA accuracy, time-compressed sale
    if (want('eta')) {
      await redis.flushall();
      say(`eta: ${P.eta.users} users, rate ${P.eta.rate}/s -> ${P.eta.rateAfter}/s midway, 20% abandon, 15% slow enterers`);
      const e = await runEta({ redisAddress: emb.address, ...P.eta, changeAt: 0.4, abandon: 0.2, slowEnter: 0.15, tickMs: 250 });
      results.eta = e;
      const j = e.eta_at_join as Record<string, number>;
      const l = e.eta_in_line_25_50_75 as Record<string, number>;
      const sc = `ETA, ${P.eta.users} users (${e.admitted} admitted)`;
      rows.push({ scenario: sc, metric: 'at join: median abs err / actual wait', value: j.median_rel_err!, target: '<= 0.10', pass: j.median_rel_err! <= 0.1 });
      rows.push({ scenario: sc, metric: 'at join: median / p90 abs err s', value: `${j.median_abs_err_sec} / ${j.p90_abs_err_sec}` });
      rows.push({ scenario: sc, metric: 'at join: inside eta_low..eta_high', value: j.inside_range_share!, target: '>= 0.80', pass: j.inside_range_share! >= 0.8 });
      rows.push({ scenario: sc, metric: 'in line: median abs err / actual wait', value: l.median_rel_err! });
      rows.push({ scenario: sc, metric: 'in line: median / p90 abs err s', value: `${l.median_abs_err_sec} / ${l.p90_abs_err_sec}` });
      rows.push({ scenario: sc, metric: 'in line: inside range', value: l.inside_range_share! });
    }
    // ---- (7) the backend degrades mid-sale: adaptive outflow on and off (its own gateway, simulators and Redis)
    if (want('adaptive')) {
      const seconds = quick ? 90 : 180;
      say(`adaptive: ${seconds} s per run, backend healthy -> latency x4 -> +5 % errors -> recovered, adaptive on then off`);
      const out = await new Promise<string>((resolve, reject) => {
        const c = track(spawn(process.execPath, [join(root, 'dist', 'bench', 'adaptive.js'), `--seconds=${seconds}`, `--out=${join(root, 'bench', 'results', 'adaptive-outflow.svg')}`], { stdio: ['ignore', 'pipe', 'inherit'] }));
        let text = '';
        c.stdout?.on('data', (b: Buffer) => (text += b.toString()));
        c.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`bench/adaptive exited ${code}`))));
      });
      process.stdout.write(out);
      results.adaptive = out;
      // the per-phase table: | phase | on: admitted | ok | p95 | errors | off: admitted | ok | p95 | errors |
      for (const line of out.split('\n').filter((l) => /^\| (healthy|latency|\+5|recovered)/.test(l))) {
        const f = line.split('|').map((x) => x.trim()).filter(Boolean);
        rows.push({ scenario: `adaptive outflow: ${f[0]}`, metric: 'admitted / reservations ok / p95 ms / errors: adaptive | fixed', value: `${f[1]} / ${f[2]} / ${f[3]} / ${f[4]} | ${f[5]} / ${f[6]} / ${f[7]} / ${f[8]}` });
      }
    }
  } finally {
    if (gw) await gw.stop();
    await base.stop();
    redis.disconnect();
    await emb.stop();
  }

  meta.loadavg_end = loadavg();
  const table = render(rows);
  process.stdout.write(`\n${table}\n`);
  process.stdout.write(`loadavg start ${meta.loadavg_start} | end ${meta.loadavg_end}\n`);
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = meta.date.replace(/[:.]/g, '-');
  const file = join(dir, `${stamp}${quick ? '-quick' : ''}.json`);
  writeFileSync(file, `${JSON.stringify({ ...meta, rows, results }, null, 2)}\n`);
  writeFileSync(file.replace(/\.json$/, '.md'), `${markdown(rows)}\n\n\`${meta.command}\`, ${meta.date}, loadavg start ${meta.loadavg_start}, end ${meta.loadavg_end}\n`);
  say(`wrote ${file}`);
}

/** The rows of one wrk scenario: throughput and ratio, p99, errors, CPU µs per request against the budget. */
function wrkRows(scenario: string, s: WrkShot, b: WrkShot, t: { rps?: number; ratio: number; cpuUs: number }, check?: string): void {
  const okRps = (t.rps === undefined || s.rps >= t.rps) && s.rps / b.rps >= t.ratio;
  rows.push({ scenario, metric: 'req/s (wrk)', value: s.rps, baseline: b.rps, ratio: round(s.rps / b.rps), target: `${t.rps ? `>= ${t.rps}, ` : ''}ratio >= ${t.ratio}`, pass: okRps });
  rows.push({ scenario, metric: 'p99 ms (wrk)', value: round(s.p99), baseline: round(b.p99) });
  rows.push({ scenario, metric: 'errors (wrk: >= 400 + socket)', value: s.non2xx + s.socketErrors, target: '0', pass: s.non2xx + s.socketErrors === 0 });
  rows.push({ scenario, metric: 'CPU µs per request (wrk)', value: s.target_cpu_us_per_req ?? '-', baseline: b.target_cpu_us_per_req ?? '-', ratio: s.target_cpu_us_per_req && b.target_cpu_us_per_req ? round(s.target_cpu_us_per_req / b.target_cpu_us_per_req) : undefined, target: `<= ${t.cpuUs}`, pass: (s.target_cpu_us_per_req ?? Infinity) <= t.cpuUs });
  rows.push({ scenario, metric: 'CPU % gw / redis / wrk (wrk)', value: `${s.gw_cpu_pct} / ${s.redis_cpu_pct ?? '-'} / ${s.loadgen_cpu_pct}`, baseline: `${b.gw_cpu_pct} / - / ${b.loadgen_cpu_pct}` });
  if (check) rows.push({ scenario, metric: scenario.startsWith('join') ? '2xx / in Redis after (wrk)' : 'answered memory / redis (wrk)', value: check });
}

function cells(r: Row): string[] {
  return [r.scenario, r.metric, String(r.value), r.baseline === undefined ? '' : String(r.baseline), r.ratio === undefined ? '' : String(r.ratio), r.target ?? '', r.pass === undefined ? '' : r.pass ? 'PASS' : 'MISS'];
}
const HEAD = ['scenario', 'metric', 'gateway', 'bare uWS', 'ratio', 'target', ''];

function render(rs: Row[]): string {
  const all = [HEAD, ...rs.map(cells)];
  const w = HEAD.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n');
}

function markdown(rs: Row[]): string {
  return [`| ${HEAD.join(' | ')} |`, `|${HEAD.map(() => '---').join('|')}|`, ...rs.map((r) => `| ${cells(r).join(' | ')} |`)].join('\n');
}

const deadline = setTimeout(() => {
  say('time limit (40 min) reached: stopping');
  process.exit(3);
}, 40 * 60_000);
deadline.unref();

main().then(
  () => process.exit(0),
  (err: unknown) => {
    say(`failed: ${(err as Error)?.stack ?? String(err)}`);
    process.exit(1);
  },
);
