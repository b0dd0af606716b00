import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import { loadProtos } from '../backends/proto.js';
import type { ErrorDetail } from '../generated/proto/common/v1/ErrorDetail.js';
import type { Money } from '../generated/proto/common/v1/Money.js';
import type { Seat } from '../generated/proto/common/v1/Seat.js';
import type { SeatStatus__Output } from '../generated/proto/common/v1/SeatStatus.js';
import type { CancelReservationResponse } from '../generated/proto/reservation/v1/CancelReservationResponse.js';
import type { ConfirmReservationResponse } from '../generated/proto/reservation/v1/ConfirmReservationResponse.js';
import type { CreateReservationResponse } from '../generated/proto/reservation/v1/CreateReservationResponse.js';
import type { InventoryServiceHandlers } from '../generated/proto/reservation/v1/InventoryService.js';
import type { Reservation } from '../generated/proto/reservation/v1/Reservation.js';
import type { ReservationMetadata__Output } from '../generated/proto/reservation/v1/ReservationMetadata.js';
import type { ReservationServiceHandlers } from '../generated/proto/reservation/v1/ReservationService.js';
import type { ReservationStatus__Output } from '../generated/proto/reservation/v1/ReservationStatus.js';
import { type CallContext, type RunningSim, type SimOptions, SimServer, checkNonNegative, checkPort, defaultLogger, pbError, ts } from './common.js';

export type { ReceivedCall, RunningSim, SimMode, SimOptions } from './common.js';

// A reservation-api stand-in: reservation.v1.ReservationService and a minimal
// reservation.v1.InventoryService over one in-memory seat map, on a real gRPC
// server. Application failures are reported in the in-band `error` field with
// gRPC status OK, as CONTRACT.md says the real backends do.

export const SEAT_PRICE_KRW = 100_000;

const RESERVATION_SERVICE = 'reservation.v1.ReservationService';
const INVENTORY_SERVICE = 'reservation.v1.InventoryService';

type State = 'HOLD' | 'CONFIRMED' | 'CANCELLED' | 'EXPIRED';

interface Rec {
  readonly id: string;
  readonly eventId: string;
  readonly userId: string;
  seatIds: string[];
  status: State;
  readonly createdAt: number;
  updatedAt: number;
  holdExpiresAt: number;
  paymentIntentId: string;
  orderId: string;
  metadata: ReservationMetadata__Output | null;
  confirmKey: string;
  confirmed?: ConfirmReservationResponse;
  cancelled?: CancelReservationResponse;
}

/** Seat id → section/row/number: "S1-B-7" → S1/B/7; "A-12" → GENERAL/A/12; "A12" → GENERAL/A/12; else GENERAL/""/id. */
export function seatFromId(id: string, status: SeatStatus__Output): Seat {
  const parts = id.split(/[-_:./\s]+/).filter((p) => p !== '');
  let section = 'GENERAL';
  let row = '';
  let number = id;
  if (parts.length >= 3) {
    section = parts[0] ?? section;
    row = parts[parts.length - 2] ?? '';
    number = parts[parts.length - 1] ?? id;
  } else if (parts.length === 2) {
    row = parts[0] ?? '';
    number = parts[1] ?? id;
  } else {
    const m = /^([A-Za-z]+)(\d+)$/.exec(id);
    if (m) {
      row = m[1] ?? '';
      number = m[2] ?? id;
    }
  }
  return { id, section, row, number, price: { amount: String(SEAT_PRICE_KRW), currency: 'KRW' }, status };
}

function total(n: number): Money {
  return { amount: String(SEAT_PRICE_KRW * n), currency: 'KRW' };
}

function status(s: State): ReservationStatus__Output {
  return `RESERVATION_STATUS_${s}`;
}

function detail(field: string, reason: string, value = ''): ErrorDetail {
  return { field, reason, value };
}

