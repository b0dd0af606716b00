import type { Config } from './config.js';
import type { Redis } from 'ioredis';
import type { Logger } from './log.js';
import { connectRedis, connectRedisCluster, observeRedis, type RedisClient } from './redis/connect.js';
import { startTracing } from './observability/tracing.js';
import { QueueStore } from './queue/store.js';
import { EventRegistry } from './queue/registry.js';
import { RedisBroker } from './queue/broker.js';
import { Ticker } from './queue/ticker.js';
import { createMetrics, type Metrics } from './metrics.js';
import { AdmissionTokenIssuer } from './auth/admission-token.js';
import { HttpEdge } from './http/edge.js';
import { queueRoutes } from './http/routes-queue.js';
import { adminRoutes } from './http/routes-admin.js';
import { healthRoutes } from './http/routes-health.js';
import { Realtime } from './realtime/realtime.js';
import { Sockets, registerWsRoute } from './realtime/ws-route.js';
import { Close } from './realtime/protocol.js';
import { UserAuth } from './auth/user-auth.js';
import { AdmissionTokenLedger } from './auth/admission-token.js';
import { TokenBuckets } from './http/rate-limit.js';
import { Idempotency } from './http/idempotency.js';
import { authRoutes } from './http/routes-auth.js';
import { staticRoutes } from './http/static.js';
import { registerAdminFeed } from './http/admin-feed.js';
import { docsRoutes } from './http/routes-docs.js';
import { reservationRoutes } from './http/routes-reservations.js';
import { openApiDocument } from './http/openapi.js';
import { Reservations, Payments } from './backends/reservations.js';
import { GrpcBackend, channelCredentials } from './backends/grpc-backend.js';
import { loadProtos } from './backends/proto.js';
import { startReservationSim } from './sim/reservation-sim.js';
import { startPaymentSim } from './sim/payment-sim.js';

// Composition root: wires the store, the ticker and the HTTP routes of one
// gateway instance, and owns the order of a graceful stop.

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

