import { randomUUID } from 'node:crypto';
import { AppError } from '../errors.js';

// The reservation backend the REST routes talk to. Issue 5 puts the gRPC
// client (reservation.v1.ReservationService) behind this interface; until
// then the gateway uses LocalReservations, an in-process service with the
// seed's semantics (holds that expire after 60 s, one hold per seat).

export interface Reservation {
  readonly reservationId: string;
  readonly status: 'HOLD' | 'CONFIRMED' | 'CANCELLED' | 'EXPIRED';
  readonly eventId: string;
  readonly seatIds: readonly string[];
  readonly quantity: number;
  readonly userId: string;
  readonly holdExpiresAt: Date;
}

export interface CreateReservation {
  eventId: string;
  seatIds: readonly string[];
  quantity: number;
  userId: string;
  reservationToken: string;
  idempotencyKey: string;
}

export interface ReservationBackend {
  create(r: CreateReservation): Promise<Reservation>;
  get(reservationId: string, userId: string): Promise<Reservation | null>;
}

export class LocalReservations implements ReservationBackend {
  private readonly byId = new Map<string, Reservation>();
  private readonly seatHolder = new Map<string, string>();

  constructor(private readonly holdMs = 60_000) {}

  private current(r: Reservation): Reservation {
    if (r.status === 'HOLD' && r.holdExpiresAt.getTime() <= Date.now()) {
      const expired = { ...r, status: 'EXPIRED' as const };
      this.byId.set(r.reservationId, expired);
      for (const s of r.seatIds) if (this.seatHolder.get(`${r.eventId}/${s}`) === r.reservationId) this.seatHolder.delete(`${r.eventId}/${s}`);
      return expired;
    }
    return r;
  }

  async create(c: CreateReservation): Promise<Reservation> {
    for (const s of c.seatIds) {
      const holder = this.seatHolder.get(`${c.eventId}/${s}`);
      if (holder && this.current(this.byId.get(holder)!).status === 'HOLD') {
        throw new AppError('INVENTORY_CONFLICT', `seat ${s} is already held`, { seat_id: s });
      }
    }
    const r: Reservation = {
      reservationId: randomUUID(),
      status: 'HOLD',
      eventId: c.eventId,
      seatIds: [...c.seatIds],
      quantity: c.quantity,
      userId: c.userId,
      holdExpiresAt: new Date(Date.now() + this.holdMs),
    };
    this.byId.set(r.reservationId, r);
    for (const s of c.seatIds) this.seatHolder.set(`${c.eventId}/${s}`, r.reservationId);
    return r;
  }

  async get(reservationId: string, userId: string): Promise<Reservation | null> {
    const r = this.byId.get(reservationId);
    if (!r) return null;
    if (r.userId !== userId) throw new AppError('FORBIDDEN', 'this reservation belongs to another user');
    return this.current(r);
  }
}
