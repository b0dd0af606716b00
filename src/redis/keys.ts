// Every key of one event shares the hash tag {ev:<id>}, so all scripts of an
// event touch one Redis Cluster slot.

export const EVENT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export interface EventKeys {
  readonly base: string;
  readonly cfg: string;
  readonly seq: string;
  readonly q: string;
  readonly ready: string;
  readonly live: string;
  readonly stats: string;
  readonly bucket: string;
  readonly hist: string;
  readonly exits: string;
  readonly fin: string;
  readonly eta: string;
  readonly lease: string;
  /** the pre-queue's public entrant list: receipt -> draw key (lua/includes/draw.lua) */
  readonly entrants: string;
  /** sessions holding a slot (max_active_sessions): token -> expiry ms */
  readonly active: string;
  /** the adaptive controller's recent decisions (newest first) */
  readonly alog: string;
  readonly channel: string;
}

export function eventKeys(prefix: string, eventId: string): EventKeys {
  const base = `${prefix}{ev:${eventId}}:`;
  return {
    base,
    cfg: `${base}cfg`,
    seq: `${base}seq`,
    q: `${base}q`,
    ready: `${base}ready`,
    live: `${base}live`,
    stats: `${base}stats`,
    bucket: `${base}bucket`,
    hist: `${base}hist`,
    exits: `${base}exits`,
    fin: `${base}fin`,
    eta: `${base}eta`,
    lease: `${base}lease`,
    entrants: `${base}entrants`,
    active: `${base}active`,
    alog: `${base}alog`,
    channel: `${base}tick`,
  };
}

export const userKey = (k: EventKeys, token: string): string => `${k.base}u:${token}`;

/** The set of known events (a few per deployment), read by tickers to find work. */
export const registryKey = (prefix: string): string => `${prefix}events`;
