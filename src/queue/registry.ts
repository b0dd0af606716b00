import type { RedisClient } from '../redis/connect.js';
import { registryKey } from '../redis/keys.js';

// The set of events tickers look after. Written before an event can hold
// anyone (admin PUT, or a join that may auto-create), so a crash between the
// two never leaves a line that no ticker knows about.

const KNOWN_MS = 10_000;

export class EventRegistry {
  /** events this instance wrote to the registry, and when */
  private readonly known = new Map<string, number>();
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  async register(eventId: string): Promise<void> {
    const at = this.known.get(eventId);
    // remembered for a while only: another instance may delete the event (and a join may create it again)
    if (at !== undefined && Date.now() - at < KNOWN_MS) return;
    await this.redis.sadd(registryKey(this.prefix), eventId);
    this.known.set(eventId, Date.now());
  }

  /** Always written (not from the cache): another instance may have removed it. */
  async registerNow(eventId: string): Promise<void> {
    await this.redis.sadd(registryKey(this.prefix), eventId);
    this.known.set(eventId, Date.now());
  }

  /** The event is deleted: tickers stop looking at it. */
  async remove(eventId: string): Promise<void> {
    this.known.delete(eventId);
    await this.redis.srem(registryKey(this.prefix), eventId);
  }

  list(): Promise<string[]> {
    return this.redis.smembers(registryKey(this.prefix));
  }
}
