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
  /**
   * Listening sockets on the port (SO_REUSEPORT). uWebSockets.js fixes each
   * one's accept queue at 512: a reconnect storm's SYNs beyond it are dropped
   * by the kernel and retried by the clients 1, 3, 7 s later. Eight give the
   * 4,096 of the kernel's default somaxconn. Port 0 gets one.
   */
  SERVER_LISTEN_SOCKETS: int(1, 64).default(8),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** auto: readable lines on a terminal, JSON otherwise (log collectors read JSON) */
  LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
  INSTANCE_ID: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/).optional(),

  REDIS_ADDRESS: z
    .string()
    .regex(/^[^\s:,]+:\d{1,5}(,[^\s:,]+:\d{1,5})*$/, 'must be host:port (or a comma-separated list in cluster mode)')
    .optional(),
  REDIS_PASSWORD: z.string().optional(),
  REDIS_TLS_ENABLED: bool.default('false'),
  REDIS_CLUSTER_MODE: bool.default('false'),
  /** Sentinel: the monitored master's name; REDIS_ADDRESS then lists the sentinels */
  REDIS_SENTINEL_MASTER: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional(),
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
  /** current signing key: a private JWK (EdDSA Ed25519 or ES256 P-256) with a kid, as JSON */
  ADMISSION_SIGNING_JWK: z.string().optional(),
  /** previous keys still published in /.well-known/jwks.json until their tokens expire: a JSON array of public (or private) JWKs */
  ADMISSION_PREVIOUS_JWKS: z.string().optional(),
  ADMISSION_ISSUER: z.string().min(1).default('waiting-room-gateway'),

  JWT_SECRET: z.string().optional(),
  JWT_JWKS_ENDPOINT: z.string().url().optional(),
  JWT_ISSUER: z.string().min(1).optional(),
  JWT_AUDIENCE: z.string().min(1).optional(),
  JWT_ALGORITHMS: z.string().optional(),
  JWT_CLOCK_TOLERANCE_SEC: int(0, 300).default(5),
  JWT_JWKS_COOLDOWN_SEC: int(1, 3600).default(30),
  /** development only: POST /api/v1/dev/token mints short-lived JWTs for the local page */
  DEV_TOKENS_ENABLED: bool.optional(),

  BACKEND_RESERVATION_API_GRPC_ADDRESS: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port').optional(),
  BACKEND_RESERVATION_API_TIMEOUT: z.string().regex(/^\d+(ms|s)?$/, 'a duration like 3s or 500ms').default('3s'),
  BACKEND_RESERVATION_API_TLS_ENABLED: bool.default('false'),
  BACKEND_PAYMENT_API_GRPC_ADDRESS: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port').optional(),
  BACKEND_PAYMENT_API_TIMEOUT: z.string().regex(/^\d+(ms|s)?$/, 'a duration like 3s or 500ms').default('5s'),
  BACKEND_PAYMENT_API_TLS_ENABLED: bool.default('false'),
  BACKEND_TLS_CA_FILE: z.string().optional(),
  BACKEND_RETRIES: int(0, 5).default(2),
  BACKEND_BREAKER_ERROR_PERCENT: int(1, 100).default(50),
  BACKEND_BREAKER_VOLUME: int(1, 10_000).default(5),
  BACKEND_BREAKER_RESET_MS: int(100, 600_000).default(5000),
  OBSERVABILITY_OTLP_ENDPOINT: z.string().url().optional(),
  OBSERVABILITY_SAMPLE_RATE: num(0, 1).default(0.1),
  RATE_LIMIT_RPS: num(0.1, 1_000_000).default(50),
  RATE_LIMIT_BURST: int(1, 1_000_000).default(100),
  RATE_LIMIT_USER_RPS: num(0.1, 1_000_000).optional(),
  RATE_LIMIT_USER_BURST: int(1, 1_000_000).optional(),
  RATE_LIMIT_MAX_CLIENTS: int(100, 10_000_000).default(200_000),
  TRUST_PROXY: bool.default('false'),
  CORS_ALLOW_ORIGINS: z.string().optional(),
  WS_MAX_PER_IP: int(1, 1_000_000).default(20),
  WS_CONNECT_RPS: num(0.1, 100_000).default(5),
  WS_CONNECT_BURST: int(1, 100_000).default(20),
  WS_MESSAGE_RPS: num(0.1, 10_000).default(5),
  WS_MESSAGE_BURST: int(1, 10_000).default(20),
  IDEMPOTENCY_TTL_SEC: int(60, 7 * 86400).default(86_400),
  IDEMPOTENCY_INFLIGHT_TTL_SEC: int(5, 3600).default(60),
  WS_MAX_CONNECTIONS: int(1, 1_000_000).default(60_000),
  WS_MAX_MESSAGE_BYTES: int(64, 65536).default(16384),
  WS_IDLE_TIMEOUT_SEC: int(8, 960).default(16),
  WS_MAX_BACKPRESSURE_BYTES: int(4096, 64 * 1024 * 1024).default(256 * 1024),
  REALTIME_NEAR_FRONT: int(1, 1_000_000).default(100),
  /**
   * Redis reads for attaching users (a socket's first read, a poll's) in
   * flight at once on this instance; the rest wait their turn in order.
   * Without a bound a reconnect storm queued every read at once, they
   * outlasted REDIS_COMMAND_TIMEOUT_MS, each failure sent a client back
   * (4103) to add another read, and three instances of 15,000 never came back.
   */
  REALTIME_ATTACH_CONCURRENCY: int(1, 100_000).default(64),
  HTTP_MAX_BODY_BYTES: int(256, 10 * 1024 * 1024).default(16 * 1024),
  /** where the page sends an admitted user of an event without its own target_url, with ?admission_token= (empty: the page shows the admission) */
  PAGE_TARGET_URL: z.string().url().optional(),
  /** origins an event's target_url (and PAGE_TARGET_URL) may point to, comma-separated: no open redirect */
  PAGE_TARGET_ORIGINS: z.string().optional(),
  /** access of events that do not set their own: user (a verified user enters) or anonymous (the waiting token is the credential) */
  QUEUE_DEFAULT_ACCESS: z.enum(['user', 'anonymous']).default('user'),
  /** API keys of the origin (ticket site) servers that redeem admission tokens at POST /api/v1/admissions/redeem, comma-separated, each at least 32 characters */
  ORIGIN_API_KEYS: z.string().optional(),

  /** key of the join challenges' MACs, shared by every instance (default: derived from ADMISSION_SIGNING_JWK; in development without one, per process) */
  CHALLENGE_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  CHALLENGE_TTL_SEC: int(10, 3600).default(120),
  /** proof-of-work difficulty (leading zero bits) of an event whose challenge does not set one */
  CHALLENGE_DEFAULT_DIFFICULTY: int(1, 32).default(21),
  /** the external verifier events with challenge {kind: "external"} use: POST {token, event_id, remote_ip} -> {success} */
  CHALLENGE_VERIFY_URL: z.string().url().optional(),
  CHALLENGE_VERIFY_TIMEOUT_MS: int(100, 30_000).default(2000),
  /** adaptive outflow: how often the controller looks, and the window of backend calls it judges */
  ADAPTIVE_INTERVAL_MS: int(500, 60_000).default(3000),
  ADAPTIVE_WINDOW_SEC: int(2, 120).default(10),
});

