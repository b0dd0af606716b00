import { createLogger } from '../log.js';
import type { RunningSim } from './common.js';
import { startPaymentSim } from './payment-sim.js';
import { startReservationSim } from './reservation-sim.js';

// `npm run sim`: the reservation and payment backends as local simulators.
//   SIM_HOST (127.0.0.1), SIM_RESERVATION_PORT (8011), SIM_PAYMENT_PORT (8030),
//   SIM_HOLD_MS (60000), SIM_PAYMENT_DELAY_MS (2000), SIM_RANDOM_APPROVE_RATE (0.8), LOG_LEVEL (info).

function fail(message: string): never {
  process.stderr.write(`sim: ${message}\n`);
  process.exit(1);
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function port(name: string, dflt: number): number {
  const v = env(name);
  if (v === undefined) return dflt;
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) fail(`${name} must be a port number 0-65535, got "${v}"`);
  return Number(v);
}

function number(name: string, dflt: number, min: number, max: number): number {
  const v = env(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) fail(`${name} must be a number within ${min}..${max}, got "${v}"`);
  return n;
}

const host = env('SIM_HOST') ?? '127.0.0.1';
const reservationPort = port('SIM_RESERVATION_PORT', 8011);
const paymentPort = port('SIM_PAYMENT_PORT', 8030);
const holdMs = number('SIM_HOLD_MS', 60_000, 1, 86_400_000);
const delayMs = number('SIM_PAYMENT_DELAY_MS', 2000, 0, 3_600_000);
const randomApproveRate = number('SIM_RANDOM_APPROVE_RATE', 0.8, 0, 1);
const log = createLogger(env('LOG_LEVEL') ?? 'info', { service: 'backend-sim' });

const running: RunningSim[] = [];
let stopping = false;

async function stopAll(code: number): Promise<never> {
  await Promise.allSettled(running.map((s) => s.stop()));
  process.exit(code);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping simulators');
    void stopAll(0);
  });
}

try {
  const reservation = await startReservationSim({ host, port: reservationPort, holdMs, log });
  running.push(reservation);
  const payment = await startPaymentSim({ host, port: paymentPort, delayMs, randomApproveRate, log });
  running.push(payment);
  log.info(
    { reservation: reservation.address, payment: payment.address },
    `simulators ready: BACKEND_RESERVATION_API_GRPC_ADDRESS=${reservation.address} BACKEND_PAYMENT_API_GRPC_ADDRESS=${payment.address}`,
  );
} catch (err) {
  log.error({ err }, 'simulators failed to start');
  await stopAll(1);
}
