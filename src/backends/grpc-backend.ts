import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import { SpanStatusCode } from '@opentelemetry/api';
import { startClientSpan } from '../observability/tracing.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import type { Error__Output as InBandError } from '../generated/proto/common/v1/Error.js';

// One backend (reservation or payment): every call has a deadline; only safe
// (read) calls are retried, only on UNAVAILABLE, only inside that deadline; a
// circuit breaker turns a dead backend into an immediate 503 instead of a
// timeout per request; W3C trace context, the request id and the
// idempotency key travel as metadata; in-band `error` fields are mapped to
// HTTP by their code, never by their text.

export interface BackendOptions {
  service: 'reservation' | 'payment';
  timeoutMs: number;
  retries: number;
  breaker: { errorPercent: number; volume: number; resetMs: number };
  metrics: Metrics;
  log: Logger;
  /** every call's outcome, for the adaptive outflow's shared view of backend health (failed: the backend did not do its job, not a refusal) */
  observe?: (service: string, ms: number, failed: boolean) => void;
}

/** In-band codes that say the backend itself failed (the rest are answers: a seat taken, a bad request). */
const BACKEND_FAILURE = new Set(['OK_INTERNAL', 'OK_UNAVAILABLE', 'OK_TIMEOUT', 'OK_UPSTREAM_TIMEOUT', 'OK_UPSTREAM_ERROR', 'OK_DATA_CORRUPTION']);

export interface CallMeta {
  requestId?: string | undefined;
  idempotencyKey?: string | undefined;
  /** the calling request's W3C traceparent (HttpRequest.traceparent) */
  traceparent?: string | undefined;
}

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;


/** In-band error codes (common.v1.ErrorCode) -> the gateway's HTTP errors. */
const inBand: Record<string, ErrorCode> = {
  ERROR_CODE_UNAUTHENTICATED: 'UNAUTHORIZED',
  ERROR_CODE_FORBIDDEN: 'FORBIDDEN',
  ERROR_CODE_UNAUTHORIZED: 'FORBIDDEN',
  ERROR_CODE_INVALID_ARGUMENT: 'INVALID_REQUEST',
  ERROR_CODE_NOT_FOUND: 'NOT_FOUND',
  ERROR_CODE_ALREADY_EXISTS: 'ALREADY_EXISTS',
  ERROR_CODE_FAILED_PRECONDITION: 'PRECONDITION_FAILED',
  ERROR_CODE_RATE_LIMITED: 'RATE_LIMITED',
  ERROR_CODE_QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  ERROR_CODE_IDEMPOTENCY_REQUIRED: 'IDEMPOTENCY_KEY_REQUIRED',
  ERROR_CODE_IDEMPOTENCY_CONFLICT: 'IDEMPOTENCY_CONFLICT',
  ERROR_CODE_RESERVATION_EXPIRED: 'RESERVATION_EXPIRED',
  ERROR_CODE_PAYMENT_NOT_APPROVED: 'PAYMENT_NOT_APPROVED',
  ERROR_CODE_INVENTORY_CONFLICT: 'INVENTORY_CONFLICT',
  ERROR_CODE_INSUFFICIENT_INVENTORY: 'INSUFFICIENT_INVENTORY',
  ERROR_CODE_INTERNAL: 'UPSTREAM_ERROR',
  ERROR_CODE_UNAVAILABLE: 'UPSTREAM_UNAVAILABLE',
  ERROR_CODE_TIMEOUT: 'UPSTREAM_TIMEOUT',
  ERROR_CODE_UPSTREAM_TIMEOUT: 'UPSTREAM_TIMEOUT',
  ERROR_CODE_UPSTREAM_ERROR: 'UPSTREAM_ERROR',
  ERROR_CODE_DATA_CORRUPTION: 'UPSTREAM_ERROR',
  ERROR_CODE_CONCURRENT_MODIFICATION: 'CONCURRENT_MODIFICATION',
};

export function mapInBandError(e: InBandError, service: string): AppError {
  const code = inBand[String(e.code)] ?? 'UPSTREAM_ERROR';
  const details: Record<string, unknown> = { upstream_code: String(e.code).replace(/^ERROR_CODE_/, '') };
  if (e.details?.length) details.fields = e.details.map((d) => ({ field: d.field, reason: d.reason }));
  return new AppError(code, e.message || `${service} backend refused the request`, details);
}

/** In-band codes that report the backend's own failure: it may or may not have done the work. */
const UNSETTLED = new Set(['INTERNAL', 'UNAVAILABLE', 'TIMEOUT', 'UPSTREAM_TIMEOUT', 'UPSTREAM_ERROR', 'DATA_CORRUPTION', 'UNSPECIFIED']);

/**
 * The backend answered and said no (a seat taken, bad input, ...): it did
 * nothing. Transport failures (deadline, connection, breaker) and in-band
 * failure codes are not refusals: the call's effect is unknown.
 */
export function isRefusal(err: unknown): boolean {
  if (!(err instanceof AppError)) return false;
  const upstream = err.details?.upstream_code;
  return typeof upstream === 'string' && !UNSETTLED.has(upstream);
}

const INFRA = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.RESOURCE_EXHAUSTED]);
const isInfra = (err: unknown): boolean => typeof (err as grpc.ServiceError)?.code === 'number' && INFRA.has((err as grpc.ServiceError).code);

