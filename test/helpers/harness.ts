import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/redis/embedded.js';
import { defineScripts } from '../../src/redis/connect.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { startDevBackends } from '../../src/dev/backends.js';

// Real parts only: every test file starts its own redis-server on a free port
// and uses a unique key prefix per test; gateways run in-process or as real
// child processes (`node dist/src/main.js`, as `npm start` runs it).

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function startRedis(): Promise<EmbeddedRedis> {
  return startEmbeddedRedis();
}

export const uniquePrefix = (): string => `t${randomBytes(4).toString('hex')}:`;

/** Tests drive many requests from one loopback address: limits far above that, unless a test sets its own. */
export const GENEROUS_LIMITS: Record<string, string> = {
  RATE_LIMIT_RPS: '100000',
  RATE_LIMIT_BURST: '100000',
  WS_MAX_PER_IP: '100000',
  WS_CONNECT_RPS: '100000',
  WS_CONNECT_BURST: '100000',
  WS_MESSAGE_RPS: '1000',
  WS_MESSAGE_BURST: '1000',
};

export function redisClient(address: string): Redis {
  const [host, port] = address.split(':');
  const c = new Redis({ host: host!, port: Number(port), maxRetriesPerRequest: 1 });
  defineScripts(c);
  return c;
}

export interface InProcessGateway {
  url: string;
  gateway: Gateway;
  stop(): Promise<void>;
}

export async function startInProcessGateway(redisAddress: string, env: Record<string, string> = {}): Promise<InProcessGateway> {
  const config = loadConfig({
    SERVER_HOST: '127.0.0.1',
    SERVER_PORT: '0',
    REDIS_ADDRESS: redisAddress,
    REDIS_KEY_PREFIX: uniquePrefix(),
    LOG_LEVEL: 'silent',
    ...GENEROUS_LIMITS,
    ...env,
  });
  const log = createLogger(config.logLevel);
  const dev = await startDevBackends({ reservation: config.backends.reservation.address, payment: config.backends.payment.address }, log);
  const gateway = await startGateway(config, { redisAddress, reservationAddress: dev.reservationAddress, paymentAddress: dev.paymentAddress }, log).catch(async (err: unknown) => {
    await dev.stop();
    throw err;
  });
  return {
    url: `http://127.0.0.1:${gateway.port}`,
    gateway,
    stop: async () => {
      await gateway.stop();
      await dev.stop();
    },
  };
}

export interface SpawnedGateway {
  url: string;
  port: number;
  instanceId: string;
  proc: ChildProcess;
  logs: string[];
  /** resolves with the exit code/signal */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function spawnGateway(env: Record<string, string>): Promise<SpawnedGateway> {
  const instanceId = env.INSTANCE_ID ?? `gw-${randomBytes(3).toString('hex')}`;
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'src', 'main.js')], {
    env: { PATH: process.env.PATH ?? '', SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', LOG_LEVEL: 'info', INSTANCE_ID: instanceId, ...GENEROUS_LIMITS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${logs.join('\n')}`)), 20_000);
    const onLine = (line: string): void => {
      logs.push(line);
      try {
        const j = JSON.parse(line) as { msg?: string; port?: number };
        if (j.msg === 'gateway listening' && j.port) {
          clearTimeout(timer);
          resolve(j.port);
        }
      } catch {
        /* not JSON: stderr text */
      }
    };
    const onData = (b: Buffer): void => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (b: Buffer) => logs.push(b.toString()));
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${e.code ?? e.signal}) before listening:\n${logs.join('\n')}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    instanceId,
    proc,
    logs,
    exited,
    stop: (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

export interface Reply<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export async function call<T = Record<string, unknown>>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply<T>> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let parsed: unknown = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}
