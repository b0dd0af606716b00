// Where the gateway's CPU goes under one HTTP load: starts Redis and the
// gateway with --cpu-prof, drives it with autocannon, stops it gracefully (so
// V8 writes the profile) and prints the functions and files with the most
// self time. Evidence for docs/BENCHMARKS.md.
//
//   node dist/bench/profile.js [join|status] [seconds=10] [--autocannon]   (wrk by default)
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import { Client, installCleanup, pool, putEvent, startGateway } from './lib.js';
import { wrkShot } from './wrk.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

async function main(): Promise<void> {
  installCleanup();
  if (process.argv[2] === 'summarize') {
    // node dist/bench/profile.js summarize <file.cpuprofile>: a profile written under BENCH_GATEWAY_NODE_ARGS
    report(process.argv[3]!, 'the run that wrote it', 0);
    return;
  }
  const what = process.argv[2] ?? 'join';
  const secs = Number(process.argv[3] ?? 10);
  const useWrk = !process.argv.includes('--autocannon');
  const dir = mkdtempSync(join(tmpdir(), 'wr-prof-'));
  const redis = await startEmbeddedRedis();
  const gw = await startGateway(redis.address, {}, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  try {
    await putEvent(gw.url, 'p', { rate: 1, burst: 1, state: 'paused' });
    if (what === 'join') {
      // wrk (C) loads the gateway far harder than autocannon on 2 cores: the profile shows the gateway, not idle time
      if (useWrk) await wrkShot({ url: gw.url, method: 'POST', paths: ['/api/v1/queue/join'], bodies: ['{"event_id":"p"}'], connections: 64, durationSec: secs });
      else await autocannon({ url: `${gw.url}/api/v1/queue/join`, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"event_id":"p"}', connections: 64, duration: secs });
    } else {
      const c = new Client(gw.url, 64);
      const tokens = await pool(Array.from({ length: 2000 }), 64, async () => (JSON.parse((await c.req('POST', '/api/v1/queue/join', '{"event_id":"p"}')).body) as { waiting_token: string }).waiting_token);
      c.close();
      const paths = tokens.map((t) => `/api/v1/queue/status?token=${encodeURIComponent(t)}`);
      let i = 0;
      if (useWrk) await wrkShot({ url: gw.url, method: 'GET', paths, connections: 64, durationSec: secs });
      else await autocannon({ url: gw.url, connections: 64, duration: secs, requests: [{ method: 'GET', setupRequest: (r) => ({ ...r, path: paths[i++ % paths.length] }) }] });
    }
  } finally {
    await gw.stop();
    await redis.stop();
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  report(join(dir, file), `${what} load`, secs);
}

function report(path: string, what: string, secs: number): void {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const self = new Map<number, number>();
  p.samples.forEach((id, k) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[k] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    if (!t) continue;
    const f = n.callFrame;
    const short = f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/') || '(native/vm)';
    const key = `${f.functionName || '(anonymous)'}  ${short}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + t);
    const pkg = short.startsWith('node_modules/') ? short.split('/').slice(0, short.includes('/@') ? 3 : 2).join('/') : short.startsWith('dist/') ? short : short.split(':')[0]!;
    byFile.set(pkg, (byFile.get(pkg) ?? 0) + t);
  }
  const top = (m: Map<string, number>, n: number): string =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)} %  ${k}`)
      .join('\n');
  process.stdout.write(`profile of the gateway under ${what}${secs ? ` for ${secs}s` : ''}: ${path}\n\nself time by function:\n${top(byFn, 25)}\n\nself time by file / package:\n${top(byFile, 20)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
