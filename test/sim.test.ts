import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProtos } from '../src/backends/proto.js';
import type { InventoryServiceClient } from '../src/generated/proto/reservation/v1/InventoryService.js';
import type { ReservationServiceClient } from '../src/generated/proto/reservation/v1/ReservationService.js';
import type { PaymentServiceClient } from '../src/generated/proto/payment/v1/PaymentService.js';
import type { CreateReservationRequest } from '../src/generated/proto/reservation/v1/CreateReservationRequest.js';
import type { CreatePaymentIntentRequest } from '../src/generated/proto/payment/v1/CreatePaymentIntentRequest.js';
import type { Timestamp__Output } from '../src/generated/proto/google/protobuf/Timestamp.js';
import { startReservationSim, type RunningSim } from '../src/sim/reservation-sim.js';
import { startPaymentSim } from '../src/sim/payment-sim.js';

// The backend simulators as real gRPC servers on free ports, driven by real
// grpc-js clients built from the same protos the gateway loads.

const HOLD_MS = 300;
const DELAY_MS = 250;

interface CallOpts {
  deadlineMs?: number;
  metadata?: Record<string, string>;
}

type Start<Res> = (md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

function invoke<Res>(start: Start<Res>, o: CallOpts = {}): Promise<Res> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(o.metadata ?? {})) md.set(k, v);
  return new Promise((resolve, reject) => {
    start(md, { deadline: Date.now() + (o.deadlineMs ?? 5000) }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

const ms = (t: Timestamp__Output | null): number => (t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : NaN);
const sleep = (n: number): Promise<void> => new Promise((r) => setTimeout(r, n));

function reservationClients(address: string): { rs: ReservationServiceClient; inv: InventoryServiceClient } {
  const p = loadProtos();
  return {
    rs: new p.reservation.v1.ReservationService(address, grpc.credentials.createInsecure()),
    inv: new p.reservation.v1.InventoryService(address, grpc.credentials.createInsecure()),
  };
}

function paymentClient(address: string): PaymentServiceClient {
  return new (loadProtos().payment.v1.PaymentService)(address, grpc.credentials.createInsecure());
}

describe('reservation simulator', () => {
  let sim: RunningSim;
  let rs: ReservationServiceClient;
  let inv: InventoryServiceClient;

  const create = (req: CreateReservationRequest, o?: CallOpts) => invoke<import('../src/generated/proto/reservation/v1/CreateReservationResponse.js').CreateReservationResponse__Output>((md, opts, cb) => rs.CreateReservation(req, md, opts, cb), o);
  const get = (reservation_id: string, user_id: string) => invoke<import('../src/generated/proto/reservation/v1/GetReservationResponse.js').GetReservationResponse__Output>((md, opts, cb) => rs.GetReservation({ reservation_id, user_id }, md, opts, cb));
  const confirm = (reservation_id: string, user_id: string, idempotency_key: string, payment_intent_id = 'pi_1') =>
    invoke<import('../src/generated/proto/reservation/v1/ConfirmReservationResponse.js').ConfirmReservationResponse__Output>((md, opts, cb) => rs.ConfirmReservation({ reservation_id, user_id, idempotency_key, payment_intent_id }, md, opts, cb));
  const cancel = (reservation_id: string, user_id: string) =>
    invoke<import('../src/generated/proto/reservation/v1/CancelReservationResponse.js').CancelReservationResponse__Output>((md, opts, cb) => rs.CancelReservation({ reservation_id, user_id, reason: 'test', idempotency_key: randomUUID() }, md, opts, cb));
  const inventory = (event_id: string) => invoke<import('../src/generated/proto/reservation/v1/GetInventoryStatusResponse.js').GetInventoryStatusResponse__Output>((md, opts, cb) => inv.GetInventoryStatus({ event_id }, md, opts, cb));

  const hold = (event_id: string, seat_ids: string[], user_id = 'alice', idempotency_key = randomUUID()) =>
    create({ event_id, seat_ids, quantity: seat_ids.length, user_id, reservation_token: 'rt-1', idempotency_key });

  beforeAll(async () => {
    sim = await startReservationSim({ port: 0, holdMs: HOLD_MS });
    ({ rs, inv } = reservationClients(sim.address));
  });
  afterAll(async () => {
    rs?.close();
    inv?.close();
    await sim?.stop();
  });

  it('listens on a free port and reports host:port', () => {
    expect(sim.port).toBeGreaterThan(0);
    expect(sim.address).toBe(`127.0.0.1:${sim.port}`);
  });

  it('creates a HOLD with derived seats, prices, total and expiry; GetReservation reads it back', async () => {
    const before = Date.now();
    const r = await hold('ev-create', ['A-12', 'S2-B-7']);
    expect(r.error).toBeNull();
    expect(r.status).toBe('RESERVATION_STATUS_HOLD');
    expect(r.reservation_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(ms(r.hold_expires_at)).toBeGreaterThanOrEqual(before + HOLD_MS - 5);
    expect(ms(r.hold_expires_at)).toBeLessThanOrEqual(Date.now() + HOLD_MS + 5);
    expect(r.reserved_seats).toEqual([
      { id: 'A-12', section: 'GENERAL', row: 'A', number: '12', price: { amount: '100000', currency: 'KRW' }, status: 'SEAT_STATUS_RESERVED' },
      { id: 'S2-B-7', section: 'S2', row: 'B', number: '7', price: { amount: '100000', currency: 'KRW' }, status: 'SEAT_STATUS_RESERVED' },
    ]);
    expect(r.total_amount).toEqual({ amount: '200000', currency: 'KRW' });

    const g = await get(r.reservation_id, 'alice');
    expect(g.error).toBeNull();
    expect(g.reservation).toMatchObject({ reservation_id: r.reservation_id, event_id: 'ev-create', user_id: 'alice', status: 'RESERVATION_STATUS_HOLD', quantity: 2, total_amount: { amount: '200000', currency: 'KRW' } });
    expect(g.reservation?.seats.map((s) => s.status)).toEqual(['SEAT_STATUS_RESERVED', 'SEAT_STATUS_RESERVED']);
    expect(ms(g.reservation?.hold_expires_at ?? null)).toBe(ms(r.hold_expires_at));
  });

  it('rejects a seat held by another live reservation with INVENTORY_CONFLICT (status OK), naming the seat', async () => {
    const first = await hold('ev-conflict', ['C-1', 'C-2']);
    expect(first.status).toBe('RESERVATION_STATUS_HOLD');
    const second = await hold('ev-conflict', ['C-2', 'C-3'], 'bob');
    expect(second.error?.code).toBe('ERROR_CODE_INVENTORY_CONFLICT');
    expect(second.error?.details).toEqual([{ field: 'seat_ids', reason: 'seat held by another reservation', value: 'C-2' }]);
    expect(second.reservation_id).toBe('');
    // C-3 was not held by the failed attempt; the same seat in another event is independent
    expect((await hold('ev-conflict', ['C-3'], 'bob')).status).toBe('RESERVATION_STATUS_HOLD');
    expect((await hold('ev-conflict-2', ['C-2'], 'bob')).status).toBe('RESERVATION_STATUS_HOLD');
  });

  it('validates every required field with INVALID_ARGUMENT and a detail naming it', async () => {
    const base: CreateReservationRequest = { event_id: 'ev-v', seat_ids: ['V-1'], quantity: 1, user_id: 'alice', reservation_token: 'rt', idempotency_key: '' };
    const cases: Array<[Partial<CreateReservationRequest>, string]> = [
      [{ event_id: '' }, 'event_id'],
      [{ seat_ids: [], quantity: 0 }, 'seat_ids'],
      [{ quantity: 2 }, 'quantity'],
      [{ user_id: '' }, 'user_id'],
      [{ reservation_token: '' }, 'reservation_token'],
      [{ seat_ids: ['V-1', 'V-1'], quantity: 2 }, 'seat_ids'],
    ];
    for (const [patch, field] of cases) {
      const r = await create({ ...base, ...patch });
      expect(r.error?.code, field).toBe('ERROR_CODE_INVALID_ARGUMENT');
      expect(r.error?.details.map((d) => d.field)).toEqual([field]);
      expect(r.status).toBe('RESERVATION_STATUS_UNSPECIFIED');
    }
    // none of them held the seat
    expect((await inventory('ev-v')).reserved).toBe(0);
  });

  it('replays the same response for the same idempotency key without a second hold; a different request under it conflicts', async () => {
    const key = randomUUID();
    const a = await hold('ev-idem', ['I-1', 'I-2'], 'alice', key);
    const b = await hold('ev-idem', ['I-1', 'I-2'], 'alice', key);
    expect(a.status).toBe('RESERVATION_STATUS_HOLD');
    expect(b).toEqual(a);
    const st = await inventory('ev-idem');
    expect(st).toMatchObject({ total: 2, reserved: 2, available: 0, sold: 0 });
    const c = await hold('ev-idem', ['I-3'], 'alice', key);
    expect(c.error?.code).toBe('ERROR_CODE_IDEMPOTENCY_CONFLICT');
    expect(c.error?.details[0]?.field).toBe('idempotency_key');
  });

  it('expires a hold after holdMs: reads EXPIRED, frees the seat, and cannot be confirmed', async () => {
    const r = await hold('ev-exp', ['E-1']);
    expect((await hold('ev-exp', ['E-1'], 'bob')).error?.code).toBe('ERROR_CODE_INVENTORY_CONFLICT');
    await sleep(HOLD_MS + 100);
    const g = await get(r.reservation_id, 'alice');
    expect(g.reservation?.status).toBe('RESERVATION_STATUS_EXPIRED');
    expect(g.reservation?.seats[0]?.status).toBe('SEAT_STATUS_AVAILABLE');
    const c = await confirm(r.reservation_id, 'alice', randomUUID());
    expect(c.error?.code).toBe('ERROR_CODE_RESERVATION_EXPIRED');
    expect(c.order_id).toBe('');
    const again = await hold('ev-exp', ['E-1'], 'bob');
    expect(again.status).toBe('RESERVATION_STATUS_HOLD');
    expect(again.error).toBeNull();
  });

  it('GetReservation: NOT_FOUND for an unknown id, FORBIDDEN for another user', async () => {
    const r = await hold('ev-get', ['G-1']);
    expect((await get(randomUUID(), 'alice')).error?.code).toBe('ERROR_CODE_NOT_FOUND');
    const other = await get(r.reservation_id, 'mallory');
    expect(other.error?.code).toBe('ERROR_CODE_FORBIDDEN');
    expect(other.reservation).toBeNull();
  });

  it('confirms a HOLD: order id, confirmed seats SOLD, remembered payment intent; replays by key; rejects other keys, users, ids', async () => {
    const r = await hold('ev-confirm', ['F-1', 'F-2']);
    const key = randomUUID();
    const c = await confirm(r.reservation_id, 'alice', key, 'pi_abc');
    expect(c.error).toBeNull();
    expect(c.status).toBe('RESERVATION_STATUS_CONFIRMED');
    expect(c.order_id).toMatch(/^ord_/);
    expect(Math.abs(ms(c.confirmed_at) - Date.now())).toBeLessThan(2000);
    expect(c.confirmed_seats.map((s) => [s.id, s.status])).toEqual([
      ['F-1', 'SEAT_STATUS_SOLD'],
      ['F-2', 'SEAT_STATUS_SOLD'],
    ]);
    expect(await confirm(r.reservation_id, 'alice', key, 'pi_abc')).toEqual(c);
    expect((await confirm(r.reservation_id, 'alice', key, 'pi_other')).error?.code).toBe('ERROR_CODE_IDEMPOTENCY_CONFLICT');
    expect((await confirm(r.reservation_id, 'alice', randomUUID(), 'pi_abc')).error?.code).toBe('ERROR_CODE_FAILED_PRECONDITION');
    expect((await confirm(r.reservation_id, 'mallory', key, 'pi_abc')).error?.code).toBe('ERROR_CODE_FORBIDDEN');
    expect((await confirm(randomUUID(), 'alice', key)).error?.code).toBe('ERROR_CODE_NOT_FOUND');

    // a confirmed reservation does not expire and keeps its seats sold
    await sleep(HOLD_MS + 100);
    const g = await get(r.reservation_id, 'alice');
    expect(g.reservation).toMatchObject({ status: 'RESERVATION_STATUS_CONFIRMED', payment_intent_id: 'pi_abc', order_id: c.order_id });
    expect(g.reservation?.seats.map((s) => s.status)).toEqual(['SEAT_STATUS_SOLD', 'SEAT_STATUS_SOLD']);
    const taken = await hold('ev-confirm', ['F-1'], 'bob');
    expect(taken.error?.code).toBe('ERROR_CODE_INVENTORY_CONFLICT');
    expect(taken.error?.details[0]?.reason).toBe('seat already sold');
    // and cannot be cancelled
    expect((await cancel(r.reservation_id, 'alice')).error?.code).toBe('ERROR_CODE_FAILED_PRECONDITION');
  });

  it('cancels a HOLD (seats released), idempotently; a cancelled reservation cannot be confirmed', async () => {
    const r = await hold('ev-cancel', ['K-1']);
    const c = await cancel(r.reservation_id, 'alice');
    expect(c.error).toBeNull();
    expect(c.status).toBe('RESERVATION_STATUS_CANCELLED');
    expect(c.released_seats.map((s) => [s.id, s.status])).toEqual([['K-1', 'SEAT_STATUS_AVAILABLE']]);
    expect(await cancel(r.reservation_id, 'alice')).toEqual(c);
    expect((await get(r.reservation_id, 'alice')).reservation?.status).toBe('RESERVATION_STATUS_CANCELLED');
    expect((await cancel(r.reservation_id, 'mallory')).error?.code).toBe('ERROR_CODE_FORBIDDEN');
    expect((await cancel(randomUUID(), 'alice')).error?.code).toBe('ERROR_CODE_NOT_FOUND');
    const conf = await confirm(r.reservation_id, 'alice', randomUUID());
    expect(conf.error?.code).toBe('ERROR_CODE_FAILED_PRECONDITION');
    expect((await hold('ev-cancel', ['K-1'], 'bob')).status).toBe('RESERVATION_STATUS_HOLD');
  });

  it('InventoryService shares the seat state: check, reserve, commit, release, status', async () => {
    const check = (seat_ids: string[]) => invoke<import('../src/generated/proto/reservation/v1/CheckAvailabilityResponse.js').CheckAvailabilityResponse__Output>((md, opts, cb) => inv.CheckAvailability({ event_id: 'ev-inv', seat_ids, quantity: seat_ids.length }, md, opts, cb));
    await hold('ev-inv', ['N-1']);
    const c1 = await check(['N-1', 'N-2']);
    expect(c1.available).toBe(false);
    expect(c1.seats.map((s) => s.status)).toEqual(['SEAT_STATUS_RESERVED', 'SEAT_STATUS_AVAILABLE']);
    expect((await check(['N-2'])).available).toBe(true);

    const rid = randomUUID();
    const reserve = (seat_ids: string[]) =>
      invoke<import('../src/generated/proto/reservation/v1/ReserveSeatResponse.js').ReserveSeatResponse__Output>((md, opts, cb) => inv.ReserveSeat({ event_id: 'ev-inv', seat_ids, reservation_id: rid, user_id: 'carol', hold_until: null }, md, opts, cb));
    expect((await reserve(['N-1'])).error?.code).toBe('ERROR_CODE_INVENTORY_CONFLICT');
    const rsv = await reserve(['N-2', 'N-3']);
    expect(rsv.error).toBeNull();
    expect(rsv.seats.map((s) => s.status)).toEqual(['SEAT_STATUS_RESERVED', 'SEAT_STATUS_RESERVED']);
    // the reservation service sees the hold made through the inventory service
    expect((await get(rid, 'carol')).reservation?.status).toBe('RESERVATION_STATUS_HOLD');

    const commit = await invoke<import('../src/generated/proto/reservation/v1/CommitReservationResponse.js').CommitReservationResponse__Output>((md, opts, cb) => inv.CommitReservation({ reservation_id: rid, order_id: 'ord-x' }, md, opts, cb));
    expect(commit.seats.map((s) => s.status)).toEqual(['SEAT_STATUS_SOLD', 'SEAT_STATUS_SOLD']);
    expect((await get(rid, 'carol')).reservation).toMatchObject({ status: 'RESERVATION_STATUS_CONFIRMED', order_id: 'ord-x' });
    expect(await inventory('ev-inv')).toMatchObject({ total: 3, reserved: 1, sold: 2, available: 0 });

    const rel = (reservation_id: string) => invoke<import('../src/generated/proto/reservation/v1/ReleaseHoldResponse.js').ReleaseHoldResponse__Output>((md, opts, cb) => inv.ReleaseHold({ reservation_id, reason: 'test' }, md, opts, cb));
    expect((await rel(rid)).error?.code).toBe('ERROR_CODE_FAILED_PRECONDITION');
    expect((await rel(randomUUID())).error?.code).toBe('ERROR_CODE_NOT_FOUND');
    const h = await hold('ev-inv', ['N-4']);
    const released = await rel(h.reservation_id);
    expect(released.released_seats.map((s) => s.id)).toEqual(['N-4']);
    expect((await get(h.reservation_id, 'alice')).reservation?.status).toBe('RESERVATION_STATUS_CANCELLED');
  });

  it('records every call with all its metadata, and echoes the traceparent trace id in in-band errors', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const traceparent = `00-${traceId}-00f067aa0ba902b7-01`;
    const requestId = randomUUID();
    const key = randomUUID();
    const r = await create(
      { event_id: 'ev-md', seat_ids: ['M-1'], quantity: 1, user_id: 'alice', reservation_token: 'rt', idempotency_key: key },
      { metadata: { traceparent, 'x-request-id': requestId, 'idempotency-key': key } },
    );
    const rec = sim.received.filter((c) => c.metadata['x-request-id'] === requestId);
    expect(rec).toHaveLength(1);
    expect(rec[0]).toMatchObject({ service: 'reservation.v1.ReservationService', method: 'CreateReservation' });
    expect(rec[0]?.metadata).toMatchObject({ traceparent, 'x-request-id': requestId, 'idempotency-key': key });
    expect(rec[0]?.request).toMatchObject({ event_id: 'ev-md', seat_ids: ['M-1'], idempotency_key: key });
    expect(Math.abs((rec[0]?.at ?? 0) - Date.now())).toBeLessThan(2000);
    expect(r.status).toBe('RESERVATION_STATUS_HOLD');

    const nf = await invoke<import('../src/generated/proto/reservation/v1/GetReservationResponse.js').GetReservationResponse__Output>((md, opts, cb) => rs.GetReservation({ reservation_id: 'nope', user_id: 'alice' }, md, opts, cb), { metadata: { traceparent } });
    expect(nf.error).toMatchObject({ code: 'ERROR_CODE_NOT_FOUND', trace_id: traceId });
    expect(sim.received.at(-1)).toMatchObject({ method: 'GetReservation', metadata: { traceparent } });
  });

  it('keeps only the last 1000 received calls', async () => {
    const tag = randomUUID();
    await Promise.all(Array.from({ length: 1005 }, (_, i) => invoke((md, opts, cb) => rs.GetReservation({ reservation_id: `${tag}-${i}`, user_id: 'x' }, md, opts, cb))));
    expect(sim.received).toHaveLength(1000);
    const ids = new Set(sim.received.map((c) => (c.request as { reservation_id: string }).reservation_id));
    // the last 1000 of 1005 concurrent calls: at least 995 of ours are there
    expect([...ids].filter((id) => id.startsWith(tag)).length).toBeGreaterThanOrEqual(995);
  });

  it('hang mode: calls are accepted and never answered (DEADLINE_EXCEEDED); unavailable mode: status UNAVAILABLE; normal restores', async () => {
    sim.setMode('hang');
    const t0 = Date.now();
    const hung = await grpcError(create({ event_id: 'ev-mode', seat_ids: ['H-1'], quantity: 1, user_id: 'alice', reservation_token: 'rt', idempotency_key: randomUUID() }, { deadlineMs: 400 }));
    expect(hung.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390); // the deadline ended it, not an early answer
    const hung2 = await grpcError(invoke((md, opts, cb) => rs.GetReservation({ reservation_id: 'x', user_id: 'y' }, md, opts, cb), { deadlineMs: 300 }));
    expect(hung2.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // the hung calls were received and recorded, and did not hold the seat
    // (received is at its 1000 cap here: compare the tail, not a slice from the old length)
    expect(sim.received.slice(-2).map((c) => [c.method, c.at >= t0])).toEqual([
      ['CreateReservation', true],
      ['GetReservation', true],
    ]);

    sim.setMode('unavailable');
    const un = await grpcError(hold('ev-mode', ['H-1']));
    expect(un.code).toBe(grpc.status.UNAVAILABLE);
    expect(un.details).toContain('unavailable mode');

    sim.setMode('normal');
    const ok = await hold('ev-mode', ['H-1']);
    expect(ok.status).toBe('RESERVATION_STATUS_HOLD');
    expect(() => sim.setMode('bogus' as 'normal')).toThrow(RangeError);
  });
});

describe('reservation simulator lifecycle', () => {
  it('stop() answers calls left hanging with UNAVAILABLE, frees the port, and refuses later calls', async () => {
    const sim = await startReservationSim({ port: 0 });
    const { rs, inv } = reservationClients(sim.address);
    try {
      sim.setMode('hang');
      const pending = grpcError(invoke((md, opts, cb) => rs.GetReservation({ reservation_id: 'x', user_id: 'y' }, md, opts, cb), { deadlineMs: 10_000 }));
      await sleep(100);
      const t0 = Date.now();
      await sim.stop();
      const e = await pending;
      expect(e.code).toBe(grpc.status.UNAVAILABLE);
      expect(Date.now() - t0).toBeLessThan(2500);
      const after = await grpcError(invoke((md, opts, cb) => rs.GetReservation({ reservation_id: 'x', user_id: 'y' }, md, opts, cb), { deadlineMs: 1000 }));
      expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(after.code);
      // the port is free again: a new simulator binds it
      const again = await startReservationSim({ port: sim.port });
      expect(again.port).toBe(sim.port);
      await again.stop();
      await sim.stop(); // idempotent
    } finally {
      rs.close();
      inv.close();
    }
  });

  it('a periodic sweep expires holds and frees their seats with no call touching them', async () => {
    const lines: Array<{ msg: string; reservation_id?: string; time: number }> = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg: string; reservation_id?: string; time: number }) });
    const sim = await startReservationSim({ port: 0, holdMs: 200, log });
    const { rs, inv } = reservationClients(sim.address);
    try {
      const r = await invoke<import('../src/generated/proto/reservation/v1/CreateReservationResponse.js').CreateReservationResponse__Output>((md, opts, cb) =>
        rs.CreateReservation({ event_id: 'ev-sweep', seat_ids: ['W-1'], quantity: 1, user_id: 'alice', reservation_token: 'rt', idempotency_key: '' }, md, opts, cb),
      );
      const calls = sim.received.length;
      await sleep(400);
      // no call in between: only the sweep timer can have expired it
      expect(sim.received.length).toBe(calls);
      const expired = lines.find((l) => l.msg === 'hold expired' && l.reservation_id === r.reservation_id);
      expect(expired).toBeDefined();
      const st = await invoke<import('../src/generated/proto/reservation/v1/GetInventoryStatusResponse.js').GetInventoryStatusResponse__Output>((md, opts, cb) => inv.GetInventoryStatus({ event_id: 'ev-sweep' }, md, opts, cb));
      expect(st).toMatchObject({ total: 1, reserved: 0, available: 1 });
    } finally {
      rs.close();
      inv.close();
      await sim.stop();
    }
  });

  it('rejects invalid options', async () => {
    await expect(startReservationSim({ port: 70000 })).rejects.toThrow(RangeError);
    await expect(startReservationSim({ port: -1 })).rejects.toThrow(RangeError);
    await expect(startReservationSim({ holdMs: Number.NaN })).rejects.toThrow(RangeError);
    await expect(startPaymentSim({ randomApproveRate: 1.5 })).rejects.toThrow(RangeError);
    await expect(startPaymentSim({ delayMs: -5 })).rejects.toThrow(RangeError);
  });
});