export interface RunningReservationSim extends RunningSim {
  /** every reservation id this simulator created, by the reservation_token it was created with (for drills: one token, one reservation) */
  createdByToken(): ReadonlyMap<string, readonly string[]>;
}

/**
 * The simulator's in-memory seat map: reservations by id, who holds each
 * seat, the seats seen per event, create idempotency keys. Holds expire
 * lazily on read and by a sweep.
 */
class SeatBook {
  readonly byId = new Map<string, Rec>();
  /** ids of reservations in HOLD */
  private readonly live = new Set<string>();
  /** event/seat → reservation id (HOLD or CONFIRMED) */
  private readonly seatOwner = new Map<string, string>();
  /** event → every seat id seen (GetInventoryStatus) */
  readonly knownSeats = new Map<string, Set<string>>();
  readonly createKeys = new Map<string, { fingerprint: string; response: CreateReservationResponse }>();
  readonly byToken = new Map<string, string[]>();

  constructor(private readonly log: Logger) {}

  private seatKey(eventId: string, seatId: string): string {
    return `${eventId}\u0000${seatId}`;
  }

  private release(r: Rec): void {
    for (const s of r.seatIds) if (this.seatOwner.get(this.seatKey(r.eventId, s)) === r.id) this.seatOwner.delete(this.seatKey(r.eventId, s));
    this.live.delete(r.id);
  }

  /** Lazily expires a HOLD past its hold_expires_at; returns the record. */
  current(r: Rec, now = Date.now()): Rec {
    if (r.status === 'HOLD' && r.holdExpiresAt <= now) {
      r.status = 'EXPIRED';
      r.updatedAt = r.holdExpiresAt;
      this.release(r);
      this.log.debug({ reservation_id: r.id }, 'hold expired');
    }
    return r;
  }

  /** Expired holds free their seats even when nobody reads them. */
  sweep(now: number): void {
    for (const id of [...this.live]) {
      const r = this.byId.get(id);
      if (r) this.current(r, now);
      else this.live.delete(id);
    }
  }

  private owner(eventId: string, seatId: string): Rec | undefined {
    const id = this.seatOwner.get(this.seatKey(eventId, seatId));
    const r = id === undefined ? undefined : this.byId.get(id);
    if (!r) return undefined;
    this.current(r);
    return r.status === 'HOLD' || r.status === 'CONFIRMED' ? r : undefined;
  }

  seatStatus(eventId: string, seatId: string): SeatStatus__Output {
    const r = this.owner(eventId, seatId);
    if (!r) return 'SEAT_STATUS_AVAILABLE';
    return r.status === 'CONFIRMED' ? 'SEAT_STATUS_SOLD' : 'SEAT_STATUS_RESERVED';
  }

  /** Details of the seats among seatIds owned by a live reservation other than `self`. */
  conflicts(eventId: string, seatIds: readonly string[], self?: string): ErrorDetail[] {
    const out: ErrorDetail[] = [];
    for (const s of seatIds) {
      const r = this.owner(eventId, s);
      if (r && r.id !== self) out.push(detail('seat_ids', r.status === 'CONFIRMED' ? 'seat already sold' : 'seat held by another reservation', s));
    }
    return out;
  }

  hold(r: Rec, seatIds: readonly string[]): void {
    for (const s of seatIds) this.seatOwner.set(this.seatKey(r.eventId, s), r.id);
    let set = this.knownSeats.get(r.eventId);
    if (!set) this.knownSeats.set(r.eventId, (set = new Set()));
    for (const s of seatIds) set.add(s);
    this.live.add(r.id);
  }

  toMessage(r: Rec): Reservation {
    return {
      reservation_id: r.id,
      event_id: r.eventId,
      user_id: r.userId,
      status: status(r.status),
      seats: r.seatIds.map((s) => seatFromId(s, this.seatStatus(r.eventId, s))),
      quantity: r.seatIds.length,
      total_amount: total(r.seatIds.length),
      created_at: ts(r.createdAt),
      updated_at: ts(r.updatedAt),
      hold_expires_at: ts(r.holdExpiresAt),
      payment_intent_id: r.paymentIntentId,
      order_id: r.orderId,
      metadata: r.metadata,
    };
  }

