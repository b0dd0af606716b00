// Shared pieces of the benchmark harness: child processes that are always
// stopped (each in its own process group, killed on exit, Ctrl-C and errors),
// a gateway and a bare uWebSockets.js baseline on loopback, a small keep-alive
// HTTP client, percentiles and /proc readings.
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/redis/embedded.js';

export const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const ADMIN = 'bench-admin-token-0123456789';
export const PREFIX = 'bench:';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const round = (x: number, d = 2): number => (Number.isFinite(x) ? Number(x.toFixed(d)) : x);

export function rssKb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** utime+stime of a process in ms (clock ticks assumed 100/s, the Linux default). */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

export const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').trim();

// ---- children: every process we start is a process-group leader; cleanup kills the groups

const children = new Set<ChildProcess>();

function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, sig);
  } catch {
    try {
      c.kill(sig);
    } catch {
      /* already gone */
    }
  }
}

export function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

export function killAll(): void {
  for (const c of children) killGroup(c, 'SIGKILL');
}

let installed = false;
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n[bench] ${sig}: stopping every child process\n`);
      killAll();
      process.exit(130);
    });
  }
}

export async function stopChild(c: ChildProcess, graceMs = 5000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  killGroup(c, 'SIGTERM');
  const t = setTimeout(() => killGroup(c, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
  killGroup(c, 'SIGKILL'); // anything the child left in its group
}

// ---- a tiny keep-alive HTTP client (bounded sockets)

export interface Reply {
  status: number;
  body: string;
}

export class Client {
  readonly agent: Agent;
  constructor(
    readonly base: string,
    maxSockets = 64,
    readonly localAddress?: string,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }
  req(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const u = new URL(path, this.base);
      const r = request(
        {
          agent: this.agent,
          host: u.hostname,
          port: u.port,
          path: u.pathname + u.search,
          method,
          localAddress: this.localAddress,
          headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } : headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        },
      );
      r.setTimeout(10_000, () => r.destroy(new Error('timeout')));
      r.on('error', reject);
      r.end(body);
    });
  }
  close(): void {
    this.agent.destroy();
  }
}

/** Runs fn over items with at most `limit` in flight. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= items.length) return;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

// ---- the gateway under test and the bare uWS baseline

export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  log(): string;
  stop(): Promise<void>;
}

function collect(c: ChildProcess): () => string {
  let out = '';
  const add = (b: Buffer): void => {
    out += b.toString();
    if (out.length > 16_384) out = out.slice(-8192);
  };
  c.stdout?.on('data', add);
  c.stderr?.on('data', add);
  return () => out;
}

async function waitHttp(c: ChildProcess, url: string, log: () => string): Promise<void> {
  for (let i = 0; ; i++) {
    if (c.exitCode !== null) throw new Error(`process exited ${c.exitCode} before it was ready:\n${log()}`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    if (i > 200) throw new Error(`not ready after 20 s: ${url}\n${log()}`);
    await sleep(100);
  }
}

export function gatewayEnv(redisAddress: string, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    SERVER_HOST: '127.0.0.1',
    SERVER_PORT: String(port),
    REDIS_ADDRESS: redisAddress,
    REDIS_KEY_PREFIX: PREFIX,
    ADMIN_TOKEN: ADMIN,
    LOG_LEVEL: 'warn',
    // the defaults protect production; a benchmark from one address would only measure the limiter
    RATE_LIMIT_RPS: '1000000',
    RATE_LIMIT_BURST: '1000000',
    WS_MAX_PER_IP: '1000000',
    WS_CONNECT_RPS: '100000',
    WS_CONNECT_BURST: '100000',
    WS_MAX_CONNECTIONS: '100000',
    QUEUE_POLL_TIMEOUT_SEC: '3600',
    ...extra,
  };
}

export async function startGateway(redisAddress: string, extra: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Proc> {
  const port = await freePort();
  // BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p": a profile per gateway, written at its graceful stop
  const envArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = track(
    spawn(process.execPath, [...envArgs, ...nodeArgs, join(root, 'dist', 'src', 'main.js')], {
      env: gatewayEnv(redisAddress, port, extra),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    }),
  );
  const log = collect(child);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(child, `${url}/readyz`, log);
  return { child, pid: child.pid!, port, url, log, stop: () => stopChild(child) };
}

export async function startBaseline(): Promise<Proc> {
  const port = await freePort();
  const child = track(fork(join(here, 'baseline.js'), [String(port)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true }));
  const log = collect(child);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(child, `${url}/healthz`, log);
  return { child, pid: child.pid!, port, url, log, stop: () => stopChild(child) };
}

export async function putEvent(url: string, id: string, cfg: Record<string, unknown>): Promise<void> {
  const r = await fetch(`${url}/api/v1/admin/events/${id}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify(cfg),
  });
  if (r.status !== 200 && r.status !== 201) throw new Error(`PUT event ${id}: ${r.status} ${await r.text()}`);
}

/** A loopback source address per client process: 127.0.0.2, 127.0.0.3, ... */
export const sourceAddress = (k: number): string => `127.0.0.${(k % 250) + 2}`;
