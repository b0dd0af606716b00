// Measures, for N WebSocket users attached to ONE gateway instance:
//  - memory: the gateway's RSS delta from "N users in line, none attached"
//    to "N users attached by socket", divided by N;
//  - latency: from the admission tick that published a change to the moment
//    the last affected socket received its update (every user's position
//    drops by one when the head of the line leaves), p50/p99/max over rounds.
// Load is spread over several client processes and loopback source
// addresses (127.0.0.2, ...), bounded in count and time, loopback only.
//
//   node dist/bench/ws-scale.js [users=10000] [workers=4] [rounds=5]
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, renameSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { unpack } from 'msgpackr';
import { freePort, startEmbeddedRedis } from '../src/redis/embedded.js';
import { eventKeys } from '../src/redis/keys.js';
import { decodeTick } from '../src/queue/broker.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const N = Number(process.argv[2] ?? 10_000);
const WORKERS = Number(process.argv[3] ?? 4);
const ROUNDS = Number(process.argv[4] ?? 5);
const ADMIN = 'bench-admin-token-0123456789';
const PREFIX = 'bench:';
const EVENT = 'scale';

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** The gateway's memory gauges (prom-client's default metrics): heap spaces' sizes, heap used, external. */
async function memory(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)$/gm)) out[`space_${m[1]}`] = Number(m[2]);
  for (const name of ['nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes', 'process_resident_memory_bytes']) {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    if (m) out[name.replace(/^nodejs_|^process_|_bytes$/g, '')] = Number(m[1]);
  }
  return out;
}

/** A full, compacting GC in the gateway, asked through its inspector (loopback only, this bench's own gateway). */
async function fullGc(port: number): Promise<void> {
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const ws = new WebSocket(target!.webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.on('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
    ws.on('message', () => resolve());
    ws.on('error', reject);
  });
  ws.close();
  await sleep(1000);
}