  /** NOT_FOUND / FORBIDDEN as an in-band error, else the (lazily expired) record. */
  lookup(ctx: CallContext, reservationId: string, userId: string): Rec | ReturnType<typeof pbError> {
    const r = this.byId.get(reservationId);
    if (!r) return pbError(ctx, 'ERROR_CODE_NOT_FOUND', `reservation ${reservationId || '(empty id)'} not found`, [detail('reservation_id', 'not found', reservationId)]);
    if (r.userId !== userId) return pbError(ctx, 'ERROR_CODE_FORBIDDEN', 'reservation belongs to another user', [detail('user_id', 'not the owner', userId)]);
    return this.current(r);
  }

  cancel(r: Rec, now: number): CancelReservationResponse {
    const released = r.seatIds.map((s) => seatFromId(s, 'SEAT_STATUS_AVAILABLE'));
    this.release(r);
    r.status = 'CANCELLED';
    r.updatedAt = now;
    r.cancelled = { status: 'RESERVATION_STATUS_CANCELLED', cancelled_at: ts(now), released_seats: released, error: null };
    return r.cancelled;
  }

  confirm(r: Rec, now: number, orderId: string, paymentIntentId: string): void {
    this.live.delete(r.id);
    r.status = 'CONFIRMED';
    r.updatedAt = now;
    r.orderId = orderId;
    if (paymentIntentId) r.paymentIntentId = paymentIntentId;
  }
}

const isRec = (x: Rec | ReturnType<typeof pbError>): x is Rec => 'eventId' in x;
const newOrderId = (): string => `ord_${randomUUID()}`;

