import { randomBytes } from 'node:crypto';
import { EVENT_ID_RE } from './keys.js';

// A waiting token names its event so any instance can find the event's keys
// from the token alone; the 128 random bits make it unguessable.
// Format: <event_id>.<22 base64url chars>

const TOKEN_RE = /^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{22})$/;

export function newWaitingToken(eventId: string): string {
  return `${eventId}.${randomBytes(16).toString('base64url')}`;
}

/** The event id of a well-formed token, or undefined for anything else. */
export function tokenEvent(token: string): string | undefined {
  const m = TOKEN_RE.exec(token);
  return m && EVENT_ID_RE.test(m[1]!) ? m[1] : undefined;
}