async function main(): Promise<void> {
  const redis = await startEmbeddedRedis();
  const port = await freePort();
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // BENCH_HEAP_SNAPSHOTS=<dir>: a heap snapshot of the gateway before and after the attach
  // (compare them with `node dist/bench/heap-diff.js before after`)
  const snapDir = process.env.BENCH_HEAP_SNAPSHOTS;
  // an inspector on loopback, only to ask V8 for a full GC before each memory reading
  // (what the users retain, without the garbage of the joins or the connects)
  const inspectPort = await freePort();
  nodeArgs.push(`--inspect=127.0.0.1:${inspectPort}`);
  if (snapDir) nodeArgs.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapDir}`);
  const gw: ChildProcess = spawn(process.execPath, [...nodeArgs, join(root, 'dist', 'src', 'main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: String(port),
      REDIS_ADDRESS: redis.address,
      REDIS_KEY_PREFIX: PREFIX,
      ADMIN_TOKEN: ADMIN,
      LOG_LEVEL: 'warn',
      QUEUE_TICK_MS: '250',
      QUEUE_RECONNECT_GRACE_SEC: '120',
      // push every change to everyone: the worst case for fan-out
      REALTIME_NEAR_FRONT: '1000000',
      WS_MAX_CONNECTIONS: String(N + 100),
      WS_IDLE_TIMEOUT_SEC: '120',
      RATE_LIMIT_RPS: '1000000',
      RATE_LIMIT_BURST: '1000000',
      WS_MAX_PER_IP: '1000000',
      WS_CONNECT_RPS: '100000',
      WS_CONNECT_BURST: '100000',
    },
    stdio: ['ignore', process.env.BENCH_GATEWAY_STDOUT ? 'inherit' : 'ignore', 'inherit'],
  });
  // bounded and self-stopping: the gateway goes with this process, however it ends
  process.on('exit', () => gw.kill('SIGKILL'));
  for (let i = 0; ; i++) {
    if (gw.exitCode !== null) throw new Error(`gateway exited ${gw.exitCode}`);
    if (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)) break;
    if (i > 150) throw new Error('gateway did not become ready');
    await sleep(100);
  }
  const url = `http://127.0.0.1:${port}`;
  const snapshot = async (label: string): Promise<void> => {
    if (!snapDir) return;
    const had = new Set(readdirSync(snapDir));
    gw.kill('SIGUSR2');
    for (;;) {
      await sleep(500);
      const fresh = readdirSync(snapDir).filter((f) => f.endsWith('.heapsnapshot') && !had.has(f));
      // written once the gateway answers again
      if (fresh.length > 0 && (await fetch(`${url}/readyz`).then((r) => r.ok, () => false))) {
        renameSync(join(snapDir, fresh[0]!), join(snapDir, `${label}.heapsnapshot`));
        return;
      }
    }
  };
  const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  await fetch(`${url}/api/v1/admin/events/${EVENT}`, { method: 'PUT', headers: auth, body: JSON.stringify({ rate: 1, burst: 1, reconnect_grace_sec: 120, state: 'paused' }) });

  // N users in line (joined over HTTP, 64 at a time); one extra at the head whose leaves drive the rounds
  const heads: string[] = [];
  const tokens: string[] = [];
  const joinOne = async (): Promise<string> => {
    const r = await fetch(`${url}/api/v1/queue/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"event_id":"${EVENT}"}` });
    return ((await r.json()) as { waiting_token: string }).waiting_token;
  };
  // one head more than rounds: round 0 warms up (the first fan-out of a moved line runs cold code) and is reported apart
  for (let i = 0; i <= ROUNDS; i++) heads.push(await joinOne());
  for (let i = 0; i < N; i += 64) tokens.push(...(await Promise.all(Array.from({ length: Math.min(64, N - i) }, joinOne))));
  await sleep(3000);
  await snapshot('before');
  const rssBefore = rssKb(gw.pid!);
  const memBefore = await memory(url);
  await fullGc(inspectPort);
  const rssBeforeGc = rssKb(gw.pid!);
  const heapBeforeGc = (await memory(url)).heap_size_used ?? 0;

  const workers = Array.from({ length: WORKERS }, () => fork(join(here, 'ws-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const connectStart = Date.now();
  const ready = workers.map(
    (w) => new Promise<{ welcomed: number; failed: number }>((resolve) => w.on('message', (m: { kind: string; welcomed: number; failed: number }) => m.kind === 'ready' && resolve(m))),
  );
  const share = Math.ceil(N / WORKERS);
  workers.forEach((w, k) =>
    w.send({ kind: 'start', url: url.replace('http', 'ws'), tokens: tokens.slice(k * share, (k + 1) * share), localAddress: `127.0.0.${k + 2}` }),
  );
  const counts = await Promise.all(ready);
  const connectMs = Date.now() - connectStart;
  const welcomed = counts.reduce((a, c) => a + c.welcomed, 0);
  const failed = counts.reduce((a, c) => a + c.failed, 0);
  await sleep(5000);
  const rss5 = rssKb(gw.pid!);
  for (let left = Number(process.env.BENCH_SETTLE_MS ?? 0); left > 0; left -= 2000) {
    await sleep(2000);
    const m = await memory(url);
    console.error(`settle: rss ${Math.round(rssKb(gw.pid!) / 1024)} MB, heap used ${Math.round(m.heap_size_used! / 2 ** 20)} MB of ${Math.round(m.heap_size_total! / 2 ** 20)} MB`);
  }
  await snapshot('after');
  const rssAfter = rssKb(gw.pid!);
  const memAfter = await memory(url);
  await fullGc(inspectPort);
  const rssAfterGc = rssKb(gw.pid!);
  const heapAfterGc = (await memory(url)).heap_size_used ?? 0;

  // rounds: the head leaves; the tick that publishes the exit is the start, the last socket's update the end
  const sub = new Redis({ host: redis.host, port: redis.port });
  const channel = eventKeys(PREFIX, EVENT).channel;
  const tickTimes: number[] = [];
  sub.on('messageBuffer', (_c: Buffer, data: Buffer) => {
    const m = decodeTick(data);
    if (m.exits.length > 0) tickTimes.push(m.redisTimeMs);
  });
  await sub.subscribe(channel);
  const lastMs: number[] = [];
  const allMs: number[] = [];
  let missing = 0;
  let warmupLastMs = 0;
  for (let r = 0; r <= ROUNDS; r++) {
    const results = workers.map(
      (w) => new Promise<number[]>((resolve) => w.on('message', (m: { kind: string; round: number; times: number[] }) => m.kind === 'round' && m.round === r && resolve(m.times))),
    );
    workers.forEach((w) => w.send({ kind: 'round', round: r }));
    await sleep(200);
    const before = tickTimes.length;
    await fetch(`${url}/api/v1/queue/leave?token=${encodeURIComponent(heads[r]!)}`, { method: 'DELETE' });
    const times = (await Promise.all(results)).flat();
    const t0 = tickTimes[before];
    if (t0 === undefined) throw new Error('no tick message seen for the round');
    const got = times.filter((t) => t > 0).map((t) => t - t0);
    missing += times.length - got.length;
    if (r === 0) warmupLastMs = Math.max(...got);
    else {
      allMs.push(...got);
      lastMs.push(Math.max(...got));
    }
    await sleep(500);
  }
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const fan = /realtime_fanout_duration_seconds_sum (\S+)\nrealtime_fanout_duration_seconds_count (\S+)/.exec(metrics);
  const fanoutAvgMs = fan ? (Number(fan[1]) / Number(fan[2])) * 1000 : NaN;
  const fanoutMax = [...metrics.matchAll(/realtime_fanout_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/g)];
  const result = {
    users: N,
    workers: WORKERS,
    welcomed,
    failed,
    connect_ms: connectMs,
    connect_per_sec: Math.round((welcomed / connectMs) * 1000),
    rss_before_mb: Math.round(rssBefore / 1024),
    rss_after_mb: Math.round(rssAfter / 1024),
    rss_per_user_kb: Number(((rssAfter - rssBefore) / N).toFixed(2)),
    rss5_per_user_kb: Number(((rss5 - rssBefore) / N).toFixed(2)),
    // both readings right after a full GC: what the attached users retain (V8's slack between collections left out)
    rss_per_user_after_gc_kb: Number(((rssAfterGc - rssBeforeGc) / N).toFixed(2)),
    heap_per_user_after_gc_bytes: Math.round((heapAfterGc - heapBeforeGc) / N),
    // where the RSS went (bytes per user, from the gateway's own gauges before and after the attach)
    memory_per_user_bytes: Object.fromEntries(Object.keys(memAfter).map((k) => [k, Math.round(((memAfter[k] ?? 0) - (memBefore[k] ?? 0)) / N)])),
    tick_to_update_p50_ms: pct(allMs, 50),
    tick_to_update_p99_ms: pct(allMs, 99),
    tick_to_last_update_ms: lastMs,
    warmup_round_last_update_ms: warmupLastMs,
    updates_missing: missing,
    fanout_avg_ms_per_tick: Number(fanoutAvgMs.toFixed(2)),
    fanout_buckets: Object.fromEntries(fanoutMax.map((m) => [m[1], Number(m[2])])),
    // the gateway's own view: from the tick (Redis time) to the end of its fan-out
    tick_to_push_buckets: Object.fromEntries([...metrics.matchAll(/realtime_tick_to_push_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\d+)/g)].map((m) => [m[1], Number(m[2])])),
  };
  console.log(JSON.stringify(result, null, 2));
  for (const w of workers) w.send({ kind: 'stop' });
  sub.disconnect();
  // SIGTERM: a graceful exit, so a --cpu-prof profile gets written
  const exited = new Promise((r) => gw.once('exit', r));
  gw.kill('SIGTERM');
  await exited;
  await redis.stop();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
