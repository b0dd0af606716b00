import { describe, expect, it } from 'vitest';
import type { ChaosReport } from '../bench/chaos.js';

// The chaos drill (bench/chaos.ts) for 60 s: 3 gateway processes in their
// production configuration on one Redis, 300 simulated users (sockets, two
// tabs, drops inside the grace, pollers, socket-then-polling, leavers,
// abandoners) at a 3 s grace, and every fault kind (gateway SIGKILL,
// SIGSTOP+SIGCONT, SIGTERM, a gateway cut off from Redis, a Redis stall, a
// backend answering after its deadline) in a random order. The model of what
// every client did must find nothing. The seed is random per run and printed;
// CHAOS_SEED=<n> replays one. `npm run chaos` runs the 5-minute, 2,000-user
// version (docs/BENCHMARKS.md).

describe('chaos drill', () => {
  it('60 s of faults: nobody loses a place, order and pushes match Redis, nobody is admitted twice, no token buys two reservations, the bucket holds', async () => {
    // the built drill: it spawns the built gateway (npm test builds first)
    const { runChaos, summarize } = (await import('../dist/bench/chaos.js')) as typeof import('../bench/chaos.js');
    const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));
    const r: ChaosReport = await runChaos({
      durationMs: 60_000,
      users: 300,
      cluster: false,
      seed,
      graceSec: 3,
      pollTimeoutSec: 10,
      gateways: 3,
      rate: 1,
      burst: 5,
      faultEveryMs: 3000,
      log: () => undefined,
    });
    const text = `CHAOS_SEED=${seed}\n${summarize(r)}`;
    console.log(text);
    expect(r.violations.filter((v) => !v.startsWith('anomaly')), text).toEqual([]);
    expect({ lost: r.placesLost, order: r.outOfOrder, pushes: r.stalePushes, admittedTwice: r.admittedTwice, spentTwice: r.tokensSpentTwice, bucket: r.bucketViolations }, text).toEqual({
      lost: 0,
      order: 0,
      pushes: 0,
      admittedTwice: 0,
      spentTwice: 0,
      bucket: 0,
    });
    // not vacuous: faults of every kind ran, most users were held by the rules, people were admitted and reserved
    expect(Object.keys(r.faults).sort(), text).toEqual(['backend_late', 'gateway_cut_off', 'gateway_sigkill', 'gateway_sigstop', 'gateway_sigterm', 'redis_stall']);
    expect(r.joined).toBe(300);
    expect(r.entitled, text).toBeGreaterThan(200);
    expect(r.admitted, text).toBeGreaterThan(30);
    expect(r.reservations, text).toBeGreaterThan(30);
    expect(r.inLineAtEnd, text).toBeGreaterThan(100);
  }, 240_000);
});
