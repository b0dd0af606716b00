import { Redis, Cluster, ReplyError, type RedisOptions, type ClusterOptions } from 'ioredis';
import { SpanStatusCode } from '@opentelemetry/api';
import { startClientSpan } from '../observability/tracing.js';
import { scripts, type ScriptKey } from '../generated/lua.js';
import { AppError } from '../errors.js';

let observer: ((script: string, seconds: number) => void) | undefined;

/** Called with every script round trip (the gateway records redis_command_duration_seconds). */
export function observeRedis(fn: (script: string, seconds: number) => void): void {
  observer = fn;
}

export type RedisClient = Redis | Cluster;

/**
 * The one rule for store failures: a reply that reports a script or command
 * bug surfaces as it is (a 500), anything else (connection lost, command
 * timeout, fail-over replies such as CLUSTERDOWN) is 503 REDIS_UNAVAILABLE
 * with Retry-After.
 */
export function storeError(err: unknown): unknown {
  if (err instanceof ReplyError && !isTransientReplyError(err)) return err;
  return new AppError('REDIS_UNAVAILABLE', 'the queue store is unavailable, retry shortly', undefined, { 'Retry-After': '2' });
}

/** callScript with store failures mapped by storeError. */
export async function callStore(client: RedisClient, key: ScriptKey, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  try {
    return await callScript(client, key, keys, args);
  } catch (err) {
    throw storeError(err);
  }
}

/** Replies that mean "the store is failing over, loading or busy", not "this script is wrong". */
export function isTransientReplyError(err: unknown): boolean {
  return err instanceof ReplyError && /^(CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN|READONLY|BUSY|NOREPLICAS|MOVED|ASK)\b/.test((err as Error).message);
}

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
export function defineScripts(client: RedisClient): void {
  for (const key of Object.keys(scripts) as ScriptKey[]) {
    const s = scripts[key];
    client.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
}

export function parseSeeds(address: string): { host: string; port: number }[] {
  return address.split(',').map((a) => parseAddress(a.trim()));
}

/**
 * Redis Cluster: every script's keys share the event's hash tag (one slot);
 * reads go to primaries (read-your-writes: the original served stale replica
 * reads); tick messages use sharded pub/sub so they stay inside the event's
 * shard.
 */
export function connectRedisCluster(opts: RedisConnectOptions & { shardedSubscriber?: boolean }): Cluster {
  const options: ClusterOptions = {
    scaleReads: 'master',
    enableOfflineQueue: opts.offlineQueue ?? false,
    enableAutoPipelining: true,
    shardedSubscribers: opts.shardedSubscriber ?? false,
    clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
    slotsRefreshTimeout: 2000,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    redisOptions: {
      password: opts.password,
      tls: opts.tls ? {} : undefined,
      maxRetriesPerRequest: 1,
      commandTimeout: opts.commandTimeoutMs,
      connectionName: 'waiting-room-gateway',
    },
  };
  const client = new Cluster(parseSeeds(opts.address), options);
  defineScripts(client);
  return client;
}

export function connectRedis(opts: RedisConnectOptions & { sentinelMaster?: string | undefined }): Redis {
  const { host, port } = parseAddress(opts.address.split(',')[0]!);
  const options: RedisOptions = {
    // Sentinel: ask the sentinels for the current master (and again after a failover)
    ...(opts.sentinelMaster ? { sentinels: parseSeeds(opts.address), name: opts.sentinelMaster, role: 'master' as const } : { host, port }),
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
export function callScript(client: RedisClient, key: ScriptKey, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  const fn = (client as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[scripts[key].name];
  if (!fn) throw new Error(`script ${key} is not defined on this client`);
  const started = performance.now();
  // a span only inside a recorded request (src/observability/tracing.ts): nothing at all otherwise
  const span = startClientSpan(`redis ${key}`, { 'db.system': 'redis', 'db.operation.name': 'EVALSHA', 'db.query.summary': key });
  return fn.call(client, ...keys, ...args).then(
    (v) => {
      span?.end();
      observer?.(key, (performance.now() - started) / 1000);
      return v;
    },
    (err: unknown) => {
      span?.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      span?.end();
      observer?.(key, (performance.now() - started) / 1000);
      throw err;
    },
  );
}