export async function startGateway(config: Config, redisAddress: string, log: Logger): Promise<Gateway> {
  const redisOpts = { address: redisAddress, password: config.redis.password, tls: config.redis.tls, commandTimeoutMs: config.redis.commandTimeoutMs };
  const cluster = config.redis.cluster;
  const redis: RedisClient = cluster ? connectRedisCluster(redisOpts) : connectRedis({ ...redisOpts, sentinelMaster: config.redis.sentinelMaster });
  redis.on('error', (err: Error) => log.debug({ err: err.message }, 'redis connection error'));
  let redisUp = false;
  redis.on('ready', () => {
    if (!redisUp) log.info({ redis: redisAddress }, 'redis connected');
    redisUp = true;
  });
  redis.on('close', () => {
    if (redisUp) log.warn({ redis: redisAddress }, 'redis connection lost; reconnecting');
    redisUp = false;
  });
  // Start serving even if Redis is not up yet (readiness says so), but give
  // it a moment so a normal start does not log a burst of failed ticks.
  await new Promise<void>((resolve) => {
    if (redis.status === 'ready') return resolve();
    const t = setTimeout(resolve, 5000);
    redis.once('ready', () => {
      clearTimeout(t);
      resolve();
    });
  });
  const metrics = createMetrics();
  startTracing({ otlpEndpoint: config.observability.otlpEndpoint, sampleRate: config.observability.sampleRate, instanceId: config.instanceId });
  observeRedis((script, seconds) => metrics.redisDuration.observe({ command: script }, seconds));
  const store = new QueueStore(redis, config.redis.keyPrefix);
  const registry = new EventRegistry(redis, config.redis.keyPrefix);
  // The subscriber may queue its SUBSCRIBE until connected (ioredis re-subscribes after a reconnect).
  const onSubscriberError = (err: Error): void => log.warn({ err: err.message }, 'redis subscriber error');
  // the subscriber connection: offline queue on (SUBSCRIBE waits for the connection), no
  // auto-pipelining (it batched SUBSCRIBE with commands a subscriber connection refuses)
  const broker = cluster
    ? new RedisBroker(redis, () => connectRedisCluster({ ...redisOpts, offlineQueue: true, shardedSubscriber: true }), true, onSubscriberError)
    : new RedisBroker(redis, () => (redis as Redis).duplicate({ enableOfflineQueue: true, enableAutoPipelining: false }), false, onSubscriberError);
  const admission = await AdmissionTokenIssuer.create(config.admission, config.admissionTokenTtlSec);
  const auth = UserAuth.create(config.auth);
  // an attempt may be resumed by another call once the backend's deadline has surely passed
  const ledger = new AdmissionTokenLedger(redis, config.redis.keyPrefix, config.backends.reservation.timeoutMs + 2000);
  const rl = config.rateLimit;
  const clientLimiter = new TokenBuckets(rl.rps, rl.burst, rl.maxClients);
  const userLimiter = new TokenBuckets(rl.userRps, rl.userBurst, rl.maxClients);
  const idempotency = new Idempotency(redis, config.redis.keyPrefix, config.idempotency.ttlSec * 1000, config.idempotency.inflightTtlSec * 1000, metrics, log);
  // Backends: the configured gRPC services, or local simulators (development: never in production, see config).
  const sims: { stop(): Promise<void> }[] = [];
  let reservationAddress = config.backends.reservation.address;
  let paymentAddress = config.backends.payment.address;
  if (!reservationAddress) {
    const sim = await startReservationSim({ host: '127.0.0.1', port: 0, log });
    sims.push(sim);
    reservationAddress = sim.address;
    log.info({ address: sim.address }, 'no BACKEND_RESERVATION_API_GRPC_ADDRESS: started the local reservation simulator');
  }
  if (!paymentAddress) {
    const sim = await startPaymentSim({ host: '127.0.0.1', port: 0, log });
    sims.push(sim);
    paymentAddress = sim.address;
    log.info({ address: sim.address }, 'no BACKEND_PAYMENT_API_GRPC_ADDRESS: started the local payment simulator');
  }
  const protos = loadProtos();
  const backendOpts = { retries: config.backends.retries, breaker: config.backends.breaker, metrics, log };
  const reservationBackend = new GrpcBackend(
    new protos.reservation.v1.ReservationService(reservationAddress, channelCredentials(config.backends.reservation.tls, config.backends.tlsCaFile)),
    { ...backendOpts, service: 'reservation', timeoutMs: config.backends.reservation.timeoutMs },
  );
  const paymentBackend = new GrpcBackend(
    new protos.payment.v1.PaymentService(paymentAddress, channelCredentials(config.backends.payment.tls, config.backends.tlsCaFile)),
    { ...backendOpts, service: 'payment', timeoutMs: config.backends.payment.timeoutMs },
  );
  const reservations = new Reservations(reservationBackend);
  const payments = new Payments(paymentBackend);
  const ticker = new Ticker(
    store,
    registry,
    broker,
    {
      instanceId: config.instanceId,
      tickMs: config.queue.tickMs,
      leaseMs: config.queue.leaseMs,
      maxPromote: config.queue.maxPromotionsPerTick,
      maxSweep: config.queue.maxSweepPerTick,
      retentionMs: config.queue.finishedRetentionSec * 1000,
      // after an outage, give every live user one full liveness window to be refreshed
      quietMs: Math.max(config.queue.pollTimeoutSec, config.queue.reconnectGraceSec) * 1000 + 5000,
    },
    log,
    metrics,
  );

  let draining = false;
  const http = new HttpEdge({
    maxBodyBytes: config.server.maxBodyBytes,
    log,
    metrics,
    limiter: clientLimiter,
    userLimiter,
    trustProxy: rl.trustProxy,
    corsOrigins: config.corsAllowOrigins,
    auth,
    adminToken: config.adminToken,
    originKeys: config.originApiKeys,
    idempotency,
  });
  const wsOptions = {
    maxPerIp: config.ws.maxPerIp,
    connectRps: config.ws.connectRps,
    connectBurst: config.ws.connectBurst,
    messageRps: config.ws.messageRps,
    messageBurst: config.ws.messageBurst,
    maxClients: rl.maxClients,
    maxConnections: config.ws.maxConnections,
    softBackpressureBytes: Math.min(64 * 1024, Math.floor(config.ws.maxBackpressureBytes / 4)),
    maxBackpressureBytes: config.ws.maxBackpressureBytes,
    maxMessageBytes: config.ws.maxMessageBytes,
    idleTimeoutSec: config.ws.idleTimeoutSec,
  };
  const sockets = new Sockets(wsOptions, metrics);
  const graceMs = config.queue.reconnectGraceSec * 1000;
  const realtime = new Realtime(
    store,
    broker,
    sockets,
    { instanceId: config.instanceId, tickMs: config.queue.tickMs, pollTimeoutMs: config.queue.pollTimeoutSec * 1000, reconnectGraceMs: graceMs, nearFront: config.ws.nearFront },
    log,
    metrics,
  );
  http.add(
    healthRoutes(
      {
        reasons: () => {
          const r: string[] = [];
          if (draining) r.push('draining');
          if (redis.status !== 'ready') r.push(`redis ${redis.status}`);
          else if (storeDown) r.push('redis not answering');
          return r;
        },
      },
      metrics,
      config.instanceId,
    ),
  );
  // Store health: a lost connection, or one that stops answering (a frozen or
  // failing-over node), turns readiness 503 and tells attached sockets the
  // line is paused; they stay open and are resumed when Redis answers again.
  let storeDown = false;
  let pingFailures = 0;
  const setStore = (up: boolean): void => {
    if (up === !storeDown) return;
    storeDown = !up;
    log[up ? 'info' : 'warn']({}, up ? 'redis answering again: resuming' : 'redis not answering: pausing sockets, readiness 503');
    if (!draining) realtime.storeAvailability(up);
  };
  redis.on('close', () => setStore(false));
  const healthTimer = setInterval(() => {
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('ping timeout')), 1000).unref());
    Promise.race([redis.ping(), timeout]).then(
      () => {
        pingFailures = 0;
        setStore(true);
      },
      () => {
        if (++pingFailures >= 2) setStore(false);
      },
    );
  }, 1000);
  healthTimer.unref();
  http.add(queueRoutes({ store, registry, admission, config, metrics, log, realtime, auth }));
  http.add(reservationRoutes({ admission, ledger, reservations, payments, metrics, log }));
  http.add(authRoutes(admission, auth, log, config.pageTargetUrl));
  http.add(staticRoutes());
  http.add(adminRoutes({ store, registry, config, log }));
  let document: string | undefined;
  http.add(docsRoutes(() => (document ??= JSON.stringify(openApiDocument(http.table())))));
  const adminFeed = registerAdminFeed(http.app, config.adminToken, store, registry, realtime, log, metrics);
  registerWsRoute(
    http.app,
    {
      store,
      admission,
      realtime,
      sockets,
      log,
      metrics,
      isDraining: () => draining,
      auth,
      authConfigured: auth.configured,
      trustProxy: rl.trustProxy,
    },
    wsOptions,
  );
  http.finish();
  const port = await http.listen(config.server.host, config.server.port);
  ticker.start();
  realtime.start();
  log.info({ host: config.server.host, port, instance: config.instanceId, admin_api: Boolean(config.adminToken) }, 'gateway listening');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      draining = true;
      clearInterval(healthTimer);
      log.info('draining: readiness 503, sockets told to reconnect elsewhere, finishing requests in flight');
      const closed = sockets.closeAll(Close.DRAINING, 'draining: reconnect');
      adminFeed.stop();
      const httpClosed = http.close();
      // closing sockets set each user's liveness to now + grace: write that before going
      await realtime.stop();
      await httpClosed;
      log.info({ sockets: closed }, 'drained');
      await ticker.stop();
      await broker.close();
      reservationBackend.close();
      paymentBackend.close();
      await Promise.all(sims.map((s) => s.stop()));
      redis.disconnect();
      log.info('gateway stopped');
    })());

  return { port, config, store, ticker, metrics, redis, realtime, sockets, routes: () => http.listRoutes(), stop };
}
