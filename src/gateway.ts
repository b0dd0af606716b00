import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Config } from './config.js';
import type { Redis } from 'ioredis';
import type { Logger } from './log.js';
import { connectRedis, connectRedisCluster, observeRedis, type RedisClient } from './redis/connect.js';
import { RedisHealth } from './redis/health.js';
import { startTracing } from './observability/tracing.js';
import { QueueStore } from './queue/store.js';
import { EventRegistry } from './queue/registry.js';
import { RedisBroker } from './queue/broker.js';
import { Ticker } from './queue/ticker.js';
import { BackendHealth } from './queue/backend-health.js';
import { OutflowController } from './queue/adaptive.js';
import { ChallengeIssuer, HttpVerifier } from './auth/challenge.js';
import { createMetrics, type Metrics } from './metrics.js';
import { AdmissionTokenIssuer, AdmissionTokenLedger } from './auth/admission-token.js';
import { UserAuth } from './auth/user-auth.js';
import { HttpEdge } from './http/edge.js';
import { queueRoutes } from './http/routes-queue.js';
import { adminRoutes } from './http/routes-admin.js';
import { drawRoutes } from './http/routes-draw.js';
import { healthRoutes } from './http/routes-health.js';
import { authRoutes } from './http/routes-auth.js';
import { staticRoutes, projectRoot } from './http/static.js';
import { waitRoutes } from './http/page-wait.js';
import { Catalogues } from './http/i18n.js';
import { registerAdminFeed } from './http/admin-feed.js';
import { docsRoutes } from './http/routes-docs.js';
import { reservationRoutes } from './http/routes-reservations.js';
import { openApiDocument } from './http/openapi.js';
import { TokenBuckets } from './net/rate-limit.js';
import { Idempotency } from './http/idempotency.js';
import { Realtime } from './realtime/realtime.js';
import { registerWsRoute } from './realtime/ws-route.js';
import { Sockets, type WsOptions } from './realtime/sockets.js';
import { Close } from './protocol/wire.js';
import { Reservations, Payments } from './backends/reservations.js';
import { GrpcBackend, channelCredentials } from './backends/grpc-backend.js';
import { loadProtos } from './backends/proto.js';

// Composition root of one gateway instance: five parts, each made here and
// owning its start and stop, started in order and stopped in the reverse
// order:
//
//   infrastructure  Redis (commands and the pub/sub broker), its health, metrics, tracing
//   queue           the store, the event registry, the ticker (leases)
//   backends        the gRPC clients of the reservation and payment services
//   real time       sockets and the per-event rooms
//   edge            the HTTP routes and the WebSocket upgrades on uWebSockets.js
//
// A graceful stop therefore first makes readiness 503 and stops accepting
// (edge), tells sockets to reconnect elsewhere and writes their liveness
// claims (real time), lets requests in flight finish, releases the ticker
// leases (queue), and disconnects last. Which backends and which Redis to use
// is the caller's choice (the development entry point starts simulators and a
// throwaway redis-server; production gives addresses).

export interface Gateway {
  readonly port: number;
  readonly config: Config;
  readonly store: QueueStore;
  readonly ticker: Ticker;
  readonly metrics: Metrics;
  readonly redis: RedisClient;
  readonly realtime: Realtime;
  readonly sockets: Sockets;
  /** every registered (method, pattern), for the OpenAPI sync test */
  routes(): { method: string; pattern: string }[];
  /** readiness 503, stop accepting, finish in-flight requests, release ticker leases, disconnect */
  stop(): Promise<void>;
}

export interface Wiring {
  redisAddress: string;
  reservationAddress: string;
  paymentAddress: string;
}

interface Part {
  readonly name: string;
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
}

/** Redis for commands and pub/sub, its health, metrics and tracing. */
class Infrastructure implements Part {
  readonly name = 'infrastructure';
  readonly redis: RedisClient;
  readonly broker: RedisBroker;
  readonly health: RedisHealth;
  /** the health check's own connection (src/redis/health.ts says why) */
  private readonly probe: RedisClient;
  readonly metrics = createMetrics();

