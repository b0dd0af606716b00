import { randomBytes, randomUUID } from 'node:crypto';
import { loadProtos } from '../backends/proto.js';
import type { ErrorDetail } from '../generated/proto/common/v1/ErrorDetail.js';
import type { Money } from '../generated/proto/common/v1/Money.js';
import type { CreatePaymentIntentResponse } from '../generated/proto/payment/v1/CreatePaymentIntentResponse.js';
import type { PaymentMethod__Output } from '../generated/proto/payment/v1/PaymentMethod.js';
import type { PaymentScenario__Output } from '../generated/proto/payment/v1/PaymentScenario.js';
import type { PaymentServiceHandlers } from '../generated/proto/payment/v1/PaymentService.js';
import type { PaymentStatus__Output } from '../generated/proto/payment/v1/PaymentStatus.js';
import type { ProcessPaymentResponse } from '../generated/proto/payment/v1/ProcessPaymentResponse.js';
import { type CallContext, NO_REPLY, type Reply, type RunningSim, type SimOptions, SimServer, checkNonNegative, checkPort, defaultLogger, pbError, ts } from './common.js';

export type { ReceivedCall, RunningSim, SimMode, SimOptions } from './common.js';

// A payment-sim-api stand-in: payment.v1.PaymentService on a real gRPC
// server. The intent's scenario decides how ProcessPayment ends (APPROVE,
// FAIL, DELAY, RANDOM, TIMEOUT) unless payment_details.action says
// "approve" or "fail". Application failures are in-band errors, status OK.

export interface PaymentSimOptions extends SimOptions {
  /** How long PAYMENT_SCENARIO_DELAY waits before completing. Default 2000. */
  delayMs?: number;
  /** Probability that PAYMENT_SCENARIO_RANDOM approves, 0..1. Default 0.8. */
  randomApproveRate?: number;
}

export const INTENT_TTL_MS = 15 * 60_000;

const SERVICE = 'payment.v1.PaymentService';

interface Intent {
  readonly id: string;
  readonly reservationId: string;
  readonly userId: string;
  readonly amount: Money;
  readonly method: PaymentMethod__Output;
  readonly scenario: PaymentScenario__Output;
  status: PaymentStatus__Output;
  readonly createdAt: number;
  updatedAt: number;
  readonly expiresAt: number;
  transactionId: string;
  /** The answer of ProcessPayment once the intent reached a final state. */
  final?: ProcessPaymentResponse;
  /** A DELAY in progress: every ProcessPayment meanwhile waits for the same outcome. */
  inflight?: Promise<ProcessPaymentResponse>;
}

function detail(field: string, reason: string, value = ''): ErrorDetail {
  return { field, reason, value };
}

