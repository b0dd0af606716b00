// wrk (C, event loop, one thread per core) as a second load generator next to
// autocannon, which saturates near 20,000 req/s on a 2-core machine and so
// flatters the ratio to bare uWebSockets.js. One wrk process per shot; a Lua
// script cycles the request paths/bodies given (a status poll per user, a
// join per event) and prints its summary as JSON. CPU of the target, Redis
// and wrk itself are read from /proc over the run; the target's CPU time per
// request (µs) is the figure the hot-path budget is stated in.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuMs, track } from './lib.js';

export interface WrkOptions {
  /** base URL, e.g. http://127.0.0.1:8000 */
  url: string;
  method: 'GET' | 'POST';
  /** request paths, cycled (at least one) */
  paths: readonly string[];
  /** POST bodies, cycled with the paths (JSON) */
  bodies?: readonly string[];
  connections: number;
  durationSec: number;
  threads?: number;
}

export interface WrkShot {
  generator: 'wrk';
  rps: number;
  requests: number;
  /** latency percentiles in ms */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** responses with status >= 400 */
  non2xx: number;
  socketErrors: number;
  /** CPU time of the target per request, µs */
  target_cpu_us_per_req?: number;
  gw_cpu_pct?: number;
  redis_cpu_pct?: number;
  loadgen_cpu_pct: number;
}

const SCRIPT = `
local paths, bodies, n, i = {}, {}, 0, 0
local method = os.getenv("WRK_METHOD") or "GET"
local headers = {}
if method == "POST" then headers["Content-Type"] = "application/json" end
init = function(args)
  for line in io.lines(args[1]) do n = n + 1; paths[n] = line end
  if args[2] then local k = 0; for line in io.lines(args[2]) do k = k + 1; bodies[k] = line end end
end
request = function()
  i = i % n + 1
  return wrk.format(method, paths[i], headers, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
`;

export async function wrkShot(o: WrkOptions, pids: { target?: number; redis?: number } = {}): Promise<WrkShot> {
  const dir = mkdtempSync(join(tmpdir(), 'wr-wrk-'));
  try {
    writeFileSync(join(dir, 'script.lua'), SCRIPT);
    writeFileSync(join(dir, 'paths.txt'), `${o.paths.join('\n')}\n`);
    const args = ['-t', String(o.threads ?? 1), '-c', String(o.connections), '-d', `${o.durationSec}s`, '--timeout', '10s', '-s', join(dir, 'script.lua'), o.url, '--', join(dir, 'paths.txt')];
    if (o.bodies?.length) {
      writeFileSync(join(dir, 'bodies.txt'), `${o.bodies.join('\n')}\n`);
      args.push(join(dir, 'bodies.txt'));
    }
    const c0 = { t: pids.target ? cpuMs(pids.target) : 0, r: pids.redis ? cpuMs(pids.redis) : 0 };
    const w0 = Date.now();
    const child = track(spawn('wrk', args, { env: { ...process.env, WRK_METHOD: o.method }, stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    let loadgenMs = 0;
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    // wrk's own CPU, read just before it exits (its /proc entry goes with it)
    const sampler = setInterval(() => (loadgenMs = cpuMs(child.pid!) || loadgenMs), 200);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    clearInterval(sampler);
    const wall = Date.now() - w0;
    const line = /WRKJSON (\{.*\})/.exec(out)?.[1];
    if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}): ${err || out}`);
    const j = JSON.parse(line) as Record<string, number>;
    const seconds = j.duration_us! / 1e6;
    const targetMs = pids.target ? cpuMs(pids.target) - c0.t : 0;
    return {
      generator: 'wrk',
      rps: Math.round(j.requests! / seconds),
      requests: j.requests!,
      p50: j.p50! / 1000,
      p90: j.p90! / 1000,
      p99: j.p99! / 1000,
      max: j.max! / 1000,
      non2xx: j.status!,
      socketErrors: j.connect! + j.read! + j.write! + j.timeout!,
      ...(pids.target ? { target_cpu_us_per_req: Math.round(((targetMs * 1000) / j.requests!) * 10) / 10, gw_cpu_pct: Math.round((targetMs / wall) * 100) } : {}),
      ...(pids.redis ? { redis_cpu_pct: Math.round(((cpuMs(pids.redis) - c0.r) / wall) * 100) } : {}),
      loadgen_cpu_pct: Math.round((loadgenMs / wall) * 100),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
