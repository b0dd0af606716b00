import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// A throwaway redis-server for the two-command quick start and for tests:
// free port, nothing persisted, killed with its owner.

export interface EmbeddedRedis {
  readonly host: string;
  readonly port: number;
  readonly address: string;
  /** the redis-server process (tests freeze it with SIGSTOP to make Redis hang) */
  readonly pid: number;
  stop(): Promise<void>;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class RedisServerMissing extends Error {}

export interface EmbeddedRedisOptions {
  bin?: string;
  host?: string;
  port?: number;
  extraArgs?: string[];
}

/**
 * A free port is only free when it is checked: something else (any outgoing
 * connection takes its local port from the same range) may take it before
 * redis-server binds it. Then another port is tried, up to five.
 */
export async function startEmbeddedRedis(opts: EmbeddedRedisOptions = {}): Promise<EmbeddedRedis> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (opts.port !== undefined || attempt >= 5 || !/Address already in use/i.test((err as Error).message)) throw err;
    }
  }
}

async function startOnce(opts: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const dir = mkdtempSync(join(tmpdir(), 'wr-redis-'));
  const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', ...(opts.extraArgs ?? [])];
  const child: ChildProcess = spawn(opts.bin ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (b: Buffer): void => {
    if (output.length < 8192) output += b.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10s:\n${output}`)), 10_000);
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        err.code === 'ENOENT'
          ? new RedisServerMissing(
              `redis-server not found (${opts.bin ?? 'redis-server'}). Install it (Debian/Ubuntu: sudo apt-get install -y redis-server) or set REDIS_ADDRESS to an existing Redis 7.`,
            )
          : err,
      );
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      reject(new Error(`redis-server exited with code ${code}:\n${output}`));
    });
    const onData = (): void => {
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.removeAllListeners('exit');
        resolve();
      }
    };
    child.stdout?.on('data', onData);
  });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        rmSync(dir, { recursive: true, force: true });
        resolve();
        return;
      }
      child.once('exit', () => {
        rmSync(dir, { recursive: true, force: true });
        resolve();
      });
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    }));
  // Never leave an orphan behind if the owner exits without calling stop().
  process.once('exit', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { host, port, address: `${host}:${port}`, pid: child.pid ?? 0, stop };
}