describe('payment simulator', () => {
  let sim: RunningSim;
  let ps: PaymentServiceClient;
  type CreateRes = import('../src/generated/proto/payment/v1/CreatePaymentIntentResponse.js').CreatePaymentIntentResponse__Output;
  type ProcessRes = import('../src/generated/proto/payment/v1/ProcessPaymentResponse.js').ProcessPaymentResponse__Output;
  type StatusRes = import('../src/generated/proto/payment/v1/GetPaymentStatusResponse.js').GetPaymentStatusResponse__Output;

  const createOn = (c: PaymentServiceClient, req: CreatePaymentIntentRequest, o?: CallOpts) => invoke<CreateRes>((md, opts, cb) => c.CreatePaymentIntent(req, md, opts, cb), o);
  const intentOn = (c: PaymentServiceClient, scenario: CreatePaymentIntentRequest['scenario'], extra: Partial<CreatePaymentIntentRequest> = {}) =>
    createOn(c, { reservation_id: randomUUID(), amount: { amount: 200000, currency: 'KRW' }, user_id: 'alice', method: 'PAYMENT_METHOD_CREDIT_CARD', scenario, idempotency_key: randomUUID(), ...extra });
  const processOn = (c: PaymentServiceClient, payment_intent_id: string, action = '', idempotency_key: string = randomUUID(), o?: CallOpts) =>
    invoke<ProcessRes>((md, opts, cb) => c.ProcessPayment({ payment_intent_id, payment_details: { method: 'PAYMENT_METHOD_CREDIT_CARD', action, card_token: 'tok' }, idempotency_key }, md, opts, cb), o);
  const create = (req: CreatePaymentIntentRequest, o?: CallOpts) => createOn(ps, req, o);
  const intent = (scenario: CreatePaymentIntentRequest['scenario'], extra?: Partial<CreatePaymentIntentRequest>) => intentOn(ps, scenario, extra);
  const processP = (id: string, action?: string, key?: string, o?: CallOpts) => processOn(ps, id, action, key, o);
  const status = (payment_intent_id: string, user_id = 'alice') => invoke<StatusRes>((md, opts, cb) => ps.GetPaymentStatus({ payment_intent_id, user_id }, md, opts, cb));

  beforeAll(async () => {
    sim = await startPaymentSim({ port: 0, delayMs: DELAY_MS });
    ps = paymentClient(sim.address);
  });
  afterAll(async () => {
    ps?.close();
    await sim?.stop();
  });

  it('creates a PENDING intent with a client secret and a 15 min expiry; currency defaults to KRW', async () => {
    const before = Date.now();
    const i = await intent('PAYMENT_SCENARIO_APPROVE', { amount: { amount: '5000', currency: '' } });
    expect(i.error).toBeNull();
    expect(i.status).toBe('PAYMENT_STATUS_PENDING');
    expect(i.payment_intent_id).toMatch(/^pi_/);
    expect(i.client_secret.startsWith(`${i.payment_intent_id}_secret_`)).toBe(true);
    expect(ms(i.expires_at) - before).toBeGreaterThanOrEqual(15 * 60_000 - 5);
    expect(ms(i.expires_at) - Date.now()).toBeLessThanOrEqual(15 * 60_000 + 5);
    const s = await status(i.payment_intent_id);
    expect(s.payment).toMatchObject({ payment_intent_id: i.payment_intent_id, user_id: 'alice', amount: { amount: '5000', currency: 'KRW' }, status: 'PAYMENT_STATUS_PENDING', scenario: 'PAYMENT_SCENARIO_APPROVE', transaction_id: '' });
  });

  it('validates amount, reservation_id and user_id with INVALID_ARGUMENT naming the field', async () => {
    for (const amount of [{ amount: 0, currency: 'KRW' }, { amount: -100, currency: 'KRW' }, null]) {
      const r = await intent('PAYMENT_SCENARIO_APPROVE', { amount });
      expect(r.error?.code).toBe('ERROR_CODE_INVALID_ARGUMENT');
      expect(r.error?.details.map((d) => d.field)).toEqual(['amount']);
      expect(r.payment_intent_id).toBe('');
    }
    expect((await intent('PAYMENT_SCENARIO_APPROVE', { reservation_id: '' })).error?.details.map((d) => d.field)).toEqual(['reservation_id']);
    expect((await intent('PAYMENT_SCENARIO_APPROVE', { user_id: '' })).error?.details.map((d) => d.field)).toEqual(['user_id']);
  });

  it('replays CreatePaymentIntent by idempotency key; a different request under the key conflicts', async () => {
    const key = randomUUID();
    const req: CreatePaymentIntentRequest = { reservation_id: 'r-1', amount: { amount: 100000, currency: 'KRW' }, user_id: 'alice', scenario: 'PAYMENT_SCENARIO_APPROVE', idempotency_key: key };
    const a = await create(req);
    const b = await create(req);
    expect(a.error).toBeNull();
    expect(b).toEqual(a);
    const c = await create({ ...req, amount: { amount: 1, currency: 'KRW' } });
    expect(c.error?.code).toBe('ERROR_CODE_IDEMPOTENCY_CONFLICT');
  });

  it('APPROVE completes; the result is final and replayed, by key and by state', async () => {
    const i = await intent('PAYMENT_SCENARIO_APPROVE');
    const key = randomUUID();
    const p = await processP(i.payment_intent_id, '', key);
    expect(p.error).toBeNull();
    expect(p.status).toBe('PAYMENT_STATUS_COMPLETED');
    expect(p.payment_id).toMatch(/^pay_/);
    expect(p.transaction_id).toMatch(/^txn_[0-9a-f]{24}$/);
    expect(p.result).toMatchObject({ success: true, failure_reason: '', response_code: '00' });
    expect(Math.abs(ms(p.processed_at) - Date.now())).toBeLessThan(2000);
    expect(await processP(i.payment_intent_id, '', key)).toEqual(p);
    // a new key on a completed intent: the same result again, never a second charge
    expect(await processP(i.payment_intent_id, 'fail')).toEqual(p);
    expect((await processP(i.payment_intent_id, 'approve', key)).error?.code).toBe('ERROR_CODE_IDEMPOTENCY_CONFLICT');
    const s = await status(i.payment_intent_id);
    expect(s.payment).toMatchObject({ status: 'PAYMENT_STATUS_COMPLETED', transaction_id: p.transaction_id });
  });

  it('FAIL is answered with status OK, FAILED, success=false, a reason and PAYMENT_NOT_APPROVED', async () => {
    const i = await intent('PAYMENT_SCENARIO_FAIL');
    const p = await processP(i.payment_intent_id);
    expect(p.status).toBe('PAYMENT_STATUS_FAILED');
    expect(p.result?.success).toBe(false);
    expect(p.result?.failure_reason).not.toBe('');
    expect(p.error?.code).toBe('ERROR_CODE_PAYMENT_NOT_APPROVED');
    expect(p.payment_id).not.toBe('');
    expect((await status(i.payment_intent_id)).payment?.status).toBe('PAYMENT_STATUS_FAILED');
    expect(await processP(i.payment_intent_id)).toEqual(p);
  });

  it('payment_details.action overrides the scenario; an unknown action is INVALID_ARGUMENT', async () => {
    const f = await intent('PAYMENT_SCENARIO_FAIL');
    expect((await processP(f.payment_intent_id, 'approve')).status).toBe('PAYMENT_STATUS_COMPLETED');
    const a = await intent('PAYMENT_SCENARIO_APPROVE');
    const failed = await processP(a.payment_intent_id, 'FAIL');
    expect(failed.status).toBe('PAYMENT_STATUS_FAILED');
    expect(failed.error?.code).toBe('ERROR_CODE_PAYMENT_NOT_APPROVED');
    const t = await intent('PAYMENT_SCENARIO_TIMEOUT');
    expect((await processP(t.payment_intent_id, 'approve')).status).toBe('PAYMENT_STATUS_COMPLETED');
    const bad = await processP((await intent('PAYMENT_SCENARIO_APPROVE')).payment_intent_id, 'refund');
    expect(bad.error?.code).toBe('ERROR_CODE_INVALID_ARGUMENT');
    expect(bad.error?.details[0]?.field).toBe('payment_details.action');
  });

  it('DELAY reads PROCESSING meanwhile and completes after delayMs; a concurrent call gets the same outcome', async () => {
    const i = await intent('PAYMENT_SCENARIO_DELAY');
    const t0 = Date.now();
    const first = processP(i.payment_intent_id);
    await sleep(50);
    expect((await status(i.payment_intent_id)).payment?.status).toBe('PAYMENT_STATUS_PROCESSING');
    const second = processP(i.payment_intent_id);
    const [a, b] = await Promise.all([first, second]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(DELAY_MS - 5);
    expect(a.status).toBe('PAYMENT_STATUS_COMPLETED');
    expect(b).toEqual(a);
    expect((await status(i.payment_intent_id)).payment?.status).toBe('PAYMENT_STATUS_COMPLETED');
  });

  it('TIMEOUT never answers: the client deadline fires (DEADLINE_EXCEEDED) and the payment stays PROCESSING', async () => {
    const i = await intent('PAYMENT_SCENARIO_TIMEOUT');
    const t0 = Date.now();
    const e = await grpcError(processP(i.payment_intent_id, '', randomUUID(), { deadlineMs: 300 }));
    expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect((await status(i.payment_intent_id)).payment?.status).toBe('PAYMENT_STATUS_PROCESSING');
  });

  it('GetPaymentStatus: NOT_FOUND for an unknown intent, FORBIDDEN for another user', async () => {
    expect((await status('pi_nope')).error?.code).toBe('ERROR_CODE_NOT_FOUND');
    const i = await intent('PAYMENT_SCENARIO_APPROVE');
    const s = await status(i.payment_intent_id, 'mallory');
    expect(s.error?.code).toBe('ERROR_CODE_FORBIDDEN');
    expect(s.payment).toBeNull();
    expect((await processP('pi_nope')).error?.code).toBe('ERROR_CODE_NOT_FOUND');
  });

  it('records metadata, and honours hang / unavailable / normal modes', async () => {
    const traceparent = `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`;
    const i = await create(
      { reservation_id: 'r-md', amount: { amount: 1000, currency: 'KRW' }, user_id: 'alice', scenario: 'PAYMENT_SCENARIO_APPROVE', idempotency_key: randomUUID() },
      { metadata: { traceparent, 'x-request-id': 'req-pay-1' } },
    );
    expect(i.error).toBeNull();
    const rec = sim.received.find((c) => c.metadata['x-request-id'] === 'req-pay-1');
    expect(rec).toMatchObject({ service: 'payment.v1.PaymentService', method: 'CreatePaymentIntent', metadata: { traceparent } });

    sim.setMode('hang');
    const hung = await grpcError(processP(i.payment_intent_id, '', randomUUID(), { deadlineMs: 300 }));
    expect(hung.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    sim.setMode('unavailable');
    expect((await grpcError(status(i.payment_intent_id))).code).toBe(grpc.status.UNAVAILABLE);
    sim.setMode('normal');
    // the hung call never reached the payment logic: the intent is still PENDING
    expect((await status(i.payment_intent_id)).payment?.status).toBe('PAYMENT_STATUS_PENDING');
    expect((await processP(i.payment_intent_id)).status).toBe('PAYMENT_STATUS_COMPLETED');
  });
});

describe('payment simulator RANDOM scenario', () => {
  it('approves every payment at rate 1 and none at rate 0', async () => {
    const always = await startPaymentSim({ port: 0, randomApproveRate: 1 });
    const never = await startPaymentSim({ port: 0, randomApproveRate: 0 });
    const ca = paymentClient(always.address);
    const cn = paymentClient(never.address);
    try {
      for (const [client, expected] of [
        [ca, 'PAYMENT_STATUS_COMPLETED'],
        [cn, 'PAYMENT_STATUS_FAILED'],
      ] as const) {
        for (let k = 0; k < 10; k++) {
          const i = await invoke<import('../src/generated/proto/payment/v1/CreatePaymentIntentResponse.js').CreatePaymentIntentResponse__Output>((md, opts, cb) =>
            client.CreatePaymentIntent({ reservation_id: `r-${k}`, amount: { amount: 1000, currency: 'KRW' }, user_id: 'u', scenario: 'PAYMENT_SCENARIO_RANDOM', idempotency_key: randomUUID() }, md, opts, cb),
          );
          const p = await invoke<import('../src/generated/proto/payment/v1/ProcessPaymentResponse.js').ProcessPaymentResponse__Output>((md, opts, cb) =>
            client.ProcessPayment({ payment_intent_id: i.payment_intent_id, payment_details: { action: '' }, idempotency_key: randomUUID() }, md, opts, cb),
          );
          expect(p.status).toBe(expected);
          expect(p.result?.success).toBe(expected === 'PAYMENT_STATUS_COMPLETED');
        }
      }
    } finally {
      ca.close();
      cn.close();
      await always.stop();
      await never.stop();
    }
  });
});
