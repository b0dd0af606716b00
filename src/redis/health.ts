import type { Logger } from '../log.js';
import type { RedisClient } from './connect.js';

// Is Redis answering this instance? A lost connection, or one that stops
// answering (a frozen or failing-over node: commands queue and nothing
// comes back), is down; a PING every second that answers within a second,
// twice in a row failed, decides. Readiness reads `up`; the real-time layer
// is told on every change (its sockets are paused, then resumed).
//
// The PING goes on a connection of its own. On the commands connection it
// waited behind this instance's own queue: in a reconnect storm (thousands of
// status reads queued) it took over a second twice, the instance called
// Redis down and refused sockets with 4103, and the clients' retries made the
// queue longer still. Measured with `node dist/bench/storm.js 3 15000`, attach
// reads bounded at 64 either way: PING on the commands connection, 9 checks
// across the 3 instances found Redis down, 33,726 refused attempts, all back
// after 18.4 s; on its own connection, 191 and 13.7 s. Redis serves each
// connection in turn, so a PING on its own connection answers within one
// round of Redis's event loop, unless Redis itself is stuck. A close of the
// commands connection still counts.

export class RedisHealth {
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private down = false;
  private readonly listeners: ((up: boolean) => void)[] = [];

  /**
   * @param redis the commands connection: its close means down at once
   * @param probe the connection the PINGs go on (a connection of its own; it is not closed here)
   */
  constructor(
    private readonly redis: RedisClient,
    private readonly log: Logger,
    private readonly everyMs = 1000,
    private readonly probe: RedisClient = redis,
  ) {}

  get up(): boolean {
    return !this.down;
  }

  onChange(fn: (up: boolean) => void): void {
    this.listeners.push(fn);
  }

  start(): void {
    this.redis.on('close', this.onClose);
    this.timer = setInterval(() => this.check(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.redis.off('close', this.onClose);
    this.listeners.length = 0;
  }

  private readonly onClose = (): void => this.set(false);

  private check(): void {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('ping timeout')), this.everyMs);
      timer.unref();
    });
    Promise.race([this.probe.ping(), timeout]).then(
      () => {
        clearTimeout(timer);
        this.failures = 0;
        this.set(true);
      },
      () => {
        clearTimeout(timer);
        if (++this.failures >= 2) this.set(false);
      },
    );
  }

  private set(up: boolean): void {
    if (up === !this.down) return;
    this.down = !up;
    this.log[up ? 'info' : 'warn']({}, up ? 'redis answering again: resuming' : 'redis not answering: pausing sockets, readiness 503');
    for (const l of this.listeners) l(up);
  }
}
