import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';

// Environment variables are parsed once at start-up into one typed object;
// anything invalid stops the process with the variable's name in the message.

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'TRUE', 'FALSE'])
  .transform((v) => ['true', '1', 'yes', 'TRUE'].includes(v));
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const num = (min: number, max: number) => z.coerce.number().min(min).max(max);

const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  SERVER_HOST: z.string().min(1).default('0.0.0.0'),
  SERVER_PORT: int(0, 65535).default(8000),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  INSTANCE_ID: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/).optional(),

  REDIS_ADDRESS: z
    .string()
    .regex(/^[^\s:,]+:\d{1,5}(,[^\s:,]+:\d{1,5})*$/, 'must be host:port (or a comma-separated list in cluster mode)')
    .optional(),
  REDIS_PASSWORD: z.string().optional(),
  REDIS_TLS_ENABLED: bool.default('false'),
  REDIS_CLUSTER_MODE: bool.default('false'),
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9:_-]{1,32}$/).default('wr:'),
  REDIS_SERVER_BIN: z.string().default('redis-server'),
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000).default(2000),

  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),

  QUEUE_AUTO_CREATE_EVENTS: bool.optional(),
  QUEUE_DEFAULT_RATE: num(0.001, 100000).default(10),
  QUEUE_DEFAULT_BURST: int(1, 1000000).default(20),
  QUEUE_READY_WINDOW_SEC: int(5, 86400).default(120),
  QUEUE_RECONNECT_GRACE_SEC: int(1, 3600).default(30),
  QUEUE_POLL_TIMEOUT_SEC: int(5, 86400).default(60),
  QUEUE_TICK_MS: int(20, 10000).default(250),
  QUEUE_LEASE_MS: int(500, 60000).default(3000),
  QUEUE_MAX_PROMOTIONS_PER_TICK: int(1, 100000).default(5000),
  QUEUE_MAX_SWEEP_PER_TICK: int(1, 100000).default(2000),
  QUEUE_FINISHED_RETENTION_SEC: int(10, 7 * 86400).default(3600),
  QUEUE_IDEMPOTENCY_TTL_SEC: int(10, 7 * 86400).default(600),

  ADMISSION_TOKEN_TTL_SEC: int(10, 86400).default(300),
  WS_MAX_CONNECTIONS: int(1, 1_000_000).default(60_000),
  WS_MAX_MESSAGE_BYTES: int(64, 65536).default(1024),
  WS_IDLE_TIMEOUT_SEC: int(8, 960).default(16),
  WS_MAX_BACKPRESSURE_BYTES: int(4096, 64 * 1024 * 1024).default(256 * 1024),
  REALTIME_NEAR_FRONT: int(1, 1_000_000).default(100),
  HTTP_MAX_BODY_BYTES: int(256, 10 * 1024 * 1024).default(16 * 1024),
});

export type RawEnv = z.infer<typeof schema>;

export interface Config {
  readonly env: RawEnv['NODE_ENV'];
  readonly instanceId: string;
  readonly server: { readonly host: string; readonly port: number; readonly maxBodyBytes: number };
  readonly logLevel: RawEnv['LOG_LEVEL'];
  readonly redis: {
    /** undefined = start an embedded throwaway redis-server */
    readonly address: string | undefined;
    readonly password: string | undefined;
    readonly tls: boolean;
    readonly cluster: boolean;
    readonly keyPrefix: string;
    readonly serverBin: string;
    readonly commandTimeoutMs: number;
  };
  readonly adminToken: string | undefined;
  readonly queue: {
    readonly autoCreateEvents: boolean;
    readonly defaultRate: number;
    readonly defaultBurst: number;
    readonly readyWindowSec: number;
    readonly reconnectGraceSec: number;
    readonly pollTimeoutSec: number;
    readonly tickMs: number;
    readonly leaseMs: number;
    readonly maxPromotionsPerTick: number;
    readonly maxSweepPerTick: number;
    readonly finishedRetentionSec: number;
    readonly idempotencyTtlSec: number;
  };
  readonly admissionTokenTtlSec: number;
  readonly ws: {
    readonly maxConnections: number;
    readonly maxMessageBytes: number;
    readonly idleTimeoutSec: number;
    readonly maxBackpressureBytes: number;
    readonly nearFront: number;
  };
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "not set" (common in k8s manifests and .env files).
  const cleaned: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') cleaned[key] = v;
  }
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.QUEUE_LEASE_MS < e.QUEUE_TICK_MS * 2) {
    throw new ConfigError('invalid configuration:\n  QUEUE_LEASE_MS: must be at least twice QUEUE_TICK_MS');
  }
  if (e.REDIS_CLUSTER_MODE) {
    throw new ConfigError('invalid configuration:\n  REDIS_CLUSTER_MODE: cluster mode is not supported by this version yet');
  }
  const embedded = e.REDIS_ADDRESS === undefined;
  return {
    env: e.NODE_ENV,
    instanceId: e.INSTANCE_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    server: { host: e.SERVER_HOST, port: e.SERVER_PORT, maxBodyBytes: e.HTTP_MAX_BODY_BYTES },
    logLevel: e.LOG_LEVEL,
    redis: {
      address: e.REDIS_ADDRESS,
      password: e.REDIS_PASSWORD,
      tls: e.REDIS_TLS_ENABLED,
      cluster: e.REDIS_CLUSTER_MODE,
      keyPrefix: e.REDIS_KEY_PREFIX,
      serverBin: e.REDIS_SERVER_BIN,
      commandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
    },
    adminToken: e.ADMIN_TOKEN,
    queue: {
      // The embedded default is for trying things out: unknown events are created on first join.
      autoCreateEvents: e.QUEUE_AUTO_CREATE_EVENTS ?? embedded,
      defaultRate: e.QUEUE_DEFAULT_RATE,
      defaultBurst: e.QUEUE_DEFAULT_BURST,
      readyWindowSec: e.QUEUE_READY_WINDOW_SEC,
      reconnectGraceSec: e.QUEUE_RECONNECT_GRACE_SEC,
      pollTimeoutSec: e.QUEUE_POLL_TIMEOUT_SEC,
      tickMs: e.QUEUE_TICK_MS,
      leaseMs: e.QUEUE_LEASE_MS,
      maxPromotionsPerTick: e.QUEUE_MAX_PROMOTIONS_PER_TICK,
      maxSweepPerTick: e.QUEUE_MAX_SWEEP_PER_TICK,
      finishedRetentionSec: e.QUEUE_FINISHED_RETENTION_SEC,
      idempotencyTtlSec: e.QUEUE_IDEMPOTENCY_TTL_SEC,
    },
    admissionTokenTtlSec: e.ADMISSION_TOKEN_TTL_SEC,
    ws: {
      maxConnections: e.WS_MAX_CONNECTIONS,
      maxMessageBytes: e.WS_MAX_MESSAGE_BYTES,
      idleTimeoutSec: e.WS_IDLE_TIMEOUT_SEC,
      maxBackpressureBytes: e.WS_MAX_BACKPRESSURE_BYTES,
      nearFront: e.REALTIME_NEAR_FRONT,
    },
  };
}

/** Names and defaults, for the README table and `--help`. */
export const configVariables = Object.keys(schema.shape);
