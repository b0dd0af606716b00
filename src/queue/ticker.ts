import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { QueueStore, TickResult } from './store.js';
import type { EventRegistry } from './registry.js';
import { tickOf, type Broker } from './broker.js';

// Exactly one instance ticks each event at a time: a lease in Redis, renewed
// by every tick (the tick script refuses to run for a non-holder, so a
// paused or partitioned old holder cannot double-admit), taken over by
// another instance within one acquire interval after it lapses.

export interface TickerOptions {
  instanceId: string;
  tickMs: number;
  leaseMs: number;
  maxPromote: number;
  maxSweep: number;
  retentionMs: number;
  /** liveness is not swept for this long after a tick gap (outage): the longest liveness window */
  quietMs: number;
}

interface Held {
  inFlight: boolean;
  lastCleanup: number;
}

export class Ticker {
  private readonly held = new Map<string, Held>();
  private tickTimer: NodeJS.Timeout | undefined;
  private acquireTimer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  /** Hook for the real-time layer (issue 3): called with every tick this instance runs. */
  onTick: ((eventId: string, r: TickResult) => void) | undefined;

  constructor(
    private readonly store: QueueStore,
    private readonly registry: EventRegistry,
    private readonly broker: Broker,
    private readonly opts: TickerOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  heldEvents(): string[] {
    return [...this.held.keys()];
  }

  start(): void {
    const acquireMs = Math.max(100, Math.min(1000, Math.floor(this.opts.leaseMs / 3)));
    this.acquireTimer = setInterval(() => this.track(this.acquire()), acquireMs);
    this.tickTimer = setInterval(() => this.tickAll(), this.opts.tickMs);
    this.track(this.acquire());
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async acquire(): Promise<void> {
    if (this.stopped) return;
    let events: string[];
    try {
      events = await this.registry.list();
    } catch (err) {
      this.log.warn({ err }, 'ticker: cannot list events');
      return;
    }
    for (const eventId of events) {
      if (this.held.has(eventId) || this.stopped) continue;
      try {
        if (await this.store.acquireLease(eventId, this.opts.instanceId, this.opts.leaseMs)) {
          this.held.set(eventId, { inFlight: false, lastCleanup: 0 });
          this.metrics.leasesHeld.set(this.held.size);
          this.log.info({ event_id: eventId, instance: this.opts.instanceId }, 'ticker: lease acquired');
        }
      } catch (err) {
        this.log.warn({ event_id: eventId, err }, 'ticker: lease attempt failed');
      }
    }
  }

  private tickAll(): void {
    for (const [eventId, h] of this.held) {
      if (h.inFlight) continue; // a slow tick is never overlapped by the next
      h.inFlight = true;
      this.track(this.tickOne(eventId, h).finally(() => (h.inFlight = false)));
    }
  }

  private async tickOne(eventId: string, h: Held): Promise<void> {
    const end = this.metrics.tickDuration.startTimer();
    let r: Awaited<ReturnType<QueueStore['tick']>>;
    try {
      r = await this.store.tick(eventId, this.opts.instanceId, {
        leaseMs: this.opts.leaseMs,
        maxPromote: this.opts.maxPromote,
        maxSweep: this.opts.maxSweep,
        maxExits: 50_000,
        gapMs: Math.max(5000, this.opts.leaseMs * 2),
        quietMs: this.opts.quietMs,
      });
    } catch (err) {
      this.metrics.ticks.inc({ result: 'error' });
      this.log.warn({ event_id: eventId, err }, 'ticker: tick failed');
      return;
    } finally {
      end();
    }
    if (r === 'not-holder' || r === 'no-config') {
      this.metrics.ticks.inc({ result: r });
      this.held.delete(eventId);
      this.metrics.leasesHeld.set(this.held.size);
      this.log.info({ event_id: eventId, reason: r }, 'ticker: lease lost');
      return;
    }
    this.metrics.ticks.inc({ result: 'ok' });
    this.record(eventId, r);
    if (r.transition) this.transitioned(eventId, r);
    try {
      await this.broker.publish(this.store.keys(eventId).channel, tickOf(eventId, r));
    } catch (err) {
      this.log.warn({ event_id: eventId, err }, 'ticker: publish failed');
    }
    this.onTick?.(eventId, r);
    const now = Date.now();
    if (now - h.lastCleanup >= 1000) {
      h.lastCleanup = now;
      try {
        await this.store.cleanup(eventId, this.opts.retentionMs, 500);
      } catch (err) {
        this.log.warn({ event_id: eventId, err }, 'ticker: cleanup failed');
      }
    }
  }

  /** A state change on schedule (exactly one tick, the lease holder's, makes each). */
  private transitioned(eventId: string, r: TickResult): void {
    this.metrics.eventTransitions.inc({ event_id: eventId, to: r.transition });
    if (r.transition === 'drawn') {
      this.metrics.drawEntrants.set({ event_id: eventId }, r.qlen);
      this.log.info({ event_id: eventId, entrants: r.qlen, starts_at: new Date(r.startsMs).toISOString() }, 'event: pre-queue drawn, event open');
    } else if (r.transition === 'prequeue') {
      this.log.info({ event_id: eventId, starts_at: new Date(r.startsMs).toISOString() }, 'event: pre-queue open');
    } else {
      this.log.info({ event_id: eventId, reason: 'ends_at', waiting: r.qlen - r.readyCount }, 'event: ended on schedule');
    }
  }

  private record(eventId: string, r: TickResult): void {
    const m = this.metrics;
    m.queueDepth.set({ event_id: eventId, state: 'ready' }, r.readyCount);
    m.queueDepth.set({ event_id: eventId, state: 'waiting' }, r.qlen - r.readyCount);
    if (r.promoted.length) m.admissions.inc({ event_id: eventId }, r.promoted.length);
    for (const [, reason] of r.expired) m.expirations.inc({ event_id: eventId, reason });
    m.slidingRate.set({ window: '1m', event_id: eventId }, r.eta.r1);
    m.slidingRate.set({ window: '5m', event_id: eventId }, r.eta.r5);
    m.slidingRate.set({ window: '15m', event_id: eventId }, r.eta.r15);
    m.etaConfidence.set({ event_id: eventId }, r.eta.conf);
    m.admissionRate.set({ event_id: eventId }, r.eta.rate);
    if (r.promoted.length || r.expired.length) {
      this.log.debug({ event_id: eventId, promoted: r.promoted.length, expired: r.expired.length, in_line: r.qlen }, 'tick');
    }
  }

  /** Stop ticking, wait for ticks in flight, release every lease so another instance takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.tickTimer);
    clearInterval(this.acquireTimer);
    await Promise.allSettled([...this.inFlight]);
    await Promise.allSettled(
      [...this.held.keys()].map(async (eventId) => {
        await this.store.releaseLease(eventId, this.opts.instanceId);
        this.log.info({ event_id: eventId }, 'ticker: lease released');
      }),
    );
    this.held.clear();
    this.metrics.leasesHeld.set(0);
  }
}
