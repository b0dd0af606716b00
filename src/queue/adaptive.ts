import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { AdaptivePolicy, QueueStore } from './store.js';
import type { BackendHealth, BackendWindow } from './backend-health.js';

// Adaptive outflow: the admission rate of an event follows the health of the
// reservation backend, measured from this gateway's own calls across every
// instance (BackendHealth), between the operator's floor and ceiling.
//
// AIMD (additive increase, multiplicative decrease), as TCP and most
// admission controllers do it, with two refinements found in the simulation
// of test/adaptive.test.ts:
//  - anti-windup: each step judges only the backend calls made since the
//    rate last changed (at least one interval's worth, at most the window).
//    Judging a whole window right after a cut would see the calls made at
//    the old rate and cut again on old news, down to the floor;
//  - a cut (x0.7 on latency, x0.5 on errors) remembers the rate it cut
//    from. Climbing back, the rate jumps (x1.3) to 90 % of that point, then
//    creeps (+0.5 % of the ceiling per step) past it: the probing above the
//    limit stays small and brief. With no cut for 20 s the old limit is
//    stale (and while calls come back within half the objective there is room
//    whatever the last cut said): the rate climbs x1.3 per step, so after a recovery it is back
//    at the ceiling within a minute.
// Too few calls to judge: hold. The token bucket stays the hard bound: the
// controller only sets its rate, never outside [floor, ceiling].
// docs/OPERATIONS.md explains it for operators.

export type AdaptiveReason = 'healthy' | 'at_ceiling' | 'latency' | 'errors' | 'no_data' | 'at_floor';

export interface Decision {
  readonly rate: number;
  readonly reason: AdaptiveReason;
}

export interface ControllerState {
  /** ms of the last cut (0 = never) */
  lastCutMs: number;
  /** the rate the last cut was made from (0 = none) */
  cutFrom: number;
  /** ms of the last change of the rate (0 = never) */
  changedMs: number;
}

export const newControllerState = (): ControllerState => ({ lastCutMs: 0, cutFrom: 0, changedMs: 0 });

export const AIMD = {
  cutOnLatency: 0.7,
  cutOnErrors: 0.5,
  /** climbing back towards the rate of the last cut: at most to this share of it at once */
  jumpTo: 0.9,
  jumpFactor: 1.3,
  /** past that point: this share of the ceiling per step */
  creep: 0.005,
  /** a cut older than this says nothing about the limit now */
  staleMs: 20_000,
  /** fewer calls than this in the judged seconds: no judgement */
  minCalls: 5,
} as const;

/** The seconds of calls a step judges: those since the rate last changed, at least one interval, at most the window. */
export function judgedSeconds(s: ControllerState, nowMs: number, intervalMs: number, windowSec: number): number {
  return Math.max(Math.ceil(intervalMs / 1000), Math.min(windowSec, Math.floor((nowMs - s.changedMs) / 1000)));
}

/** One step of the controller: the next rate and why. Pure (the tests drive it through a simulated backend). */
export function decide(rate: number, p: AdaptivePolicy, w: BackendWindow, s: ControllerState, nowMs: number): Decision {
  const clamp = (r: number): number => Math.min(p.ceiling, Math.max(p.floor, r));
  const cur = clamp(rate);
  if (w.calls < AIMD.minCalls) return { rate: cur, reason: 'no_data' };
  if (w.errorShare > p.errorShare || w.p95Ms > p.p95Ms) {
    const errors = w.errorShare > p.errorShare;
    const next = round(clamp(cur * (errors ? AIMD.cutOnErrors : AIMD.cutOnLatency)));
    s.lastCutMs = nowMs;
    s.cutFrom = cur;
    if (next !== cur) s.changedMs = nowMs;
    return { rate: next, reason: next === cur ? 'at_floor' : errors ? 'errors' : 'latency' };
  }
  if (cur >= p.ceiling) return { rate: p.ceiling, reason: 'at_ceiling' };
  let next: number;
  // far inside the objective (half of it, or less): the backend has room whatever the last cut said
  const roomy = w.p95Ms <= p.p95Ms / 2 && w.errorShare <= p.errorShare / 2;
  if (!s.cutFrom || nowMs - s.lastCutMs > AIMD.staleMs || roomy) next = cur + Math.max(cur * (AIMD.jumpFactor - 1), p.ceiling * 0.02);
  else if (cur < s.cutFrom * 0.85) next = Math.min(cur * AIMD.jumpFactor, s.cutFrom * AIMD.jumpTo);
  else next = cur + p.ceiling * AIMD.creep;
  s.changedMs = nowMs;
  return { rate: round(clamp(next)), reason: 'healthy' };
}

const round = (r: number): number => Math.round(r * 1000) / 1000;

export interface OutflowOptions {
  instanceId: string;
  intervalMs: number;
  windowSec: number;
  /** the events whose ticker lease this instance holds: only their controllers run here */
  heldEvents: () => readonly string[];
}

export class OutflowController {
  private timer: NodeJS.Timeout | undefined;
  private readonly state = new Map<string, ControllerState>();
  private running = false;

  constructor(
    private readonly store: QueueStore,
    private readonly health: BackendHealth,
    private readonly o: OutflowOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.step(), this.o.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look at every adaptive event this instance ticks. */
  async step(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const eventId of this.o.heldEvents()) {
        const cfg = await this.store.getEvent(eventId);
        this.metrics.admissionRate.set({ event_id: eventId }, cfg?.rate ?? 0);
        if (cfg?.maxActiveSessions) this.metrics.activeSessions.set({ event_id: eventId }, await this.store.activeSessions(eventId));
        if (!cfg?.adaptive || cfg.state === 'ended') {
          this.state.delete(eventId);
          continue;
        }
        const s = this.state.get(eventId) ?? newControllerState();
        this.state.set(eventId, s);
        const window = await this.health.window('reservation', judgedSeconds(s, Date.now(), this.o.intervalMs, this.o.windowSec));
        const d = decide(cfg.rate, cfg.adaptive, window, s, Date.now());
        const errorShare = Math.round(window.errorShare * 10_000) / 10_000;
        const entry = `${Date.now()} ${d.rate} ${d.reason} ${window.p95Ms} ${errorShare} ${window.calls}`;
        const set = await this.store.setAdaptiveRate(eventId, this.o.instanceId, d.rate, d.reason, entry);
        this.metrics.backendObjectiveP95.set({ event_id: eventId }, window.p95Ms / 1000);
        this.metrics.backendObjectiveErrors.set({ event_id: eventId }, window.errorShare);
        if (set && d.rate !== cfg.rate) {
          this.metrics.adaptiveChanges.inc({ event_id: eventId, reason: d.reason });
          this.metrics.admissionRate.set({ event_id: eventId }, d.rate);
          this.log.info(
            { event_id: eventId, from: cfg.rate, to: d.rate, reason: d.reason, p95_ms: window.p95Ms, error_share: errorShare, calls: window.calls, objective: cfg.adaptive },
            'adaptive outflow: rate changed',
          );
        }
      }
    } catch (err) {
      this.log.warn({ err }, 'adaptive outflow: step failed; the rate stays as it is');
    } finally {
      this.running = false;
    }
  }
}
