// The reconnect storm alone (bench/ws-storm.ts without the rest of run.ts):
// K gateway instances on one embedded Redis, N sockets each, one latency
// round, then every socket dropped and reconnected at once. Prints the storm's
// figures, then Redis's SLOWLOG entries over 20 ms.
//
//   node dist/bench/storm.js [instances=3] [perInstance=15000]
import { Redis } from 'ioredis';
import { runMulti } from './ws-storm.js';
import { startEmbeddedRedis } from '../src/redis/embedded.js';

const [instances = 3, perInstance = 15_000] = process.argv.slice(2).map(Number);
const redis = await startEmbeddedRedis();
const admin = new Redis({ host: redis.host, port: redis.port });
await admin.config('SET', 'slowlog-log-slower-than', '20000');
try {
  const m = await runMulti({ redisAddress: redis.address, instances, perInstance, rounds: 1, storm: true });
  console.log(JSON.stringify({ connect_per_sec: m.connect_per_sec, storm: m.storm }, null, 2));
  const slow = (await admin.slowlog('GET', 20)) as Array<[number, number, number, string[]]>;
  for (const [, , us, args] of slow) console.log(`slowlog ${us} µs ${args.slice(0, 3).join(' ').slice(0, 100)}`);
} finally {
  admin.disconnect();
  await redis.stop();
}
process.exit(0);
