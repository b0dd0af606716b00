import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { Error as PbError } from '../generated/proto/common/v1/Error.js';
import type { ErrorCode__Output } from '../generated/proto/common/v1/ErrorCode.js';
import type { ErrorDetail } from '../generated/proto/common/v1/ErrorDetail.js';
import type { Timestamp } from '../generated/proto/google/protobuf/Timestamp.js';

// Shared machinery of the backend simulators (reservation-sim.ts,
// payment-sim.ts): a real grpc-js server, the fault modes, the record of
// received calls, and helpers for the in-band error and Timestamp messages.

/**
 * normal: answer; hang: accept and never answer; unavailable: UNAVAILABLE at
 * once; late: do the work, then answer only after `lateMs` (a caller whose
 * deadline is shorter sees a timeout although the effect happened).
 */
export type SimMode = 'normal' | 'hang' | 'unavailable' | 'late';

export interface SimOptions {
  host?: string;
  port?: number;
  /** How long a reservation HOLD lives. Default 60_000. */
  holdMs?: number;
  log?: pino.Logger;
}

export interface ReceivedCall {
  /** Fully qualified service name, e.g. 'reservation.v1.ReservationService'. */
  service: string;
  method: string;
  /** Every metadata key the client sent (first value; binary `-bin` values base64). */
  metadata: Record<string, string>;
  request: unknown;
  /** Date.now() when the call arrived. */
  at: number;
}

export interface RunningSim {
  /** host:port the server listens on (IPv6 hosts in brackets). */
  address: string;
  port: number;
  /** Every call with its metadata, oldest first, bounded to the last 1000. */
  received: ReceivedCall[];
  /** lateMs: how long a `late` answer is held back (default 2000) */
  setMode(mode: SimMode, o?: { lateMs?: number }): void;
  /** a service with limited capacity (undefined: every call at once, as before); see SimLoad */
  setLoad(load: SimLoad | undefined): void;
  stop(): Promise<void>;
}

/**
 * A backend with limited capacity, for load simulations (bench/adaptive.ts):
 * `slots` calls are served at a time, each for about `serviceMs` (+-20 %);
 * the others wait in line, so latency grows with load as a real service's
 * does, and throughput is at most slots / serviceMs. `failShare` of calls
 * fail at once with UNAVAILABLE, whatever the load.
 */
export interface SimLoad {
  slots: number;
  serviceMs: number;
  failShare: number;
}

export const RECEIVED_LIMIT = 1000;

/** Returned by a handler implementation: accept the call and never answer it. */
export const NO_REPLY: unique symbol = Symbol('no-reply');
export type Reply<Res> = Res | typeof NO_REPLY;

export interface CallContext {
  metadata: Record<string, string>;
  /** Trace id from `traceparent`, else `x-request-id`, else ''. Echoed in in-band errors. */
  traceId: string;
}

const MODES: readonly SimMode[] = ['normal', 'hang', 'unavailable', 'late'];

export function checkPort(port: number | undefined): number {
  const p = port ?? 0;
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`port must be an integer 0-65535, got ${String(port)}`);
  return p;
}