export function channelCredentials(tls: boolean, caFile: string | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(caFile ? readFileSync(caFile) : undefined);
}

export class GrpcBackend<C extends grpc.Client> {
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;

  constructor(
    readonly client: C,
    private readonly o: BackendOptions,
  ) {
    this.breaker = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      timeout: false, // every call has its own gRPC deadline
      errorThresholdPercentage: o.breaker.errorPercent,
      volumeThreshold: o.breaker.volume,
      resetTimeout: o.breaker.resetMs,
      rollingCountTimeout: 10_000,
      rollingCountBuckets: 10,
      // only an unreachable or failing backend opens the circuit, not a refusal it answered
      errorFilter: (err: unknown) => !isInfra(err),
    });
    this.breaker.on('open', () => {
      o.metrics.breakerState.set({ service: o.service }, 1);
      o.log.warn({ service: o.service }, 'backend circuit open: failing fast');
    });
    this.breaker.on('halfOpen', () => o.log.info({ service: o.service }, 'backend circuit half-open: trying one call'));
    this.breaker.on('close', () => {
      o.metrics.breakerState.set({ service: o.service }, 0);
      o.log.info({ service: o.service }, 'backend circuit closed: backend healthy again');
    });
  }

  /** tolerate: in-band error codes that are an answer, not a failure (e.g. a declined payment); the response is returned as is. */
  async call<Req, Res extends { error?: InBandError | null }>(
    method: string,
    fn: Unary<Req, Res>,
    req: Req,
    meta: CallMeta,
    safe: boolean,
    tolerate: readonly string[] = [],
  ): Promise<Res> {
    const started = performance.now();
    const deadline = Date.now() + this.o.timeoutMs;
    // a child span only when the calling request is recorded; the traceparent goes out either way
    const span = startClientSpan(`${this.o.service}.${method}`, { 'rpc.system': 'grpc', 'rpc.service': this.o.service, 'rpc.method': method });
    const traceparent = span ? `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01` : meta.traceparent;
    let status = 'OK';
    try {
      const once = (): Promise<Res> =>
        new Promise<Res>((resolve, reject) => {
          const md = new grpc.Metadata();
          if (traceparent) md.set('traceparent', traceparent);
          if (meta.requestId) md.set('x-request-id', meta.requestId);
          if (meta.idempotencyKey) md.set('idempotency-key', meta.idempotencyKey);
          fn.call(this.client, req, md, { deadline }, (err, res) => (err ? reject(err) : resolve(res as Res)));
        });
      const withRetries = async (): Promise<Res> => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await once();
          } catch (err) {
            const backoff = 50 * 2 ** attempt;
            if (!safe || attempt >= this.o.retries || (err as grpc.ServiceError).code !== grpc.status.UNAVAILABLE || Date.now() + backoff >= deadline) throw err;
            await new Promise((r) => setTimeout(r, backoff));
          }
        }
      };
      const res = (await this.breaker.fire(withRetries)) as Res;
      if (res.error && res.error.code && String(res.error.code) !== 'ERROR_CODE_UNSPECIFIED' && !tolerate.includes(String(res.error.code))) {
        status = `OK_${String(res.error.code).replace(/^ERROR_CODE_/, '')}`;
        throw mapInBandError(res.error, this.o.service);
      }
      return res;
    } catch (err) {
      if (err instanceof AppError) {
        if (status === 'OK') status = err.code;
        throw err;
      }
      const mapped = this.mapTransport(err);
      status = (err as { code?: unknown }).code === 'EOPENBREAKER' ? 'CIRCUIT_OPEN' : (grpc.status[(err as grpc.ServiceError).code] ?? 'UNKNOWN');
      span?.setStatus({ code: SpanStatusCode.ERROR, message: status });
      throw mapped;
    } finally {
      span?.setAttribute('rpc.grpc.status', status);
      span?.end();
      const ms = performance.now() - started;
      this.o.metrics.backendDuration.observe({ service: this.o.service, method, status_code: status }, ms / 1000);
      this.o.observe?.(this.o.service, ms, !(status === 'OK' || (status.startsWith('OK_') && !BACKEND_FAILURE.has(status))));
    }
  }

  private mapTransport(err: unknown): AppError {
    if ((err as { code?: unknown }).code === 'EOPENBREAKER') {
      return new AppError('UPSTREAM_UNAVAILABLE', `the ${this.o.service} service is unavailable (circuit open), retry shortly`, { reason: 'circuit_open' }, {
        'Retry-After': String(Math.ceil(this.o.breaker.resetMs / 1000)),
      });
    }
    const code = (err as grpc.ServiceError).code;
    if (code === grpc.status.DEADLINE_EXCEEDED) return new AppError('UPSTREAM_TIMEOUT', `the ${this.o.service} service did not answer within ${this.o.timeoutMs} ms`);
    if (code === grpc.status.UNAVAILABLE) return new AppError('UPSTREAM_UNAVAILABLE', `the ${this.o.service} service is unavailable, retry shortly`, { reason: 'unavailable' }, { 'Retry-After': '2' });
    this.o.log.warn({ service: this.o.service, code, err }, 'backend call failed');
    return new AppError('UPSTREAM_ERROR', `the ${this.o.service} service failed`);
  }

  close(): void {
    this.breaker.shutdown();
    this.client.close();
  }
}