export type RawEnv = z.infer<typeof schema>;

export interface Config {
  readonly env: RawEnv['NODE_ENV'];
  readonly instanceId: string;
  readonly server: { readonly host: string; readonly port: number; readonly listenSockets: number; readonly maxBodyBytes: number };
  readonly logLevel: RawEnv['LOG_LEVEL'];
  readonly logFormat: RawEnv['LOG_FORMAT'];
  readonly redis: {
    /** undefined = start an embedded throwaway redis-server */
    readonly address: string | undefined;
    readonly password: string | undefined;
    readonly tls: boolean;
    readonly cluster: boolean;
    /** undefined = no Sentinel */
    readonly sentinelMaster: string | undefined;
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
    readonly defaultAccess: 'user' | 'anonymous';
  };
  readonly admissionTokenTtlSec: number;
  readonly challenge: {
    /** undefined: a per-process key (development only) */
    readonly secret: string | undefined;
    readonly ttlSec: number;
    readonly defaultDifficulty: number;
    readonly verifyUrl: string | undefined;
    readonly verifyTimeoutMs: number;
  };
  readonly adaptive: { readonly intervalMs: number; readonly windowSec: number };
  readonly pageTargetUrl: string;
  /** origins a page target may point to */
  readonly pageTargetOrigins: readonly string[];
  /** keys of origin servers allowed to redeem admission tokens */
  readonly originApiKeys: readonly string[];
  readonly admission: {
    readonly signingJwk: string | undefined;
    readonly previousJwks: string | undefined;
    readonly issuer: string;
  };
  readonly auth: {
    /** undefined = no user authentication configured (open mode) */
    readonly mode: 'secret' | 'jwks' | undefined;
    readonly secret: string | undefined;
    readonly jwksEndpoint: string | undefined;
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    readonly algorithms: readonly string[];
    readonly clockToleranceSec: number;
    readonly jwksCooldownSec: number;
    readonly devTokens: boolean;
  };
  readonly rateLimit: {
    readonly rps: number;
    readonly burst: number;
    readonly userRps: number;
    readonly userBurst: number;
    readonly maxClients: number;
    readonly trustProxy: boolean;
  };
  readonly corsAllowOrigins: readonly string[];
  readonly observability: { readonly otlpEndpoint: string | undefined; readonly sampleRate: number };
  readonly backends: {
    readonly reservation: BackendConfig;
    readonly payment: BackendConfig;
    readonly tlsCaFile: string | undefined;
    readonly retries: number;
    readonly breaker: { readonly errorPercent: number; readonly volume: number; readonly resetMs: number };
  };
  readonly idempotency: { readonly ttlSec: number; readonly inflightTtlSec: number };
  readonly ws: {
    readonly maxPerIp: number;
    readonly connectRps: number;
    readonly connectBurst: number;
    readonly messageRps: number;
    readonly messageBurst: number;
    readonly maxConnections: number;
    readonly maxMessageBytes: number;
    readonly idleTimeoutSec: number;
    readonly maxBackpressureBytes: number;
    readonly nearFront: number;
    readonly attachConcurrency: number;
  };
}