  constructor(
    private readonly config: Config,
    private readonly address: string,
    private readonly log: Logger,
  ) {
    const redisOpts = { address, password: config.redis.password, tls: config.redis.tls, commandTimeoutMs: config.redis.commandTimeoutMs };
    const cluster = config.redis.cluster;
    this.redis = cluster ? connectRedisCluster(redisOpts) : connectRedis({ ...redisOpts, sentinelMaster: config.redis.sentinelMaster });
    const onSubscriberError = (err: Error): void => log.warn({ err }, 'redis subscriber error');
    const metrics = this.metrics;
    const onBadTick = (err: Error): void => {
      metrics.tickMessagesRejected.inc();
      log.warn({ err }, 'tick message rejected');
    };
    // the subscriber connection: offline queue on (SUBSCRIBE waits for the connection), no
    // auto-pipelining (it batched SUBSCRIBE with commands a subscriber connection refuses)
    const redis = this.redis;
    this.broker = cluster
      ? new RedisBroker(redis, () => connectRedisCluster({ ...redisOpts, offlineQueue: true, shardedSubscriber: true }), true, onSubscriberError, onBadTick)
      : new RedisBroker(redis, () => (redis as Redis).duplicate({ enableOfflineQueue: true, enableAutoPipelining: false }), false, onSubscriberError, onBadTick);
    this.probe = cluster ? connectRedisCluster(redisOpts) : (redis as Redis).duplicate({ enableAutoPipelining: false });
    this.probe.on('error', (err: Error) => log.debug({ err }, 'redis health connection error'));
    this.health = new RedisHealth(redis, log, 1000, this.probe);
  }

  async start(): Promise<void> {
    const { redis, log, address } = this;
    redis.on('error', (err: Error) => log.debug({ err }, 'redis connection error'));
    let up = false;
    redis.on('ready', () => {
      if (!up) log.info({ redis: address }, 'redis connected');
      up = true;
    });
    redis.on('close', () => {
      if (up && !this.stopping) log.warn({ redis: address }, 'redis connection lost; reconnecting');
      up = false;
    });
    // Serve even if Redis is not up yet (readiness says so), but give it a
    // moment so a normal start does not log a burst of failed ticks.
    await new Promise<void>((resolve) => {
      if (redis.status === 'ready') return resolve();
      const t = setTimeout(resolve, 5000);
      redis.once('ready', () => {
        clearTimeout(t);
        resolve();
      });
    });
    const o = this.config.observability;
    startTracing({ otlpEndpoint: o.otlpEndpoint, sampleRate: o.sampleRate, instanceId: this.config.instanceId });
    observeRedis((script, seconds) => this.metrics.redisDuration.observe({ command: script }, seconds));
    this.health.start();
  }

  private stopping = false;

  async stop(): Promise<void> {
    this.stopping = true;
    this.health.stop();
    await this.broker.close();
    this.probe.disconnect();
    this.redis.disconnect();
  }
}

/** The line: store, registry, ticker, the admission ledger and request idempotency (all Redis). */
class QueuePart implements Part {
  readonly name = 'queue';
  readonly store: QueueStore;
  readonly registry: EventRegistry;
  readonly ticker: Ticker;
  readonly ledger: AdmissionTokenLedger;
  readonly idempotency: Idempotency;
  /** backend calls of every instance, per second, for the adaptive controller */
  readonly health: BackendHealth;
  readonly outflow: OutflowController;

  constructor(config: Config, infra: Infrastructure, log: Logger) {
    const { redis, metrics } = infra;
    const prefix = config.redis.keyPrefix;
    this.store = new QueueStore(redis, prefix);
    this.registry = new EventRegistry(redis, prefix);
    // an attempt may be resumed by another call once the backend's deadline has surely passed
    this.ledger = new AdmissionTokenLedger(redis, prefix, config.backends.reservation.timeoutMs + 2000);
    this.idempotency = new Idempotency(redis, prefix, config.idempotency.ttlSec * 1000, config.idempotency.inflightTtlSec * 1000, metrics, log);
    const q = config.queue;
    this.ticker = new Ticker(
      this.store,
      this.registry,
      infra.broker,
      {
        instanceId: config.instanceId,
        tickMs: q.tickMs,
        leaseMs: q.leaseMs,
        maxPromote: q.maxPromotionsPerTick,
        maxSweep: q.maxSweepPerTick,
        retentionMs: q.finishedRetentionSec * 1000,
        // after an outage, give every live user one full liveness window to be refreshed
        quietMs: Math.max(q.pollTimeoutSec, q.reconnectGraceSec) * 1000 + 5000,
      },
      log,
      metrics,
    );
    this.health = new BackendHealth(redis, prefix, log);
    this.outflow = new OutflowController(
      this.store,
      this.health,
      { instanceId: config.instanceId, intervalMs: config.adaptive.intervalMs, windowSec: config.adaptive.windowSec, heldEvents: () => this.ticker.heldEvents() },
      log,
      metrics,
    );
  }

  start(): void {
    this.ticker.start();
    this.health.start();
    this.outflow.start();
  }

  /** releases every lease, so another instance takes over at once */
  async stop(): Promise<void> {
    this.outflow.stop();
    await this.ticker.stop();
    await this.health.stop();
  }
}

