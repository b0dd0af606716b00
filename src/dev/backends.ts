import type { Logger } from '../log.js';
import { startReservationSim } from '../sim/reservation-sim.js';
import { startPaymentSim } from '../sim/payment-sim.js';

// Development only: the gRPC backends a gateway needs when none are
// configured, as the local simulators (src/sim). The entry point (main.ts)
// and the test harness start them; the gateway itself only ever connects to
// addresses it is given (production refuses to start without them).

export interface DevBackends {
  reservationAddress: string;
  paymentAddress: string;
  stop(): Promise<void>;
}

export async function startDevBackends(have: { reservation?: string | undefined; payment?: string | undefined }, log: Logger): Promise<DevBackends> {
  const stops: (() => Promise<void>)[] = [];
  let reservationAddress = have.reservation ?? '';
  let paymentAddress = have.payment ?? '';
  try {
    if (!reservationAddress) {
      const sim = await startReservationSim({ host: '127.0.0.1', port: 0, log });
      stops.push(() => sim.stop());
      reservationAddress = sim.address;
      log.info({ address: sim.address }, 'no BACKEND_RESERVATION_API_GRPC_ADDRESS: started the local reservation simulator');
    }
    if (!paymentAddress) {
      const sim = await startPaymentSim({ host: '127.0.0.1', port: 0, log });
      stops.push(() => sim.stop());
      paymentAddress = sim.address;
      log.info({ address: sim.address }, 'no BACKEND_PAYMENT_API_GRPC_ADDRESS: started the local payment simulator');
    }
  } catch (err) {
    await Promise.all(stops.map((s) => s()));
    throw err;
  }
  return { reservationAddress, paymentAddress, stop: async () => void (await Promise.all(stops.map((s) => s()))) };
}