export interface BackendConfig {
  /** undefined = start a local simulator (development) */
  readonly address: string | undefined;
  readonly timeoutMs: number;
  readonly tls: boolean;
}

export class ConfigError extends Error {}

const durationMs = (d: string): number => (d.endsWith('ms') ? Number(d.slice(0, -2)) : d.endsWith('s') ? Number(d.slice(0, -1)) * 1000 : Number(d));

/** Read, validate and combine the environment: one typed Config, or a ConfigError naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const e = parseEnv(env);
  return toConfig(e, checkCombinations(e));
}

/** Each variable on its own, by the schema (empty strings mean "not set": common in k8s manifests and .env files). */
function parseEnv(env: NodeJS.ProcessEnv): RawEnv {
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
  return parsed.data;
}

/** What the variables decide together, derived once the rules between them hold. */
interface Derived {
  embedded: boolean;
  production: boolean;
  mode: 'secret' | 'jwks' | undefined;
  algorithms: string[];
  devTokens: boolean;
  targetOrigins: string[];
  originKeys: string[];
  origins: string[];
}

const fail = (name: string, why: string): never => {
  throw new ConfigError(`invalid configuration:\n  ${name}: ${why}`);
};

/** The rules between variables, production's stricter ones, and the lists split and checked. */
function checkCombinations(e: RawEnv): Derived {
  if (e.QUEUE_LEASE_MS < e.QUEUE_TICK_MS * 2) fail('QUEUE_LEASE_MS', 'must be at least twice QUEUE_TICK_MS');
  if (e.REDIS_CLUSTER_MODE && e.REDIS_ADDRESS === undefined) fail('REDIS_ADDRESS', 'cluster mode needs the seed nodes (host:port,host:port,...)');
  if (e.REDIS_SENTINEL_MASTER && (e.REDIS_CLUSTER_MODE || e.REDIS_ADDRESS === undefined)) fail('REDIS_SENTINEL_MASTER', 'needs REDIS_ADDRESS (the sentinels) and no REDIS_CLUSTER_MODE');
  if (!e.REDIS_CLUSTER_MODE && !e.REDIS_SENTINEL_MASTER && e.REDIS_ADDRESS?.includes(',')) {
    fail('REDIS_ADDRESS', 'a list of nodes needs REDIS_CLUSTER_MODE=true (or REDIS_SENTINEL_MASTER for sentinels)');
  }
  const embedded = e.REDIS_ADDRESS === undefined;
  const production = e.NODE_ENV === 'production';
  // Development conveniences: never in production (the original shipped dev bypass tokens to production).
  if (production && e.DEV_TOKENS_ENABLED) fail('DEV_TOKENS_ENABLED', 'development token minting cannot be enabled with NODE_ENV=production');
  if (production && embedded) fail('REDIS_ADDRESS', 'required with NODE_ENV=production (the throwaway redis-server is for development)');
  if (e.JWT_SECRET !== undefined && e.JWT_JWKS_ENDPOINT !== undefined) fail('JWT_SECRET', 'set either JWT_SECRET or JWT_JWKS_ENDPOINT, not both');
  if (e.JWT_SECRET !== undefined && Buffer.byteLength(e.JWT_SECRET) < 32) fail('JWT_SECRET', 'must be at least 32 bytes (HS256 key)');
  if (production && e.CHALLENGE_VERIFY_URL && !e.CHALLENGE_VERIFY_URL.startsWith('https://')) fail('CHALLENGE_VERIFY_URL', 'must be https:// with NODE_ENV=production');
  if (production && e.JWT_JWKS_ENDPOINT && !e.JWT_JWKS_ENDPOINT.startsWith('https://')) fail('JWT_JWKS_ENDPOINT', 'must be https:// with NODE_ENV=production');
  if (production && e.ADMIN_TOKEN !== undefined && e.ADMIN_TOKEN.length < 32) fail('ADMIN_TOKEN', 'must be at least 32 characters with NODE_ENV=production');
  if (production && e.JWT_SECRET === undefined && e.JWT_JWKS_ENDPOINT === undefined) {
    fail('JWT_SECRET', 'production needs user authentication: set JWT_SECRET or JWT_JWKS_ENDPOINT');
  }
  if (production && e.ADMISSION_SIGNING_JWK === undefined) {
    fail('ADMISSION_SIGNING_JWK', 'required with NODE_ENV=production (every instance must sign with the same key)');
  }
  if (production && (!e.BACKEND_RESERVATION_API_GRPC_ADDRESS || !e.BACKEND_PAYMENT_API_GRPC_ADDRESS)) {
    fail(e.BACKEND_RESERVATION_API_GRPC_ADDRESS ? 'BACKEND_PAYMENT_API_GRPC_ADDRESS' : 'BACKEND_RESERVATION_API_GRPC_ADDRESS', 'required with NODE_ENV=production (the local simulators are for development)');
  }
  for (const [name, v] of [['BACKEND_RESERVATION_API_TIMEOUT', e.BACKEND_RESERVATION_API_TIMEOUT], ['BACKEND_PAYMENT_API_TIMEOUT', e.BACKEND_PAYMENT_API_TIMEOUT]] as const) {
    const ms = durationMs(v);
    if (ms < 10 || ms > 120_000) fail(name, 'must be between 10ms and 120s');
  }
  const mode = e.JWT_SECRET !== undefined ? 'secret' : e.JWT_JWKS_ENDPOINT !== undefined ? 'jwks' : undefined;
  const allowed = mode === 'secret' ? ['HS256', 'HS384', 'HS512'] : ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
  const algorithms = e.JWT_ALGORITHMS ? e.JWT_ALGORITHMS.split(',').map((a) => a.trim()) : mode === 'secret' ? ['HS256'] : ['RS256', 'ES256', 'EdDSA'];
  for (const a of algorithms) {
    if (!allowed.includes(a)) fail('JWT_ALGORITHMS', `${a} is not allowed ${mode === 'secret' ? 'with a shared secret' : 'with JWKS'} (allowed: ${allowed.join(', ')})`);
  }
  // the embedded quick start mints dev tokens so the local page can walk the whole path
  const devTokens = e.DEV_TOKENS_ENABLED ?? (embedded && !production);
  if (devTokens && mode === 'jwks') fail('DEV_TOKENS_ENABLED', 'dev tokens are minted with a shared secret; not available with JWT_JWKS_ENDPOINT');
  const targetOrigins = (e.PAGE_TARGET_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  for (const o of targetOrigins) if (!/^https?:\/\/[^/\s]+$/.test(o)) fail('PAGE_TARGET_ORIGINS', `${o} is not an origin (scheme://host[:port])`);
  if (e.PAGE_TARGET_URL && !targetOrigins.includes(new URL(e.PAGE_TARGET_URL).origin)) fail('PAGE_TARGET_URL', 'its origin must be one of PAGE_TARGET_ORIGINS (no open redirect)');
  const originKeys = (e.ORIGIN_API_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean);
  for (const k of originKeys) if (k.length < 32 || !/^[\x21-\x7e]+$/.test(k)) fail('ORIGIN_API_KEYS', 'every key must be at least 32 printable characters');
  const origins = (e.CORS_ALLOW_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  if (origins.includes('*') && origins.length > 1) fail('CORS_ALLOW_ORIGINS', '"*" cannot be combined with explicit origins');
  for (const o of origins) if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) fail('CORS_ALLOW_ORIGINS', `${o} is not an origin (scheme://host[:port])`);
  return { embedded, production, mode, algorithms, devTokens, targetOrigins, originKeys, origins };
}

function toConfig(e: RawEnv, d: Derived): Config {
  const { embedded, mode, algorithms, devTokens, targetOrigins, originKeys, origins } = d;
  return {
    env: e.NODE_ENV,
    instanceId: e.INSTANCE_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    server: { host: e.SERVER_HOST, port: e.SERVER_PORT, listenSockets: e.SERVER_LISTEN_SOCKETS, maxBodyBytes: e.HTTP_MAX_BODY_BYTES },
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    redis: {
      address: e.REDIS_ADDRESS,
      password: e.REDIS_PASSWORD,
      tls: e.REDIS_TLS_ENABLED,
      cluster: e.REDIS_CLUSTER_MODE,
      sentinelMaster: e.REDIS_SENTINEL_MASTER,
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
      defaultAccess: e.QUEUE_DEFAULT_ACCESS,
    },
    admissionTokenTtlSec: e.ADMISSION_TOKEN_TTL_SEC,
    challenge: {
      secret: e.CHALLENGE_SECRET ?? (e.ADMISSION_SIGNING_JWK ? `admission-jwk:${e.ADMISSION_SIGNING_JWK}` : undefined),
      ttlSec: e.CHALLENGE_TTL_SEC,
      defaultDifficulty: e.CHALLENGE_DEFAULT_DIFFICULTY,
      verifyUrl: e.CHALLENGE_VERIFY_URL,
      verifyTimeoutMs: e.CHALLENGE_VERIFY_TIMEOUT_MS,
    },
    adaptive: { intervalMs: e.ADAPTIVE_INTERVAL_MS, windowSec: e.ADAPTIVE_WINDOW_SEC },
    pageTargetUrl: e.PAGE_TARGET_URL ?? '',
    pageTargetOrigins: targetOrigins,
    originApiKeys: originKeys,
    admission: { signingJwk: e.ADMISSION_SIGNING_JWK, previousJwks: e.ADMISSION_PREVIOUS_JWKS, issuer: e.ADMISSION_ISSUER },
    auth: {
      mode,
      // dev tokens without a configured secret: an ephemeral one, per process (development only)
      secret: e.JWT_SECRET,
      jwksEndpoint: e.JWT_JWKS_ENDPOINT,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      algorithms,
      clockToleranceSec: e.JWT_CLOCK_TOLERANCE_SEC,
      jwksCooldownSec: e.JWT_JWKS_COOLDOWN_SEC,
      devTokens,
    },
    rateLimit: {
      rps: e.RATE_LIMIT_RPS,
      burst: e.RATE_LIMIT_BURST,
      userRps: e.RATE_LIMIT_USER_RPS ?? e.RATE_LIMIT_RPS,
      userBurst: e.RATE_LIMIT_USER_BURST ?? e.RATE_LIMIT_BURST,
      maxClients: e.RATE_LIMIT_MAX_CLIENTS,
      trustProxy: e.TRUST_PROXY,
    },
    corsAllowOrigins: origins,
    observability: { otlpEndpoint: e.OBSERVABILITY_OTLP_ENDPOINT, sampleRate: e.OBSERVABILITY_SAMPLE_RATE },
    backends: {
      reservation: { address: e.BACKEND_RESERVATION_API_GRPC_ADDRESS, timeoutMs: durationMs(e.BACKEND_RESERVATION_API_TIMEOUT), tls: e.BACKEND_RESERVATION_API_TLS_ENABLED },
      payment: { address: e.BACKEND_PAYMENT_API_GRPC_ADDRESS, timeoutMs: durationMs(e.BACKEND_PAYMENT_API_TIMEOUT), tls: e.BACKEND_PAYMENT_API_TLS_ENABLED },
      tlsCaFile: e.BACKEND_TLS_CA_FILE,
      retries: e.BACKEND_RETRIES,
      breaker: { errorPercent: e.BACKEND_BREAKER_ERROR_PERCENT, volume: e.BACKEND_BREAKER_VOLUME, resetMs: e.BACKEND_BREAKER_RESET_MS },
    },
    idempotency: { ttlSec: e.IDEMPOTENCY_TTL_SEC, inflightTtlSec: e.IDEMPOTENCY_INFLIGHT_TTL_SEC },
    ws: {
      maxPerIp: e.WS_MAX_PER_IP,
      connectRps: e.WS_CONNECT_RPS,
      connectBurst: e.WS_CONNECT_BURST,
      messageRps: e.WS_MESSAGE_RPS,
      messageBurst: e.WS_MESSAGE_BURST,
      maxConnections: e.WS_MAX_CONNECTIONS,
      maxMessageBytes: e.WS_MAX_MESSAGE_BYTES,
      idleTimeoutSec: e.WS_IDLE_TIMEOUT_SEC,
      maxBackpressureBytes: e.WS_MAX_BACKPRESSURE_BYTES,
      nearFront: e.REALTIME_NEAR_FRONT,
      attachConcurrency: e.REALTIME_ATTACH_CONCURRENCY,
    },
  };
}

/** Names and defaults, for the README table and `--help`. */
export const configVariables = Object.keys(schema.shape);
