import type { RedisClient } from '../redis/connect.js';
import { registryKey } from '../redis/keys.js';

// The set of events tickers look after. Written before an event can hold
// anyone (admin PUT, or a join that may auto-create), so a crash between the
// two never leaves a line that no ticker knows about.

export class EventRegistry {
  private readonly known = new Set<string>();
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  async register(eventId: string): Promise<void> {
    if (this.known.has(eventId)) return;
    await this.redis.sadd(registryKey(this.prefix), eventId);
    this.known.add(eventId);
  }

  list(): Promise<string[]> {
    return this.redis.smembers(registryKey(this.prefix));
  }
}