/** reservation.v1.ReservationService over the seat book. */
function reservationHandlers(sim: SimServer, book: SeatBook, holdMs: number, log: Logger): ReservationServiceHandlers {
  return {
    CreateReservation: sim.unary(RESERVATION_SERVICE, 'CreateReservation', (req, ctx): CreateReservationResponse => {
      const bad: ErrorDetail[] = [];
      if (!req.event_id) bad.push(detail('event_id', 'required'));
      if (req.seat_ids.length === 0) bad.push(detail('seat_ids', 'at least one seat id is required'));
      else if (req.seat_ids.some((s) => s === '')) bad.push(detail('seat_ids', 'seat ids must be non-empty'));
      else {
        const dup = req.seat_ids.find((s, i) => req.seat_ids.indexOf(s) !== i);
        if (dup !== undefined) bad.push(detail('seat_ids', 'duplicate seat id', dup));
      }
      if (req.quantity !== req.seat_ids.length) bad.push(detail('quantity', `must equal the number of seat_ids (${req.seat_ids.length})`, String(req.quantity)));
      if (!req.user_id) bad.push(detail('user_id', 'required'));
      if (!req.reservation_token) bad.push(detail('reservation_token', 'required'));
      if (bad.length > 0) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', `invalid ${bad.map((d) => d.field).join(', ')}`, bad) };

      const fingerprint = JSON.stringify([req.event_id, req.seat_ids, req.quantity, req.user_id, req.reservation_token]);
      if (req.idempotency_key) {
        const seen = book.createKeys.get(req.idempotency_key);
        if (seen) {
          if (seen.fingerprint === fingerprint) return seen.response;
          return { error: pbError(ctx, 'ERROR_CODE_IDEMPOTENCY_CONFLICT', 'idempotency key reused with a different request', [detail('idempotency_key', 'reused with a different request', req.idempotency_key)]) };
        }
      }

      const taken = book.conflicts(req.event_id, req.seat_ids);
      if (taken.length > 0) {
        return { error: pbError(ctx, 'ERROR_CODE_INVENTORY_CONFLICT', `seat ${taken.map((d) => d.value).join(', ')} not available`, taken) };
      }

      const now = Date.now();
      const r: Rec = {
        id: randomUUID(),
        eventId: req.event_id,
        userId: req.user_id,
        seatIds: [...req.seat_ids],
        status: 'HOLD',
        createdAt: now,
        updatedAt: now,
        holdExpiresAt: now + holdMs,
        paymentIntentId: '',
        orderId: '',
        metadata: req.metadata,
        confirmKey: '',
      };
      book.byId.set(r.id, r);
      book.hold(r, r.seatIds);
      book.byToken.set(req.reservation_token, [...(book.byToken.get(req.reservation_token) ?? []), r.id]);
      const response: CreateReservationResponse = {
        reservation_id: r.id,
        status: 'RESERVATION_STATUS_HOLD',
        hold_expires_at: ts(r.holdExpiresAt),
        reserved_seats: r.seatIds.map((s) => seatFromId(s, 'SEAT_STATUS_RESERVED')),
        total_amount: total(r.seatIds.length),
        payment_url: '',
        error: null,
      };
      if (req.idempotency_key) book.createKeys.set(req.idempotency_key, { fingerprint, response });
      log.debug({ reservation_id: r.id, event_id: r.eventId, seats: r.seatIds.length }, 'hold created');
      return response;
    }),

    GetReservation: sim.unary(RESERVATION_SERVICE, 'GetReservation', (req, ctx) => {
      const r = book.lookup(ctx, req.reservation_id, req.user_id);
      return isRec(r) ? { reservation: book.toMessage(r), error: null } : { error: r };
    }),

    ConfirmReservation: sim.unary(RESERVATION_SERVICE, 'ConfirmReservation', (req, ctx): ConfirmReservationResponse => {
      const r = book.lookup(ctx, req.reservation_id, req.user_id);
      if (!isRec(r)) return { error: r };
      if (r.status === 'EXPIRED') return { status: 'RESERVATION_STATUS_EXPIRED', error: pbError(ctx, 'ERROR_CODE_RESERVATION_EXPIRED', 'the hold has expired') };
      if (r.status === 'CONFIRMED' && req.idempotency_key !== '' && req.idempotency_key === r.confirmKey && r.confirmed) {
        if (req.payment_intent_id !== '' && req.payment_intent_id !== r.paymentIntentId) {
          return { error: pbError(ctx, 'ERROR_CODE_IDEMPOTENCY_CONFLICT', 'idempotency key reused with a different payment_intent_id', [detail('payment_intent_id', 'differs from the first confirmation', req.payment_intent_id)]) };
        }
        return r.confirmed;
      }
      if (r.status !== 'HOLD') {
        return { status: status(r.status), error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', `reservation is ${r.status}, not HOLD`) };
      }
      const now = Date.now();
      book.confirm(r, now, newOrderId(), req.payment_intent_id);
      r.confirmKey = req.idempotency_key;
      r.confirmed = {
        order_id: r.orderId,
        status: 'RESERVATION_STATUS_CONFIRMED',
        confirmed_at: ts(now),
        confirmed_seats: r.seatIds.map((s) => seatFromId(s, 'SEAT_STATUS_SOLD')),
        error: null,
      };
      log.debug({ reservation_id: r.id, order_id: r.orderId }, 'reservation confirmed');
      return r.confirmed;
    }),

    CancelReservation: sim.unary(RESERVATION_SERVICE, 'CancelReservation', (req, ctx): CancelReservationResponse => {
      const r = book.lookup(ctx, req.reservation_id, req.user_id);
      if (!isRec(r)) return { error: r };
      switch (r.status) {
        case 'HOLD':
          return book.cancel(r, Date.now());
        case 'CANCELLED':
          return r.cancelled ?? { status: 'RESERVATION_STATUS_CANCELLED', cancelled_at: ts(r.updatedAt), released_seats: [], error: null };
        case 'EXPIRED':
          // the hold is gone already; nothing is released now
          return { status: 'RESERVATION_STATUS_EXPIRED', cancelled_at: null, released_seats: [], error: null };
        case 'CONFIRMED':
          return { status: 'RESERVATION_STATUS_CONFIRMED', error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', 'a confirmed reservation cannot be cancelled') };
      }
    }),
  }
}

/** A minimal reservation.v1.InventoryService over the same seat book. */
function inventoryHandlers(sim: SimServer, book: SeatBook, holdMs: number): InventoryServiceHandlers {
  return {
    CheckAvailability: sim.unary(INVENTORY_SERVICE, 'CheckAvailability', (req, ctx) => {
      if (!req.event_id) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', 'invalid event_id', [detail('event_id', 'required')]) };
      if (req.seat_ids.length === 0) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', 'invalid seat_ids', [detail('seat_ids', 'at least one seat id is required (the simulator has no seat map to pick from)')]) };
      if (req.quantity !== 0 && req.quantity !== req.seat_ids.length) {
        return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', 'invalid quantity', [detail('quantity', `must be 0 or equal the number of seat_ids (${req.seat_ids.length})`, String(req.quantity))]) };
      }
      const list = req.seat_ids.map((s) => seatFromId(s, book.seatStatus(req.event_id, s)));
      return { available: list.every((s) => s.status === 'SEAT_STATUS_AVAILABLE'), seats: list, error: null };
    }),

    ReserveSeat: sim.unary(INVENTORY_SERVICE, 'ReserveSeat', (req, ctx) => {
      const bad: ErrorDetail[] = [];
      if (!req.event_id) bad.push(detail('event_id', 'required'));
      if (req.seat_ids.length === 0 || req.seat_ids.some((s) => s === '')) bad.push(detail('seat_ids', 'non-empty seat ids required'));
      if (!req.reservation_id) bad.push(detail('reservation_id', 'required'));
      if (bad.length > 0) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', `invalid ${bad.map((d) => d.field).join(', ')}`, bad) };
      const now = Date.now();
      const until = req.hold_until && Number(req.hold_until.seconds) > 0 ? Number(req.hold_until.seconds) * 1000 + Math.floor(req.hold_until.nanos / 1e6) : now + holdMs;
      if (until <= now) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', 'invalid hold_until', [detail('hold_until', 'must be in the future')]) };
      const existing = book.byId.get(req.reservation_id);
      if (existing) {
        book.current(existing, now);
        if (existing.eventId !== req.event_id || existing.userId !== req.user_id) {
          return { error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', 'reservation_id exists for another event or user') };
        }
        if (existing.status !== 'HOLD') return { error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', `reservation is ${existing.status}, not HOLD`) };
      }
      const taken = book.conflicts(req.event_id, req.seat_ids, req.reservation_id);
      if (taken.length > 0) return { error: pbError(ctx, 'ERROR_CODE_INVENTORY_CONFLICT', `seat ${taken.map((d) => d.value).join(', ')} not available`, taken) };
      let r = existing;
      if (!r) {
        r = { id: req.reservation_id, eventId: req.event_id, userId: req.user_id, seatIds: [], status: 'HOLD', createdAt: now, updatedAt: now, holdExpiresAt: until, paymentIntentId: '', orderId: '', metadata: null, confirmKey: '' };
        book.byId.set(r.id, r);
      }
      for (const s of req.seat_ids) if (!r.seatIds.includes(s)) r.seatIds.push(s);
      r.holdExpiresAt = until;
      r.updatedAt = now;
      book.hold(r, req.seat_ids);
      return { seats: req.seat_ids.map((s) => seatFromId(s, 'SEAT_STATUS_RESERVED')), error: null };
    }),

    CommitReservation: sim.unary(INVENTORY_SERVICE, 'CommitReservation', (req, ctx) => {
      const r = book.byId.get(req.reservation_id);
      if (!r) return { error: pbError(ctx, 'ERROR_CODE_NOT_FOUND', `reservation ${req.reservation_id || '(empty id)'} not found`, [detail('reservation_id', 'not found', req.reservation_id)]) };
      book.current(r);
      const sold = (): { seats: Seat[]; error: null } => ({ seats: r.seatIds.map((s) => seatFromId(s, 'SEAT_STATUS_SOLD')), error: null });
      if (r.status === 'CONFIRMED' && (req.order_id === '' || req.order_id === r.orderId)) return sold();
      if (r.status === 'EXPIRED') return { error: pbError(ctx, 'ERROR_CODE_RESERVATION_EXPIRED', 'the hold has expired') };
      if (r.status !== 'HOLD') return { error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', `reservation is ${r.status}, not HOLD`) };
      book.confirm(r, Date.now(), req.order_id || newOrderId(), '');
      return sold();
    }),

    ReleaseHold: sim.unary(INVENTORY_SERVICE, 'ReleaseHold', (req, ctx) => {
      const r = book.byId.get(req.reservation_id);
      if (!r) return { error: pbError(ctx, 'ERROR_CODE_NOT_FOUND', `reservation ${req.reservation_id || '(empty id)'} not found`, [detail('reservation_id', 'not found', req.reservation_id)]) };
      book.current(r);
      if (r.status === 'HOLD') return { released_seats: book.cancel(r, Date.now()).released_seats ?? [], error: null };
      if (r.status === 'CONFIRMED') return { error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', 'a confirmed reservation cannot be released') };
      return { released_seats: [], error: null }; // CANCELLED or EXPIRED: nothing held any more
    }),

    GetInventoryStatus: sim.unary(INVENTORY_SERVICE, 'GetInventoryStatus', (req, ctx) => {
      if (!req.event_id) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', 'invalid event_id', [detail('event_id', 'required')]) };
      let reserved = 0;
      let sold = 0;
      const known = book.knownSeats.get(req.event_id) ?? new Set<string>();
      for (const s of known) {
        const st = book.seatStatus(req.event_id, s);
        if (st === 'SEAT_STATUS_RESERVED') reserved++;
        else if (st === 'SEAT_STATUS_SOLD') sold++;
      }
      return { total: known.size, available: known.size - reserved - sold, reserved, sold, error: null };
    }),
  }
}

export async function startReservationSim(o: SimOptions = {}): Promise<RunningReservationSim> {
  const host = o.host ?? '127.0.0.1';
  const port = checkPort(o.port);
  const holdMs = checkNonNegative('holdMs', o.holdMs ?? 60_000);
  const log = defaultLogger(o.log, 'reservation');
  const sim = new SimServer(log);

  const book = new SeatBook(log);
  const protos = loadProtos();
  sim.server.addService(protos.reservation.v1.ReservationService.service, reservationHandlers(sim, book, holdMs, log));
  sim.server.addService(protos.reservation.v1.InventoryService.service, inventoryHandlers(sim, book, holdMs));

  // expired holds free their seats even when nobody reads them
  sim.every(Math.max(20, Math.min(1000, Math.floor(holdMs / 4) || 20)), () => book.sweep(Date.now()));

  let bound: { address: string; port: number };
  try {
    bound = await sim.listen(host, port);
  } catch (err) {
    await sim.stop();
    throw err;
  }
  log.info({ address: bound.address, holdMs }, 'reservation simulator listening (reservation.v1.ReservationService, reservation.v1.InventoryService)');
  return {
    address: bound.address,
    port: bound.port,
    received: sim.received,
    setMode: (mode, o) => sim.setMode(mode, o),
    setLoad: (load) => sim.setLoad(load),
    createdByToken: () => book.byToken,
    stop: async () => {
      await sim.stop();
      log.info({ address: bound.address }, 'reservation simulator stopped');
    },
  };
}
