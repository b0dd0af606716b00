import type { Timestamp__Output } from '../generated/proto/google/protobuf/Timestamp.js';
import type { Reservation__Output } from '../generated/proto/reservation/v1/Reservation.js';
import type { ReservationServiceClient } from '../generated/proto/reservation/v1/ReservationService.js';
import type { PaymentServiceClient } from '../generated/proto/payment/v1/PaymentService.js';
import type { Payment__Output } from '../generated/proto/payment/v1/Payment.js';
import type { CreateReservationResponse__Output as CreateRes } from '../generated/proto/reservation/v1/CreateReservationResponse.js';
import type { GetReservationResponse__Output as GetRes } from '../generated/proto/reservation/v1/GetReservationResponse.js';
import type { ConfirmReservationResponse__Output as ConfirmRes } from '../generated/proto/reservation/v1/ConfirmReservationResponse.js';
import type { CancelReservationResponse__Output as CancelRes } from '../generated/proto/reservation/v1/CancelReservationResponse.js';
import type { CreateReservationRequest } from '../generated/proto/reservation/v1/CreateReservationRequest.js';
import type { GetReservationRequest } from '../generated/proto/reservation/v1/GetReservationRequest.js';
import type { ConfirmReservationRequest } from '../generated/proto/reservation/v1/ConfirmReservationRequest.js';
import type { CancelReservationRequest } from '../generated/proto/reservation/v1/CancelReservationRequest.js';
import type { CreatePaymentIntentRequest } from '../generated/proto/payment/v1/CreatePaymentIntentRequest.js';
import type { CreatePaymentIntentResponse__Output as IntentRes } from '../generated/proto/payment/v1/CreatePaymentIntentResponse.js';
import type { ProcessPaymentRequest } from '../generated/proto/payment/v1/ProcessPaymentRequest.js';
import type { ProcessPaymentResponse__Output as ProcessRes } from '../generated/proto/payment/v1/ProcessPaymentResponse.js';
import type { GetPaymentStatusRequest } from '../generated/proto/payment/v1/GetPaymentStatusRequest.js';
import type { GetPaymentStatusResponse__Output as StatusRes } from '../generated/proto/payment/v1/GetPaymentStatusResponse.js';
import { GrpcBackend, type CallMeta } from './grpc-backend.js';

// The REST routes' view of the backends: plain values in, plain values out,
// errors as AppErrors (transport and in-band alike, see grpc-backend.ts).

export interface Reservation {
  readonly reservationId: string;
  readonly status: string;
  readonly eventId: string;
  readonly seatIds: readonly string[];
  readonly quantity: number;
  readonly userId: string;
  readonly holdExpiresAt: string | null;
  readonly paymentIntentId: string;
  readonly orderId: string;
}

export interface CreateReservation {
  eventId: string;
  seatIds: readonly string[];
  quantity: number;
  userId: string;
  reservationToken: string;
  clientIp: string;
}

