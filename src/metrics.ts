import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FastCounter, FastHistogram } from './observability/fast-metrics.js';

// One registry per gateway instance. Label sets are bounded: routes are
// templates, event ids only for events that exist in Redis.

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpLabels = ['method', 'route', 'status_code'] as const;
  return {
    registry,
    // per request: counted without prom-client's per-call label hashing (observability/fast-metrics.ts)
    httpRequests: new FastCounter('http_server_requests_total', 'HTTP requests', httpLabels, registry),
    httpDuration: new FastHistogram('http_server_requests_duration_seconds', 'HTTP request duration', httpLabels, [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registry),
    queueOps: new FastCounter('queue_operations_total', 'Queue operations by outcome', ['operation', 'status'], registry),
    queueWait: new Histogram({
      name: 'queue_wait_time_seconds',
      help: 'Time from join to admission (enter)',
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
      registers: [registry],
    }),
    queueDepth: new Gauge({ name: 'queue_depth', help: 'People in line (ticked events)', labelNames: ['event_id', 'state'] as const, registers: [registry] }),
    admissions: new Counter({ name: 'queue_admissions_total', help: 'Promotions to ready', labelNames: ['event_id'] as const, registers: [registry] }),
    expirations: new Counter({ name: 'queue_expirations_total', help: 'Users removed by the server', labelNames: ['event_id', 'reason'] as const, registers: [registry] }),
    ticks: new Counter({ name: 'queue_ticks_total', help: 'Admission ticks run by this instance', labelNames: ['result'] as const, registers: [registry] }),
    tickMessagesRejected: new Counter({ name: 'tick_messages_rejected_total', help: 'Messages on a tick channel that did not decode (another message version in a rolling deploy, or not a tick)', registers: [registry] }),
    tickDuration: new Histogram({
      name: 'queue_tick_duration_seconds',
      help: 'Admission tick duration (script round trip)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    }),
    challenges: new Counter({ name: 'queue_challenges_total', help: 'Join challenges: issued, accepted, and refusals by reason (missing, invalid, expired, wrong_event, insufficient, rejected, used)', labelNames: ['result'] as const, registers: [registry] }),
    joinPosition: new FastHistogram('queue_join_position', 'Position given at join (FIFO joins; pre-queue joins have none until the draw)', ['event_id'], [1, 10, 100, 1000, 10_000, 100_000, 1_000_000], registry),
    admissionRate: new Gauge({ name: 'queue_admission_rate', help: 'Admissions per second in force (the operator\'s rate, or the adaptive controller\'s)', labelNames: ['event_id'] as const, registers: [registry] }),
    adaptiveChanges: new Counter({ name: 'queue_adaptive_rate_changes_total', help: 'Changes of the admission rate by the adaptive controller, by reason', labelNames: ['event_id', 'reason'] as const, registers: [registry] }),
    backendObjectiveP95: new Gauge({ name: 'queue_backend_objective_p95_seconds', help: 'Reservation p95 over the adaptive window, all instances, as the controller judged it', labelNames: ['event_id'] as const, registers: [registry] }),
    backendObjectiveErrors: new Gauge({ name: 'queue_backend_objective_error_share', help: 'Share of failed reservation calls over the adaptive window, all instances', labelNames: ['event_id'] as const, registers: [registry] }),
    activeSessions: new Gauge({ name: 'queue_active_sessions', help: 'Ready and admitted sessions holding a slot (events with max_active_sessions)', labelNames: ['event_id'] as const, registers: [registry] }),
    eventTransitions: new Counter({
      name: 'queue_event_transitions_total',
      help: "Event state changes made by this instance's ticks on schedule (to: prequeue, drawn, ended)",
      labelNames: ['event_id', 'to'] as const,
      registers: [registry],
    }),
    drawEntrants: new Gauge({ name: 'queue_draw_entrants', help: 'Entrants placed by the pre-queue draw of an event', labelNames: ['event_id'] as const, registers: [registry] }),
    endedUsers: new Counter({ name: 'queue_ended_users_total', help: 'Users attached here told that their event ended', labelNames: ['event_id'] as const, registers: [registry] }),
    leasesHeld: new Gauge({ name: 'queue_ticker_leases_held', help: 'Events this instance ticks', registers: [registry] }),
    slidingRate: new Gauge({
      name: 'gateway_sliding_window_rate',
      help: 'Measured admissions per busy second',
      labelNames: ['window', 'event_id'] as const,
      registers: [registry],
    }),
    etaConfidence: new Gauge({ name: 'gateway_eta_confidence', help: 'ETA confidence [0,1]', labelNames: ['event_id'] as const, registers: [registry] }),
    etaAccuracy: new Histogram({
      name: 'gateway_eta_accuracy_seconds',
      help: 'Absolute difference between the ETA shown at join and the actual wait, at admission',
      labelNames: ['event_id'] as const,
      buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [registry],
    }),
    backendDuration: new Histogram({
      name: 'backend_call_duration_seconds',
      help: 'gRPC backend calls by outcome (gRPC status name, or CIRCUIT_OPEN)',
      labelNames: ['service', 'method', 'status_code'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    breakerState: new Gauge({ name: 'backend_circuit_open', help: '1 while the circuit breaker of a backend is open', labelNames: ['service'] as const, registers: [registry] }),
    redisDuration: new Histogram({
      name: 'redis_command_duration_seconds',
      help: 'Redis round trips of the queue scripts and commands',
      labelNames: ['command'] as const,
      buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [registry],
    }),
    rateLimitDropped: new Counter({ name: 'ratelimit_dropped_total', help: 'Requests, connections and messages refused by rate limits', labelNames: ['scope'] as const, registers: [registry] }),
    idempotencyHits: new Counter({ name: 'idempotency_hits_total', help: 'Requests answered from a stored response (same Idempotency-Key, same request)', registers: [registry] }),
    authFailures: new Counter({ name: 'auth_failures_total', help: 'Rejected bearer tokens by reason', labelNames: ['reason'] as const, registers: [registry] }),
    attachWaiting: new Gauge({ name: 'realtime_attach_waiting', help: 'Attaches waiting for their Redis read (REALTIME_ATTACH_CONCURRENCY in flight at once)', registers: [registry] }),
    attachedUsers: new Gauge({ name: 'realtime_attached_users', help: 'Users attached to this instance (socket or recent poll)', registers: [registry] }),
    wsConnections: new Gauge({ name: 'ws_connections', help: 'Open WebSocket connections', registers: [registry] }),
    wsOpened: new Counter({ name: 'ws_connections_opened_total', help: 'WebSocket connections accepted', registers: [registry] }),
    wsClosed: new Counter({ name: 'ws_connections_closed_total', help: 'WebSocket connections closed, by close code', labelNames: ['code'] as const, registers: [registry] }),
    wsMessagesOut: new Counter({ name: 'ws_messages_sent_total', help: 'WebSocket messages sent', labelNames: ['type'] as const, registers: [registry] }),
    wsMessagesIn: new Counter({ name: 'ws_messages_received_total', help: 'WebSocket messages received', labelNames: ['type'] as const, registers: [registry] }),
    wsDropped: new Counter({ name: 'ws_updates_dropped_total', help: 'Position updates skipped or sockets dropped for backpressure', labelNames: ['action'] as const, registers: [registry] }),
    tickToPush: new Histogram({
      name: 'realtime_tick_to_push_seconds',
      help: "From a tick in Redis to the end of this instance's fan-out of its message (delivery delay beyond the fastest delivery seen, plus the fan-out)",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    fanoutDuration: new Histogram({
      name: 'realtime_fanout_duration_seconds',
      help: 'Time to apply one tick message to all attached users of an event and queue their updates',
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    }),
    statusFromMemory: new FastCounter('realtime_status_answers_total', 'Status polls by where they were answered', ['source'], registry),
    livenessWrites: new Counter({
      name: 'realtime_liveness_writes_total',
      help: "This instance's liveness claim writes: periodic renewals (one per event and interval) and changes (sockets opened/closed), by result",
      labelNames: ['kind', 'result'] as const,
      registers: [registry],
    }),
    storeLostCloses: new Counter({
      name: 'realtime_store_lost_closes_total',
      help: 'Sockets closed with 4103 because this instance could not renew their liveness claims (Redis unreachable from here)',
      registers: [registry],
    }),
    admissionsRedeemed: new Counter({ name: 'admissions_redeemed_total', help: 'Admission tokens redeemed by the origin (POST /api/v1/admissions/redeem)', registers: [registry] }),
    reservationAttempts: new Counter({
      name: 'reservation_attempts_total',
      help: 'POST /reservations backend attempts by outcome: created, resumed (after an unknown outcome), replayed (already reserved), refused (token freed), unknown (timeout: only the same request may resume)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    idempotencyStoreFailures: new Counter({
      name: 'idempotency_store_failures_total',
      help: 'Outcomes that could not be recorded under their Idempotency-Key or admission token (answered 503; a retry replays or resumes)',
      labelNames: ['store', 'reason'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
