import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis, type ClusterOptions } from 'ioredis';
import { freePort } from './embedded.js';
import { defineScripts } from './connect.js';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// A real Redis Cluster of local redis-server processes (3 primaries, 3
// replicas on free ports, created with redis-cli --cluster create), for the
// cluster tests and `npm run bench -- --cluster`. Development only.

export interface LocalNode {
  port: number;
  proc: ChildProcess;
  dir: string;
}

export interface LocalCluster {
  nodes: LocalNode[];
  /** "127.0.0.1:p1,127.0.0.1:p2,..." for REDIS_ADDRESS */
  seeds: string;
  /** a client of the cluster; `options` for a subscriber (shardedSubscribers) and the like */
  client(options?: ClusterOptions): Cluster;
  /** the node currently primary for a key */
  primaryFor(key: string): Promise<LocalNode>;
  kill(node: LocalNode, signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

/**
 * One cluster node on free ports. The cluster bus port is chosen too: the
 * default (port + 10000) is past 65535 for a third of the kernel's ephemeral
 * range and may be taken by another socket, and either makes redis-server
 * exit at start (seen once in a CI run). A port taken between choosing and
 * binding is retried with new ports.
 */
async function startNode(attempt = 1): Promise<LocalNode> {
  const port = await freePort();
  let busPort = await freePort();
  while (busPort === port) busPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'wr-cluster-'));
  const proc = spawn(
    'redis-server',
    // prettier-ignore
    ['--port', String(port), '--cluster-port', String(busPort), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '1500', '--cluster-replica-validity-factor', '0', '--save', '', '--appendonly', 'no', '--dir', dir, '--cluster-allow-reads-when-down', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`redis-server (cluster node) did not start:\n${output}`)), 10_000);
      const onData = (b: Buffer): void => {
        if (output.length < 8192) output += b.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(t);
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (c) => {
        clearTimeout(t);
        reject(new Error(`cluster node on ${port} (bus ${busPort}) exited ${c}:\n${output.slice(-2000)}`));
      });
    });
  } catch (err) {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    if (attempt < 3) return startNode(attempt + 1);
    throw err;
  }
  proc.removeAllListeners('exit');
  return { port, proc, dir };
}

/** cluster_state ok, and a replica's link to its primary is up (so it can take over) */
async function clusterOk(port: number): Promise<boolean> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await r.connect();
    const info = await r.cluster('INFO');
    if (!/cluster_state:ok/.test(String(info))) return false;
    const repl = await r.info('replication');
    return /role:master/.test(repl) || /master_link_status:up/.test(repl);
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

export async function startCluster(): Promise<LocalCluster> {
  const started = await Promise.allSettled(Array.from({ length: 6 }, () => startNode()));
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    // never leave the nodes that did start running behind a failed start
    for (const n of nodes) {
      n.proc.kill('SIGKILL');
      rmSync(n.dir, { recursive: true, force: true });
    }
    throw failed.reason;
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { stdio: 'ignore', timeout: 30_000 });
  for (let i = 0; ; i++) {
    const oks = await Promise.all(nodes.map((n) => clusterOk(n.port)));
    if (oks.every(Boolean)) break;
    if (i > 100) throw new Error('cluster did not reach cluster_state:ok');
    await sleep(100);
  }
  const seeds = nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  const alive = (n: LocalNode) => n.proc.exitCode === null && n.proc.signalCode === null;
  return {
    nodes,
    seeds,
    client(options?: ClusterOptions) {
      const c = new Cluster(nodes.filter(alive).map((n) => ({ host: '127.0.0.1', port: n.port })), { scaleReads: 'master', redisOptions: { maxRetriesPerRequest: 3 }, ...options });
      defineScripts(c);
      return c;
    },
    async primaryFor(key: string) {
      const c = new Redis({ port: nodes.find(alive)!.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      try {
        const slot = Number(await c.cluster('KEYSLOT', key));
        const slots = (await c.cluster('SLOTS')) as unknown as [number, number, [string, number, string]][];
        const owner = slots.find(([a, b]) => slot >= a && slot <= b);
        if (!owner) throw new Error(`no owner for slot ${slot}`);
        const port = owner[2][1];
        return nodes.find((n) => n.port === port)!;
      } finally {
        c.disconnect();
      }
    },
    async kill(node, signal = 'SIGKILL') {
      if (!alive(node)) return;
      const exited = new Promise((r) => node.proc.once('exit', r));
      node.proc.kill(signal);
      await exited;
    },
    async stop() {
      await Promise.all(
        nodes.map(async (n) => {
          if (alive(n)) {
            const exited = new Promise((r) => n.proc.once('exit', r));
            n.proc.kill('SIGKILL');
            await exited;
          }
          rmSync(n.dir, { recursive: true, force: true });
        }),
      );
    },
  };
}