const iso = (t: Timestamp__Output | null | undefined): string | null =>
  t ? new Date(Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString() : null;
const strip = (v: string | undefined, prefix: string): string => String(v ?? '').replace(prefix, '');

function fromMessage(r: Reservation__Output): Reservation {
  return {
    reservationId: r.reservation_id,
    status: strip(r.status, 'RESERVATION_STATUS_'),
    eventId: r.event_id,
    seatIds: r.seats.map((s) => s.id),
    quantity: r.quantity,
    userId: r.user_id,
    holdExpiresAt: iso(r.hold_expires_at),
    paymentIntentId: r.payment_intent_id,
    orderId: r.order_id,
  };
}

export class Reservations {
  constructor(readonly backend: GrpcBackend<ReservationServiceClient>) {}

  async create(c: CreateReservation, meta: CallMeta): Promise<Reservation> {
    const cl = this.backend.client;
    const r = await this.backend.call<CreateReservationRequest, CreateRes>(
      'CreateReservation',
      cl.CreateReservation,
      {
        event_id: c.eventId,
        seat_ids: [...c.seatIds],
        quantity: c.quantity,
        user_id: c.userId,
        reservation_token: c.reservationToken,
        idempotency_key: meta.idempotencyKey ?? '',
        metadata: { source: 'waiting-room-gateway', ip_address: c.clientIp },
      },
      meta,
      false,
    );
    return {
      reservationId: r.reservation_id,
      status: strip(r.status, 'RESERVATION_STATUS_'),
      eventId: c.eventId,
      seatIds: r.reserved_seats.length ? r.reserved_seats.map((s) => s.id) : [...c.seatIds],
      quantity: c.quantity,
      userId: c.userId,
      holdExpiresAt: iso(r.hold_expires_at),
      paymentIntentId: '',
      orderId: '',
    };
  }

  async get(reservationId: string, userId: string, meta: CallMeta): Promise<Reservation> {
    const r = await this.backend.call<GetReservationRequest, GetRes>('GetReservation', this.backend.client.GetReservation, { reservation_id: reservationId, user_id: userId }, meta, true);
    if (!r.reservation) throw new Error('GetReservation answered without a reservation');
    return fromMessage(r.reservation);
  }

  async confirm(reservationId: string, paymentIntentId: string, userId: string, meta: CallMeta): Promise<{ orderId: string; status: string; confirmedAt: string | null }> {
    const r = await this.backend.call<ConfirmReservationRequest, ConfirmRes>(
      'ConfirmReservation',
      this.backend.client.ConfirmReservation,
      { reservation_id: reservationId, payment_intent_id: paymentIntentId, user_id: userId, idempotency_key: meta.idempotencyKey ?? '' },
      meta,
      false,
    );
    return { orderId: r.order_id, status: strip(r.status, 'RESERVATION_STATUS_'), confirmedAt: iso(r.confirmed_at) };
  }

  async cancel(reservationId: string, userId: string, reason: string, meta: CallMeta): Promise<{ status: string; cancelledAt: string | null }> {
    const r = await this.backend.call<CancelReservationRequest, CancelRes>(
      'CancelReservation',
      this.backend.client.CancelReservation,
      { reservation_id: reservationId, user_id: userId, reason, idempotency_key: meta.idempotencyKey ?? '' },
      meta,
      false,
    );
    return { status: strip(r.status, 'RESERVATION_STATUS_'), cancelledAt: iso(r.cancelled_at) };
  }
}

export type Scenario = 'approve' | 'fail' | 'delay' | 'random' | 'timeout';

export interface PaymentView {
  readonly paymentIntentId: string;
  readonly status: string;
  readonly amount: number;
  readonly currency: string;
  readonly reservationId: string;
  readonly userId: string;
}

function paymentFromMessage(p: Payment__Output): PaymentView {
  return {
    paymentIntentId: p.payment_intent_id,
    status: strip(p.status, 'PAYMENT_STATUS_'),
    amount: Number(p.amount?.amount ?? 0),
    currency: p.amount?.currency ?? '',
    reservationId: p.reservation_id,
    userId: p.user_id,
  };
}

export class Payments {
  constructor(readonly backend: GrpcBackend<PaymentServiceClient>) {}

  async createIntent(
    c: { reservationId: string; amount: number; currency: string; userId: string; scenario: Scenario },
    meta: CallMeta,
  ): Promise<{ paymentIntentId: string; status: string; clientSecret: string; expiresAt: string | null }> {
    const r = await this.backend.call<CreatePaymentIntentRequest, IntentRes>(
      'CreatePaymentIntent',
      this.backend.client.CreatePaymentIntent,
      {
        reservation_id: c.reservationId,
        amount: { amount: String(c.amount), currency: c.currency },
        user_id: c.userId,
        method: 'PAYMENT_METHOD_CREDIT_CARD',
        scenario: `PAYMENT_SCENARIO_${c.scenario.toUpperCase()}` as 'PAYMENT_SCENARIO_APPROVE',
        idempotency_key: meta.idempotencyKey ?? '',
      },
      meta,
      false,
    );
    return { paymentIntentId: r.payment_intent_id, status: strip(r.status, 'PAYMENT_STATUS_'), clientSecret: r.client_secret, expiresAt: iso(r.expires_at) };
  }

  async process(paymentIntentId: string, action: 'approve' | 'fail', meta: CallMeta) {
    const r = await this.backend.call<ProcessPaymentRequest, ProcessRes>(
      'ProcessPayment',
      this.backend.client.ProcessPayment,
      { payment_intent_id: paymentIntentId, payment_details: { method: 'PAYMENT_METHOD_CREDIT_CARD', action }, idempotency_key: meta.idempotencyKey ?? '' },
      meta,
      false,
      // a declined payment is an outcome (200 {"status":"FAILED"}), not an error
      ['ERROR_CODE_PAYMENT_NOT_APPROVED'],
    );
    return {
      paymentId: r.payment_id,
      status: strip(r.status, 'PAYMENT_STATUS_'),
      transactionId: r.transaction_id,
      processedAt: iso(r.processed_at),
      success: r.result?.success ?? false,
      failureReason: r.result?.failure_reason || r.error?.message || '',
    };
  }

  async status(paymentIntentId: string, userId: string, meta: CallMeta): Promise<PaymentView> {
    const r = await this.backend.call<GetPaymentStatusRequest, StatusRes>('GetPaymentStatus', this.backend.client.GetPaymentStatus, { payment_intent_id: paymentIntentId, user_id: userId }, meta, true);
    if (!r.payment) throw new Error('GetPaymentStatus answered without a payment');
    return paymentFromMessage(r.payment);
  }
}
