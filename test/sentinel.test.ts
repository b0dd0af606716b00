import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, freePort, type EmbeddedRedis } from '../src/redis/embedded.js';
import { call, startInProcessGateway, uniquePrefix, waitFor, type InProcessGateway } from './helpers/harness.js';
import { eventKeys } from '../src/redis/keys.js';

// Redis Sentinel keeps working: the gateway finds the master through a real
// sentinel, and after the master dies and the sentinel promotes the replica,
// it follows the new master with every established place kept.

let primary: EmbeddedRedis;
let replica: EmbeddedRedis;
let sentinel: ChildProcess;
let sentinelDir: string;
let sentinelPort: number;
let gw: InProcessGateway;
let prefix: string;

beforeAll(async () => {
  primary = await startEmbeddedRedis();
  replica = await startEmbeddedRedis({ extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)] });
  sentinelPort = await freePort();
  sentinelDir = mkdtempSync(join(tmpdir(), 'wr-sentinel-'));
  const conf = join(sentinelDir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${sentinelDir}`,
      `sentinel monitor mymaster 127.0.0.1 ${primary.port} 1`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 5000',
      'sentinel parallel-syncs mymaster 1',
    ].join('\n') + '\n',
  );
  sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const r = new Redis({ port: replica.port });
  try {
    await waitFor('replica in sync', async () => /master_link_status:up/.test(await r.info('replication')), 15_000, 200);
  } finally {
    r.disconnect();
  }
  await waitFor('sentinel knows the master', async () => {
    const s = new Redis({ port: sentinelPort, maxRetriesPerRequest: 0 });
    try {
      const m = (await s.call('SENTINEL', 'get-master-addr-by-name', 'mymaster')) as string[] | null;
      return m?.[1] === String(primary.port);
    } catch {
      return false;
    } finally {
      s.disconnect();
    }
  }, 15_000, 200);
  prefix = uniquePrefix();
  gw = await startInProcessGateway(`127.0.0.1:${sentinelPort}`, { REDIS_SENTINEL_MASTER: 'mymaster', REDIS_KEY_PREFIX: prefix, QUEUE_AUTO_CREATE_EVENTS: 'true', ADMIN_TOKEN: ADMIN });
}, 60_000);
afterAll(async () => {
  await gw?.stop();
  sentinel?.kill('SIGKILL');
  await replica?.stop();
  await primary?.stop();
  if (sentinelDir) rmSync(sentinelDir, { recursive: true, force: true });
});

const ADMIN = 'sentinel-admin-token-0123456789';

describe('Redis Sentinel', () => {
  it('follows the master through a failover; established places are kept', async () => {
    // paused: nobody is promoted, so every position below is the place itself (an auto-created
    // open event promoted users whenever the first tick after the failover beat the checks)
    const put = await call(gw.url, 'PUT', '/api/v1/admin/events/sentinel', { state: 'paused' }, { authorization: `Bearer ${ADMIN}` });
    expect(put.status, put.text).toBe(201);
    const tokens: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'sentinel' });
      expect(r.status).toBe(202);
      tokens.push(r.body.waiting_token as string);
    }
    await new Promise((r) => setTimeout(r, 500)); // replicated
    await primary.stop(); // the master dies
    const back = await waitFor('joins after the failover', async () => {
      const r = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'sentinel' });
      if (r.status !== 202) expect(r.status).toBe(503); // clear 503 meanwhile, never 500
      return r.status === 202 ? r : undefined;
    }, 30_000, 250);
    expect(back.body.position_hint).toBe(21); // the line continued where it was
    for (let i = 0; i < tokens.length; i += 5) {
      expect((await call(gw.url, 'GET', `/api/v1/queue/status?token=${tokens[i]!}`)).body.position).toBe(i + 1);
    }
    const promoted = new Redis({ port: replica.port });
    try {
      expect(await promoted.zcard(eventKeys(prefix, 'sentinel').q)).toBe(21);
      expect(/role:master/.test(await promoted.info('replication'))).toBe(true);
    } finally {
      promoted.disconnect();
    }
  }, 60_000);
});