/** The gRPC clients of the backends. */
class BackendsPart implements Part {
  readonly name = 'backends';
  readonly reservations: Reservations;
  readonly payments: Payments;
  private readonly clients: GrpcBackend<never>[] = [];

  constructor(config: Config, wiring: Wiring, metrics: Metrics, log: Logger, health: BackendHealth) {
    const b = config.backends;
    const protos = loadProtos();
    const common = { retries: b.retries, breaker: b.breaker, metrics, log, observe: (service: string, ms: number, failed: boolean) => health.record(service, ms, failed) };
    const reservation = new GrpcBackend(new protos.reservation.v1.ReservationService(wiring.reservationAddress, channelCredentials(b.reservation.tls, b.tlsCaFile)), {
      ...common,
      service: 'reservation',
      timeoutMs: b.reservation.timeoutMs,
    });
    const payment = new GrpcBackend(new protos.payment.v1.PaymentService(wiring.paymentAddress, channelCredentials(b.payment.tls, b.tlsCaFile)), {
      ...common,
      service: 'payment',
      timeoutMs: b.payment.timeoutMs,
    });
    this.clients.push(reservation as unknown as GrpcBackend<never>, payment as unknown as GrpcBackend<never>);
    this.reservations = new Reservations(reservation);
    this.payments = new Payments(payment);
  }

  start(): void {}

  stop(): void {
    for (const c of this.clients) c.close();
  }
}

/** Sockets and the per-event rooms. */
class RealtimePart implements Part {
  readonly name = 'real time';
  readonly sockets: Sockets;
  readonly realtime: Realtime;
  readonly wsOptions: WsOptions;

  constructor(config: Config, infra: Infrastructure, queue: QueuePart, log: Logger) {
    const ws = config.ws;
    this.wsOptions = {
      maxPerIp: ws.maxPerIp,
      connectRps: ws.connectRps,
      connectBurst: ws.connectBurst,
      messageRps: ws.messageRps,
      messageBurst: ws.messageBurst,
      maxClients: config.rateLimit.maxClients,
      maxConnections: ws.maxConnections,
      softBackpressureBytes: Math.min(64 * 1024, Math.floor(ws.maxBackpressureBytes / 4)),
      maxBackpressureBytes: ws.maxBackpressureBytes,
      maxMessageBytes: ws.maxMessageBytes,
      idleTimeoutSec: ws.idleTimeoutSec,
    };
    this.sockets = new Sockets(this.wsOptions, infra.metrics);
    const q = config.queue;
    this.realtime = new Realtime(
      queue.store,
      infra.broker,
      this.sockets,
      { instanceId: config.instanceId, tickMs: q.tickMs, pollTimeoutMs: q.pollTimeoutSec * 1000, reconnectGraceMs: q.reconnectGraceSec * 1000, nearFront: ws.nearFront, attachConcurrency: ws.attachConcurrency },
      log,
      infra.metrics,
    );
    // Redis away: sockets stay open and are told the line is paused; back: resumed with a fresh position
    // (not while draining: the sockets are being closed with 4100 anyway)
    infra.health.onChange((up) => {
      if (!this.stopping) this.realtime.storeAvailability(up);
    });
  }

  private stopping = false;

  start(): void {
    this.realtime.start();
  }

  /** every socket told to reconnect elsewhere (4100); closing them wrote their users' claims: flushed before going */
  async stop(): Promise<void> {
    this.stopping = true;
    this.sockets.closeAll(Close.DRAINING, 'draining: reconnect');
    await this.realtime.stop();
  }
}

/** The HTTP routes and the WebSocket upgrades on one uWebSockets.js app. */
class EdgePart implements Part {
  readonly name = 'edge';
  readonly http: HttpEdge;
  port = 0;
  draining = false;
  private readonly adminFeed: { stop(): void };