export async function startPaymentSim(o: PaymentSimOptions = {}): Promise<RunningSim> {
  const host = o.host ?? '127.0.0.1';
  const port = checkPort(o.port);
  const delayMs = checkNonNegative('delayMs', o.delayMs ?? 2000);
  const rate = o.randomApproveRate ?? 0.8;
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`randomApproveRate must be within 0..1, got ${String(o.randomApproveRate)}`);
  const log = defaultLogger(o.log, 'payment');
  const sim = new SimServer(log);

  const intents = new Map<string, Intent>();
  const createKeys = new Map<string, { fingerprint: string; response: CreatePaymentIntentResponse }>();
  const processKeys = new Map<string, { fingerprint: string; response: ProcessPaymentResponse }>();

  const notFound = (ctx: CallContext, id: string): ReturnType<typeof pbError> =>
    pbError(ctx, 'ERROR_CODE_NOT_FOUND', `payment intent ${id || '(empty id)'} not found`, [detail('payment_intent_id', 'not found', id)]);

  /** A PENDING intent past expires_at reads as EXPIRED. */
  const current = (i: Intent, now = Date.now()): Intent => {
    if (i.status === 'PAYMENT_STATUS_PENDING' && now >= i.expiresAt) {
      i.status = 'PAYMENT_STATUS_EXPIRED';
      i.updatedAt = i.expiresAt;
    }
    return i;
  };

  const finish = (i: Intent, success: boolean, reason: string, ctx: CallContext): ProcessPaymentResponse => {
    const now = Date.now();
    i.status = success ? 'PAYMENT_STATUS_COMPLETED' : 'PAYMENT_STATUS_FAILED';
    i.updatedAt = now;
    i.transactionId = `txn_${randomBytes(12).toString('hex')}`;
    i.inflight = undefined;
    i.final = {
      payment_id: `pay_${randomUUID()}`,
      status: i.status,
      processed_at: ts(now),
      transaction_id: i.transactionId,
      result: {
        success,
        failure_reason: success ? '' : reason,
        gateway_response: success ? 'APPROVED' : 'DECLINED',
        response_code: success ? '00' : '05',
        processed_at: ts(now),
      },
      error: success ? null : pbError(ctx, 'ERROR_CODE_PAYMENT_NOT_APPROVED', reason),
    };
    log.debug({ payment_intent_id: i.id, status: i.status }, 'payment processed');
    return i.final;
  };

  const outcome = (i: Intent, action: string, ctx: CallContext): Reply<ProcessPaymentResponse> | Promise<ProcessPaymentResponse> => {
    if (i.final) return i.final;
    if (i.inflight) return i.inflight;
    current(i);
    if (i.status === 'PAYMENT_STATUS_EXPIRED') {
      i.final = { status: 'PAYMENT_STATUS_EXPIRED', error: pbError(ctx, 'ERROR_CODE_FAILED_PRECONDITION', 'payment intent expired') };
      return i.final;
    }
    if (action === 'approve') return finish(i, true, '', ctx);
    if (action === 'fail') return finish(i, false, 'declined: action "fail" requested', ctx);
    switch (i.scenario) {
      case 'PAYMENT_SCENARIO_UNSPECIFIED': // stored as APPROVE; unreachable
      case 'PAYMENT_SCENARIO_APPROVE':
        return finish(i, true, '', ctx);
      case 'PAYMENT_SCENARIO_FAIL':
        return finish(i, false, 'card declined (scenario FAIL)', ctx);
      case 'PAYMENT_SCENARIO_RANDOM':
        return Math.random() < rate ? finish(i, true, '', ctx) : finish(i, false, 'card declined (scenario RANDOM)', ctx);
      case 'PAYMENT_SCENARIO_DELAY':
        i.status = 'PAYMENT_STATUS_PROCESSING';
        i.updatedAt = Date.now();
        i.inflight = sim.sleep(delayMs).then(() => finish(i, true, '', ctx));
        return i.inflight;
      case 'PAYMENT_SCENARIO_TIMEOUT':
        i.status = 'PAYMENT_STATUS_PROCESSING';
        i.updatedAt = Date.now();
        return NO_REPLY; // the gateway never answers: the client's deadline fires
    }
  };

  const handlers: PaymentServiceHandlers = {
    CreatePaymentIntent: sim.unary(SERVICE, 'CreatePaymentIntent', (req, ctx): CreatePaymentIntentResponse => {
      const bad: ErrorDetail[] = [];
      if (!req.reservation_id) bad.push(detail('reservation_id', 'required'));
      const raw = req.amount ? String(req.amount.amount) : '';
      if (!req.amount) bad.push(detail('amount', 'required'));
      else if (!/^\d+$/.test(raw) || BigInt(raw) <= 0n) bad.push(detail('amount', 'must be a positive integer', raw));
      if (!req.user_id) bad.push(detail('user_id', 'required'));
      if (bad.length > 0) return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', `invalid ${bad.map((d) => d.field).join(', ')}`, bad) };

      const currency = req.amount?.currency || 'KRW';
      const scenario: PaymentScenario__Output = req.scenario === 'PAYMENT_SCENARIO_UNSPECIFIED' ? 'PAYMENT_SCENARIO_APPROVE' : req.scenario;
      const fingerprint = JSON.stringify([req.reservation_id, raw, currency, req.user_id, req.method, scenario]);
      if (req.idempotency_key) {
        const seen = createKeys.get(req.idempotency_key);
        if (seen) {
          if (seen.fingerprint === fingerprint) return seen.response;
          return { error: pbError(ctx, 'ERROR_CODE_IDEMPOTENCY_CONFLICT', 'idempotency key reused with a different request', [detail('idempotency_key', 'reused with a different request', req.idempotency_key)]) };
        }
      }
      const now = Date.now();
      const i: Intent = {
        id: `pi_${randomUUID()}`,
        reservationId: req.reservation_id,
        userId: req.user_id,
        amount: { amount: raw, currency },
        method: req.method,
        scenario,
        status: 'PAYMENT_STATUS_PENDING',
        createdAt: now,
        updatedAt: now,
        expiresAt: now + INTENT_TTL_MS,
        transactionId: '',
      };
      intents.set(i.id, i);
      const response: CreatePaymentIntentResponse = {
        payment_intent_id: i.id,
        status: 'PAYMENT_STATUS_PENDING',
        client_secret: `${i.id}_secret_${randomBytes(16).toString('hex')}`,
        payment_url: '',
        expires_at: ts(i.expiresAt),
        error: null,
      };
      if (req.idempotency_key) createKeys.set(req.idempotency_key, { fingerprint, response });
      log.debug({ payment_intent_id: i.id, scenario }, 'payment intent created');
      return response;
    }),

    ProcessPayment: sim.unary(SERVICE, 'ProcessPayment', async (req, ctx): Promise<Reply<ProcessPaymentResponse>> => {
      const i = intents.get(req.payment_intent_id);
      if (!i) return { error: notFound(ctx, req.payment_intent_id) };
      const action = (req.payment_details?.action ?? '').trim().toLowerCase();
      if (action !== '' && action !== 'approve' && action !== 'fail') {
        return { error: pbError(ctx, 'ERROR_CODE_INVALID_ARGUMENT', 'invalid payment_details.action', [detail('payment_details.action', 'must be "approve", "fail" or empty', action)]) };
      }
      const fingerprint = JSON.stringify([i.id, action]);
      if (req.idempotency_key) {
        const seen = processKeys.get(req.idempotency_key);
        if (seen) {
          if (seen.fingerprint === fingerprint) return seen.response;
          return { error: pbError(ctx, 'ERROR_CODE_IDEMPOTENCY_CONFLICT', 'idempotency key reused with a different request', [detail('idempotency_key', 'reused with a different request', req.idempotency_key)]) };
        }
      }
      const res = await outcome(i, action, ctx);
      if (res === NO_REPLY) return NO_REPLY;
      if (req.idempotency_key) processKeys.set(req.idempotency_key, { fingerprint, response: res });
      return res;
    }),

    GetPaymentStatus: sim.unary(SERVICE, 'GetPaymentStatus', (req, ctx) => {
      const i = intents.get(req.payment_intent_id);
      if (!i) return { error: notFound(ctx, req.payment_intent_id) };
      if (i.userId !== req.user_id) return { error: pbError(ctx, 'ERROR_CODE_FORBIDDEN', 'payment intent belongs to another user', [detail('user_id', 'not the owner', req.user_id)]) };
      current(i);
      return {
        payment: {
          payment_intent_id: i.id,
          reservation_id: i.reservationId,
          user_id: i.userId,
          amount: i.amount,
          status: i.status,
          scenario: i.scenario,
          created_at: ts(i.createdAt),
          updated_at: ts(i.updatedAt),
          transaction_id: i.transactionId,
        },
        error: null,
      };
    }),
  };

  sim.server.addService(loadProtos().payment.v1.PaymentService.service, handlers);

  let bound: { address: string; port: number };
  try {
    bound = await sim.listen(host, port);
  } catch (err) {
    await sim.stop();
    throw err;
  }
  log.info({ address: bound.address, delayMs, randomApproveRate: rate }, 'payment simulator listening (payment.v1.PaymentService)');
  return {
    address: bound.address,
    port: bound.port,
    received: sim.received,
    setMode: (mode, o) => sim.setMode(mode, o),
    setLoad: (load) => sim.setLoad(load),
    stop: async () => {
      await sim.stop();
      log.info({ address: bound.address }, 'payment simulator stopped');
    },
  };
}