export function checkNonNegative(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a finite number >= 0, got ${String(v)}`);
  return v;
}

export function ts(ms: number): Timestamp {
  const m = Math.floor(ms);
  return { seconds: String(Math.floor(m / 1000)), nanos: (((m % 1000) + 1000) % 1000) * 1_000_000 };
}

export function pbError(ctx: CallContext, code: ErrorCode__Output, message: string, details: ErrorDetail[] = []): PbError {
  return { code, message, trace_id: ctx.traceId, details };
}

function metadataRecord(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = typeof v === 'string' ? v : v.toString('base64');
  return out;
}

function traceIdOf(md: Record<string, string>): string {
  const tp = md['traceparent'];
  if (tp) {
    const parts = tp.trim().split('-');
    if (parts.length >= 4 && /^[0-9a-f]{32}$/.test(parts[1] ?? '')) return parts[1] ?? '';
  }
  return md['x-request-id'] ?? '';
}

/**
 * One simulator's server: registers services whose handlers are wrapped so
 * that every call is recorded and the fault mode applies, and tracks the
 * calls and timers still open so that stop() can end them.
 */
export class SimServer {
  readonly server = new grpc.Server();
  readonly received: ReceivedCall[] = [];
  private mode: SimMode = 'normal';
  private lateMs = 2000;
  private load: SimLoad | undefined;
  private busy = 0;
  private readonly queue: (() => void)[] = [];
  private stopped = false;
  private readonly open = new Set<() => void>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(readonly log: pino.Logger) {}

  setMode(mode: SimMode, o: { lateMs?: number } = {}): void {
    if (!MODES.includes(mode)) throw new RangeError(`mode must be one of ${MODES.join(', ')}, got ${String(mode)}`);
    if (o.lateMs !== undefined) this.lateMs = checkNonNegative('lateMs', o.lateMs);
    if (mode !== this.mode) this.log.info({ mode, ...(mode === 'late' ? { late_ms: this.lateMs } : {}) }, 'simulator mode changed');
    this.mode = mode;
  }

  setLoad(load: SimLoad | undefined): void {
    if (load) {
      checkNonNegative('serviceMs', load.serviceMs);
      if (!(load.slots >= 1) || !(load.failShare >= 0 && load.failShare <= 1)) throw new RangeError('slots must be >= 1 and failShare in [0, 1]');
    }
    this.log.info({ load }, 'simulator load model changed');
    this.load = load;
  }

  /** One slot of the load model: waits its turn, serves, frees the slot. */
  private async serve(): Promise<void> {
    const l = this.load;
    if (!l) return;
    if (this.busy >= l.slots) await new Promise<void>((r) => this.queue.push(r));
    else this.busy++;
    try {
      await this.sleep(l.serviceMs * (0.8 + 0.4 * Math.random()));
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.busy--;
    }
  }

  /** Wraps a handler implementation into a grpc-js unary handler. */
  unary<Req, Res>(service: string, method: string, impl: (req: Req, ctx: CallContext) => Reply<Res> | Promise<Reply<Res>>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const metadata = metadataRecord(call.metadata);
      this.received.push({ service, method, metadata, request: call.request, at: Date.now() });
      if (this.received.length > RECEIVED_LIMIT) this.received.splice(0, this.received.length - RECEIVED_LIMIT);
      this.log.debug({ service, method, mode: this.mode }, 'call received');

      if (this.stopped) {
        callback({ code: grpc.status.UNAVAILABLE, details: 'simulator stopped' });
        return;
      }
      let done = false;
      const finish = (err: Parameters<grpc.sendUnaryData<Res>>[0], res?: Res): void => {
        if (done) return;
        done = true;
        this.open.delete(abort);
        callback(err, res);
      };
      const abort = (): void => finish({ code: grpc.status.UNAVAILABLE, details: 'simulator stopped' });
      this.open.add(abort);
      call.on('cancelled', () => {
        done = true;
        this.open.delete(abort);
      });

      if (this.mode === 'unavailable') {
        finish({ code: grpc.status.UNAVAILABLE, details: 'simulator in unavailable mode' });
        return;
      }
      if (this.mode === 'hang') return; // answered by nobody: the client's deadline ends it

      const ctx: CallContext = { metadata, traceId: traceIdOf(metadata) };
      const late = this.mode === 'late' ? this.lateMs : 0;
      if (this.load && Math.random() < this.load.failShare) {
        finish({ code: grpc.status.UNAVAILABLE, details: 'simulator load model: failed call' });
        return;
      }
      Promise.resolve()
        .then(() => this.serve())
        .then(() => impl(call.request, ctx))
        .then(async (res) => {
          if (late > 0) await this.sleep(late);
          return res;
        })
        .then(
          (res) => {
            if (res !== NO_REPLY) finish(null, res);
          },
          (err: unknown) => {
            this.log.error({ err, service, method }, 'simulator handler failed');
            finish({ code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) });
          },
        );
    };
  }

  /** An unref'd timer that stop() clears; the promise never settles if the simulator stops first. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      t.unref();
      this.timers.add(t);
    });
  }

  /** An unref'd interval that stop() clears. */
  every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.add(t);
  }

  async listen(host: string, port: number): Promise<{ address: string; port: number }> {
    const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const bound = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${h}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    return { address: `${h}:${bound}`, port: bound };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    // answer every call still open (hung, delayed) so sessions can close
    for (const abort of [...this.open]) abort();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }
}

export function defaultLogger(log: pino.Logger | undefined, name: string): pino.Logger {
  return (log ?? pino({ level: 'silent' })).child({ sim: name });
}