  constructor(
    private readonly config: Config,
    infra: Infrastructure,
    queue: QueuePart,
    backends: BackendsPart,
    rt: RealtimePart,
    admission: AdmissionTokenIssuer,
    auth: UserAuth,
    log: Logger,
  ) {
    const { metrics, redis, health } = infra;
    const rl = config.rateLimit;
    this.http = new HttpEdge({
      maxBodyBytes: config.server.maxBodyBytes,
      log,
      metrics,
      limiter: new TokenBuckets(rl.rps, rl.burst, rl.maxClients),
      userLimiter: new TokenBuckets(rl.userRps, rl.userBurst, rl.maxClients),
      trustProxy: rl.trustProxy,
      corsOrigins: config.corsAllowOrigins,
      auth,
      adminToken: config.adminToken,
      originKeys: config.originApiKeys,
      idempotency: queue.idempotency,
    });
    const http = this.http;
    const { store, registry, ledger } = queue;
    const { realtime, sockets } = rt;
    const readiness = {
      reasons: (): string[] => {
        const r: string[] = [];
        if (this.draining) r.push('draining');
        if (redis.status !== 'ready') r.push(`redis ${redis.status}`);
        else if (!health.up) r.push('redis not answering');
        return r;
      },
    };
    http.add(healthRoutes(readiness, metrics, config.instanceId));
    const ch = config.challenge;
    if (!ch.secret) log.warn('CHALLENGE_SECRET and ADMISSION_SIGNING_JWK unset: join challenges are signed with a key of this process only (development)');
    const challenges = new ChallengeIssuer(ch.secret ?? randomBytes(32).toString('hex'), ch.ttlSec * 1000, ch.verifyUrl ? new HttpVerifier(ch.verifyUrl, ch.verifyTimeoutMs) : undefined);
    const queueTable = queueRoutes({ store, registry, admission, config, metrics, log, realtime, auth, challenges });
    http.add(queueTable);
    // the page without JavaScript: an HTML view over the same queue handlers
    http.add(waitRoutes({ queueRoutes: queueTable, auth, catalogues: Catalogues.load(join(projectRoot(), 'web', 'i18n')), log }));
    http.add(
      reservationRoutes({ admission, ledger, reservations: backends.reservations, payments: backends.payments, metrics, log, sessionEnded: (e, wt) => store.endSession(e, wt) }),
    );
    http.add(authRoutes(admission, auth, log, config.pageTargetUrl));
    http.add(staticRoutes());
    http.add(adminRoutes({ store, registry, config, log }));
    http.add(drawRoutes({ store, log }));
    let document: string | undefined;
    http.add(docsRoutes(() => (document ??= JSON.stringify(openApiDocument(http.table())))));
    this.adminFeed = registerAdminFeed(http.app, config.adminToken, store, registry, realtime, log, metrics);
    registerWsRoute(
      http.app,
      { store, admission, realtime, sockets, log, metrics, isDraining: () => this.draining, auth, authConfigured: auth.configured, trustProxy: rl.trustProxy },
      rt.wsOptions,
    );
    http.finish();
  }

  async start(): Promise<void> {
    this.port = await this.http.listen(this.config.server.host, this.config.server.port, this.config.server.listenSockets);
  }

  /** readiness 503 (the load balancer stops sending), no new connections; requests in flight finish (bounded) */
  async stop(): Promise<void> {
    this.draining = true;
    this.adminFeed.stop();
    await this.http.close();
  }
}

export async function startGateway(config: Config, wiring: Wiring, log: Logger): Promise<Gateway> {
  const infra = new Infrastructure(config, wiring.redisAddress, log);
  const queue = new QueuePart(config, infra, log);
  const backends = new BackendsPart(config, wiring, infra.metrics, log, queue.health);
  const rt = new RealtimePart(config, infra, queue, log);
  const admission = await AdmissionTokenIssuer.create(config.admission, config.admissionTokenTtlSec);
  const auth = UserAuth.create(config.auth);
  const edge = new EdgePart(config, infra, queue, backends, rt, admission, auth, log);
  const parts: Part[] = [infra, queue, backends, rt, edge];
  const started: Part[] = [];
  try {
    for (const p of parts) {
      await p.start();
      started.push(p);
    }
  } catch (err) {
    // undo what started, in reverse; the start's own error is the one to report
    for (const p of started.reverse()) {
      await Promise.resolve(p.stop()).catch((stopErr: unknown) => log.warn({ part: p.name, err: stopErr }, 'gateway start failed: stopping a started part failed too'));
    }
    throw err;
  }
  log.info({ host: config.server.host, port: edge.port, instance: config.instanceId, admin_api: Boolean(config.adminToken) }, 'gateway listening');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('draining: readiness 503, sockets told to reconnect elsewhere, finishing requests in flight');
      // Edge first so readiness is 503 before anything closes; the socket closes
      // (real time) go out while the edge waits for requests in flight.
      edge.draining = true;
      const edgeStopped = edge.stop();
      await rt.stop();
      await edgeStopped;
      log.info({ sockets: rt.sockets.open.size }, 'drained');
      for (const p of [backends, queue, infra]) {
        try {
          await p.stop();
        } catch (err) {
          log.warn({ part: p.name, err }, 'stopping a part failed');
        }
      }
      log.info('gateway stopped');
    })());

  return {
    port: edge.port,
    config,
    store: queue.store,
    ticker: queue.ticker,
    metrics: infra.metrics,
    redis: infra.redis,
    realtime: rt.realtime,
    sockets: rt.sockets,
    routes: () => edge.http.listRoutes(),
    stop,
  };
}
