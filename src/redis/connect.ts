import { Redis, type RedisOptions } from 'ioredis';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { scripts, type ScriptKey } from '../generated/lua.js';

const tracer = trace.getTracer('waiting-room-gateway');
let observer: ((script: string, seconds: number) => void) | undefined;

/** Called with every script round trip (the gateway records redis_command_duration_seconds). */
export function observeRedis(fn: (script: string, seconds: number) => void): void {
  observer = fn;
}

export type RedisClient = Redis;

export interface RedisConnectOptions {
  address: string;
  password?: string | undefined;
  tls?: boolean;
  /** Fail commands fast while disconnected instead of queueing them without bound. */
  offlineQueue?: boolean;
  /** A command unanswered after this fails (503) instead of hanging a request. */
  commandTimeoutMs?: number;
}

export function parseAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** Registers every Lua script once, under its versioned command name. */
export function defineScripts(client: Redis): void {
  for (const key of Object.keys(scripts) as ScriptKey[]) {
    const s = scripts[key];
    client.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
}

export function connectRedis(opts: RedisConnectOptions): Redis {
  const { host, port } = parseAddress(opts.address);
  const options: RedisOptions = {
    host,
    port,
    password: opts.password,
    tls: opts.tls ? {} : undefined,
    // Requests must not hang while Redis is away: fail them (503) and let
    // ioredis reconnect in the background.
    enableOfflineQueue: opts.offlineQueue ?? false,
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
    commandTimeout: opts.commandTimeoutMs,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(50 * times, 1000),
    connectionName: 'waiting-room-gateway',
  };
  const client = new Redis(options);
  defineScripts(client);
  return client;
}

/** Calls a defined script by its key (a client span and a latency sample per call). */
export function callScript(client: Redis, key: ScriptKey, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  const fn = (client as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[scripts[key].name];
  if (!fn) throw new Error(`script ${key} is not defined on this client`);
  const started = performance.now();
  const span = tracer.startSpan(`redis ${key}`, { kind: SpanKind.CLIENT, attributes: { 'db.system': 'redis', 'db.operation.name': 'EVALSHA', 'db.query.summary': key } });
  return fn.call(client, ...keys, ...args).then(
    (v) => {
      span.end();
      observer?.(key, (performance.now() - started) / 1000);
      return v;
    },
    (err: unknown) => {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      span.end();
      observer?.(key, (performance.now() - started) / 1000);
      throw err;
    },
  );
}
