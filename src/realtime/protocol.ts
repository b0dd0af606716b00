import type { Notice } from '../queue/store.js';
import { pack, unpack } from 'msgpackr';

// WebSocket protocol v1 (documented in docs/PROTOCOL.md). JSON text frames
// by default; msgpack binary frames when the client offers the
// `waiting-room.v1.msgpack` subprotocol. Same fields either way.

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL_JSON = 'waiting-room.v1.json';
export const SUBPROTOCOL_MSGPACK = 'waiting-room.v1.msgpack';

export type Format = 'json' | 'msgpack';

/**
 * Close codes. 4000-4099: terminal outcomes, do not reconnect. 4100-4199:
 * reconnect (any instance, with backoff). 4400-4499: the client broke the
 * protocol; terminal.
 */
export const Close = {
  ADMITTED: 4000,
  LEFT: 4001,
  UNKNOWN_TOKEN: 4004,
  EXPIRED: 4010,
  BAD_MESSAGE: 4400,
  DRAINING: 4100,
  SLOW_CONSUMER: 4101,
  OVERLOADED: 4102,
  STORE_UNAVAILABLE: 4103,
  RATE_LIMITED: 4104,
  FLOOD: 4429,
} as const;

export type CloseCode = (typeof Close)[keyof typeof Close];
export const isReconnectCode = (code: number): boolean => code >= 4100 && code < 4200;

export interface PositionMessage {
  type: 'position';
  status: 'waiting' | 'ready';
  /** 1 + people still waiting ahead */
  position: number;
  people_ahead: number;
  /** people ahead who were called and are being let in now */
  being_let_in: number;
  eta_sec: number;
  eta_low: number;
  eta_high: number;
  confidence: number;
  event_state: string;
}

export type ServerMessage =
  | ({ type: 'welcome'; v: number; event_id: string } & Omit<PositionMessage, 'type'> & { ready_deadline?: string; message?: Notice | null })
  | PositionMessage
  | { type: 'ready'; position: number; ready_deadline: string; expires_in_sec: number }
  | { type: 'admitted'; reservation_token?: string; ttl_sec?: number }
  | { type: 'expired'; reason: string }
  | { type: 'left' }
  | { type: 'paused'; event_state: string }
  | { type: 'resumed'; event_state: string }
  | { type: 'notice'; message: Notice | null }
  | { type: 'pong' }
  | { type: 'error'; code: string; message: string; position?: number };

export type ClientMessage = { type: 'enter'; access_token?: string } | { type: 'leave' } | { type: 'ping' };

/** The first subprotocol the client offered that we speak (the client's order is its preference). */
export function chooseSubprotocol(offered: string): { protocol: string; format: Format } {
  for (const p of offered.split(',')) {
    const name = p.trim();
    if (name === SUBPROTOCOL_MSGPACK) return { protocol: name, format: 'msgpack' };
    if (name === SUBPROTOCOL_JSON) return { protocol: name, format: 'json' };
  }
  return { protocol: '', format: 'json' };
}

export function encode(msg: ServerMessage, format: Format): string | Uint8Array {
  return format === 'msgpack' ? pack(msg) : JSON.stringify(msg);
}

/** Binary frames are msgpack and text frames JSON, whatever was negotiated for the server's own messages. */
export function parseClientMessage(data: ArrayBuffer, isBinary: boolean): ClientMessage | undefined {
  try {
    let v: unknown;
    if (isBinary) {
      v = unpack(new Uint8Array(data));
    } else {
      v = JSON.parse(Buffer.from(data).toString('utf8'));
    }
    if (typeof v !== 'object' || v === null) return undefined;
    const t = (v as { type?: unknown }).type;
    if (t === 'enter') {
      const at = (v as { access_token?: unknown }).access_token;
      if (at === undefined) return { type: 'enter' };
      return typeof at === 'string' && at.length <= 8192 ? { type: 'enter', access_token: at } : undefined;
    }
    return t === 'leave' || t === 'ping' ? { type: t } : undefined;
  } catch {
    return undefined;
  }
}
