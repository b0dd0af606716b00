import type { EtaParams } from './store.js';

// ETA from measured outflow. The tick measures promotions per busy second over
// 1/5/15 minute windows (weighted 0.5/0.3/0.2, configured rate as the prior)
// and the share of people ahead who actually take a slot (the rest abandon).
// A waiting user k places behind the ready prefix is promoted once
// k*share + 1 tokens beyond the ones already in the bucket have accrued.
//
// Position counts only the people still waiting ahead: 1 + k. Those already
// called (ready: being let in now, not entered yet) no longer count, so the
// position moves as the line is called, not only as people go through, and
// it agrees with the ETA, which is about the same k people.

export interface Estimate {
  /** 1 + people still waiting ahead (1 once ready) */
  readonly position: number;
  /** people still waiting ahead */
  readonly peopleAhead: number;
  /** people ahead who were called and are being let in now (ready, not entered) */
  readonly beingLetIn: number;
  readonly etaSec: number;
  readonly etaLowSec: number;
  readonly etaHighSec: number;
  readonly confidence: number;
  readonly pollAfterMs: number;
}

export function estimate(rank: number, readyCount: number, waiting: boolean, p: EtaParams, tickMs: number, pollTimeoutMs: number): Estimate {
  if (!waiting) {
    return { position: 1, peopleAhead: 0, beingLetIn: 0, etaSec: 0, etaLowSec: 0, etaHighSec: 0, confidence: 1, pollAfterMs: 1000 };
  }
  // ready users are always a prefix of the line: everyone called is ahead of a waiting user
  const k = Math.max(0, rank - readyCount);
  const position = k + 1;
  const peopleAhead = k;
  const beingLetIn = Math.min(readyCount, Math.max(0, rank));
  const rate = p.rw > 0 ? p.rw : p.rate > 0 ? p.rate : 1e-6;
  const need = Math.max(0, k * p.share + 1 - p.tokens);
  const tick = tickMs / 1000;
  const eta = need / rate + tick / 2;
  const spread = Math.min(0.9, Math.max(0.05, p.spread));
  // nearest second: rounding up added half a second of bias to every estimate (bench: +0.3..+1.1 s on waits of 1.5..4.6 s)
  const etaSec = Math.round(eta);
  const low = Math.max(0, Math.floor(eta * (1 - spread)));
  // The high end assumes nobody ahead leaves: the measured share is the
  // average over everyone who passed through, but people who give up mostly
  // do so early, so those still ahead of someone who has waited a while leave
  // less often than the average says (bench: after a rate change, ETAs shown
  // in line ran ~20 % short and only a third of waits fell inside the range).
  const etaIfAllStay = Math.max(0, k + 1 - p.tokens) / rate + tick / 2;
  const high = Math.ceil(Math.max(eta, etaIfAllStay) * (1 + spread) + tick);
  // Poll rarely when far back, often near the front; always well inside the
  // liveness window so a polling user never lapses.
  const pollAfterMs = Math.round(Math.min(Math.max(eta * 100, 1000), 20_000, pollTimeoutMs / 3));
  return { position, peopleAhead, beingLetIn, etaSec, etaLowSec: low, etaHighSec: Math.max(high, etaSec), confidence: round3(p.conf), pollAfterMs };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/**
 * In the pre-queue there is no position until the draw: the ETA is the time
 * to the start, and polls come often enough to keep the place and to hear
 * the draw soon after it.
 */
export function prequeueEstimate(startsMs: number, nowMs: number, pollTimeoutMs: number): Estimate {
  const toStart = Math.max(0, Math.ceil((startsMs - nowMs) / 1000));
  const pollAfterMs = Math.round(Math.min(Math.max(toStart * 1000, 1000), 10_000, pollTimeoutMs / 3));
  return { position: 0, peopleAhead: 0, beingLetIn: 0, etaSec: toStart, etaLowSec: toStart, etaHighSec: toStart, confidence: 1, pollAfterMs };
}
