// The pre-queue draw at launch-day size:
//   node dist/bench/draw.js [entrants=300000] [more sizes...]
// On a throwaway redis-server: a scheduled event, N pre-queue joins (batched
// as the gateway batches them, 256 per script call), then the tick that
// draws at starts_at, then what the verifier does (the entrant list read in
// pages, its digest, every key recomputed). Reports the cost of a pre-queue
// join against a FIFO join, how long the draw holds Redis (the tick script's
// own time, Redis SLOWLOG, microseconds), the tick round trip, and the
// verifier's time. Loopback, bounded, self-stopping.
import { Redis } from 'ioredis';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import { defineScripts } from '../src/redis/connect.js';
import { QueueStore, type JoinDefaults } from '../src/queue/store.js';
import { commitmentOf, entrantsDigest } from '../src/queue/draw.js';
import { newWaitingToken } from '../src/queue/token.js';
import { verifyDraw, type Entrant } from '../src/tools/verify-draw.js';
import { scripts } from '../src/generated/lua.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (sizes.length === 0) sizes.push(300_000);

const defaults: JoinDefaults = { autoCreate: false, rate: 100, burst: 100, readyWindowSec: 60, reconnectGraceSec: 30, livenessMs: 3_600_000, idempotencyTtlSec: 60, access: 'anonymous' };
const TICK = { leaseMs: 600_000, maxPromote: 1000, maxSweep: 1000, maxExits: 50_000 };

async function joinAll(store: QueueStore, ev: string, n: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < n; ) {
    const batch = Math.min(4096, n - done);
    await Promise.all(Array.from({ length: batch }, () => store.join(ev, newWaitingToken(ev), '', '', defaults)));
    done += batch;
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** The longest script run Redis recorded since the reset (µs), from SLOWLOG with a 0 µs threshold. */
async function slowest(redis: Redis, sha1: string): Promise<number> {
  const log = (await redis.slowlog('GET', 128)) as Array<[number, number, number, string[]]>;
  return Math.max(0, ...log.filter((e) => e[3].some((a) => a === sha1)).map((e) => e[2]));
}

async function main(): Promise<void> {
  const server = await startEmbeddedRedis();
  const redis = new Redis({ host: '127.0.0.1', port: Number(server.address.split(':')[1]) });
  defineScripts(redis);
  try {
    console.log('| entrants | pre-queue join µs/join | FIFO join µs/join | draw tick: Redis µs | draw tick: round trip ms | verifier ms (read + digest + keys) | Redis memory after, MB |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|');
    for (const n of sizes) {
      await redis.flushall();
      let now = 1_800_000_000_000;
      const store = new QueueStore(redis, 'b:', () => now);
      const seed = 'ab'.repeat(32);
      const ev = `draw${n}`;
      await store.putEvent(ev, { rate: 100, burst: 100, readyWindowSec: 60, reconnectGraceSec: 30, access: 'anonymous', prequeueOpensMs: now, startsMs: now + 1000, draw: { seed, commitment: commitmentOf(seed) } });
      await store.acquireLease(ev, 'bench', 600_000);
      await store.tick(ev, 'bench', TICK);
      const preMs = await joinAll(store, ev, n);
      // a plain FIFO event of the same size, for comparison
      await store.putEvent(`fifo${n}`, { rate: 100, burst: 100, readyWindowSec: 60, reconnectGraceSec: 30, access: 'anonymous', state: 'paused' });
      const fifoMs = await joinAll(store, `fifo${n}`, n);
      await redis.config('SET', 'slowlog-log-slower-than', '0');
      await redis.slowlog('RESET');
      now += 1000;
      const t0 = process.hrtime.bigint();
      const r = await store.tick(ev, 'bench', TICK);
      const tickMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (typeof r === 'string' || r.transition !== 'drawn') throw new Error(`no draw: ${JSON.stringify(r)}`);
      const redisUs = await slowest(redis, scripts.tick.sha1);
      await redis.config('SET', 'slowlog-log-slower-than', '10000');
      const v0 = process.hrtime.bigint();
      const info = (await store.drawInfo(ev))!;
      const list: Entrant[] = [];
      while (list.length < info.entrants) for (const [receipt, key] of await store.entrants(ev, list.length, 10_000)) list.push({ position: list.length + 1, receipt, key });
      const digest = entrantsDigest(list.map((e) => e.receipt));
      const verdict = verifyDraw({ event_id: ev, algorithm: 'wr-draw-v1', status: 'drawn', commitment: info.commitment, seed: info.seed, entrants: info.entrants, entrants_digest: digest }, list);
      const verifyMs = Number(process.hrtime.bigint() - v0) / 1e6;
      if (!verdict.ok || verdict.entrants !== n) throw new Error(`verifier: ${JSON.stringify(verdict)}`);
      const mem = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]) / 1e6;
      console.log(`| ${n.toLocaleString('en-US')} | ${((preMs * 1000) / n).toFixed(1)} | ${((fifoMs * 1000) / n).toFixed(1)} | ${redisUs} | ${tickMs.toFixed(1)} | ${verifyMs.toFixed(0)} | ${mem.toFixed(0)} |`);
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
