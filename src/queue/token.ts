import { randomFillSync } from 'node:crypto';
import { EVENT_ID_RE } from '../redis/keys.js';

// A waiting token names its event so any instance can find the event's keys
// from the token alone; the 128 random bits make it unguessable.
// Format: <event_id>.<22 base64url chars>

const TOKEN_RE = /^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{22})$/;

// One CSPRNG call per 256 tokens instead of one per join (randomBytes per
// join was ~9 % of the gateway's CPU under join load). Bytes are handed out
// once and the pool is refilled in place when spent.
const POOL = Buffer.alloc(4096);
let poolAt = POOL.length;

export function newWaitingToken(eventId: string): string {
  if (poolAt + 16 > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const id = POOL.toString('base64url', poolAt, poolAt + 16);
  poolAt += 16;
  return `${eventId}.${id}`;
}

/** The event id of a well-formed token, or undefined for anything else. */
export function tokenEvent(token: string): string | undefined {
  const m = TOKEN_RE.exec(token);
  return m && EVENT_ID_RE.test(m[1]!) ? m[1] : undefined;
}
