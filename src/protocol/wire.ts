// The WebSocket protocol, v1 (docs/PROTOCOL.md): the one declaration shared by
// the gateway (src/realtime) and the browser client (src/client), which loads
// it as /protocol/wire.js. It imports nothing, so a browser can load it as is.
//
// Versioning: the version is in the subprotocol name the client offers
// (`waiting-room.v1.json`) and in the `v` of the welcome, the first message
// of every socket. A client that reads a welcome of a version it does not
// speak stops using sockets and polls (HTTP is versioned by its path).
// Within a version, fields and message types are only ever added: a reader
// ignores what it does not know.

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL_JSON = 'waiting-room.v1.json';
export const SUBPROTOCOL_MSGPACK = 'waiting-room.v1.msgpack';

export type Format = 'json' | 'msgpack';

/**
 * Close codes, by range (a client decides by the range; the code within it
 * says why, for people and logs):
 * - 4000-4099 terminal: the place is settled (admitted, left, expired,
 *   unknown). Do not reconnect; a status poll tells the outcome if no message
 *   said it before the close.
 * - 4100-4199 reconnect: this instance cannot keep the socket. Reconnect with
 *   the same waiting token, to any instance, with backoff; the place is kept
 *   for the reconnect grace.
 * - 4400-4499 protocol error: the client broke the protocol or flooded it.
 *   The place is kept; stop using sockets for it and poll.
 */
export const Close = {
  ADMITTED: 4000,
  LEFT: 4001,
  UNKNOWN_TOKEN: 4004,
  EXPIRED: 4010,
  /** the event ended (sold out, cancelled): an `ended` message said why */
  ENDED: 4020,
  DRAINING: 4100,
  SLOW_CONSUMER: 4101,
  OVERLOADED: 4102,
  STORE_UNAVAILABLE: 4103,
  RATE_LIMITED: 4104,
  BAD_MESSAGE: 4400,
  FLOOD: 4429,
} as const;

export type CloseCode = (typeof Close)[keyof typeof Close];

export type CloseKind = 'terminal' | 'reconnect' | 'protocol_error' | 'transport';

/** What a close code asks the client to do. Codes outside the ranges (1000, 1006, ...) are the transport's: reconnect. */
export function closeKind(code: number): CloseKind {
  if (code >= 4000 && code <= 4099) return 'terminal';
  if (code >= 4100 && code <= 4199) return 'reconnect';
  if (code >= 4400 && code <= 4499) return 'protocol_error';
  return 'transport';
}

/**
 * scheduled -> prequeue -> open <-> paused -> ended (closed: no new
 * arrivals). Sockets exist from the pre-queue on.
 */
export type EventState = 'scheduled' | 'prequeue' | 'open' | 'paused' | 'closed' | 'ended';

/**
 * The complete place-in-line snapshot carried by `welcome`, `position` and a status poll.
 * status `prequeue`: in the pre-queue, before the draw at `starts_at`: no
 * position yet (position and people_ahead 0, eta_sec = seconds to the start);
 * at the start a `position` with status `waiting` follows.
 */
export interface PositionSnapshot {
  status: 'prequeue' | 'waiting' | 'ready';
  /** 1 + the people still waiting ahead (0 in the pre-queue) */
  position: number;
  people_ahead: number;
  /** people ahead who were called and are being let in now */
  being_let_in: number;
  eta_sec: number;
  eta_low: number;
  eta_high: number;
  confidence: number;
  event_state: EventState;
  /** the draw's start (RFC 3339), while in the pre-queue */
  starts_at?: string;
  /** the entry receipt: the line of this place in the draw's published entrant list (docs/FAIRNESS.md) */
  receipt?: string;
}

/** The operator's message to everyone waiting: text by language code ("en", "ko", ...). */
export type OperatorMessage = Readonly<Record<string, string>>;

export interface WelcomeMessage extends PositionSnapshot {
  type: 'welcome';
  /** the protocol version this server speaks on this socket */
  v: number;
  event_id: string;
  ready_deadline?: string;
  /** the operator's message (null = none); absent when the instance does not know it yet (a `notice` follows) */
  message?: OperatorMessage | null;
}
export interface NoticeMessage {
  type: 'notice';
  /** null: the operator removed the message */
  message: OperatorMessage | null;
}
export interface PositionMessage extends PositionSnapshot {
  type: 'position';
}
export interface ReadyMessage {
  type: 'ready';
  position: number;
  ready_deadline: string;
  expires_in_sec: number;
}
export interface AdmittedMessage {
  type: 'admitted';
  reservation_token?: string;
  ttl_sec?: number;
}
export interface ExpiredMessage {
  type: 'expired';
  reason: string;
}
export interface LeftMessage {
  type: 'left';
}
/** The event ended while waiting (or in the pre-queue): terminal, the close (4020) follows. */
export interface EndedMessage {
  type: 'ended';
  /** the operator's reason: sold_out, cancelled, ends_at (the scheduled end), ... */
  reason: string;
  /** the operator's message (null = none) */
  message: OperatorMessage | null;
  ended_at: string;
}
export interface PausedMessage {
  type: 'paused';
  /** 'unavailable': this instance lost the store; nothing moves until a `resumed` */
  event_state: EventState | 'unavailable';
}
export interface ResumedMessage {
  type: 'resumed';
  event_state: EventState;
}
export interface PongMessage {
  type: 'pong';
}
export interface ServerErrorMessage {
  type: 'error';
  code: string;
  message: string;
  position?: number;
}

export type ServerMessage =
  | WelcomeMessage
  | PositionMessage
  | ReadyMessage
  | AdmittedMessage
  | ExpiredMessage
  | LeftMessage
  | EndedMessage
  | PausedMessage
  | ResumedMessage
  | NoticeMessage
  | PongMessage
  | ServerErrorMessage;

export type ClientMessage = { type: 'enter'; access_token?: string } | { type: 'leave' } | { type: 'ping' };

/** An access token longer than this is refused (a JWT is far shorter). */
export const MAX_ACCESS_TOKEN_CHARS = 8192;

/** A decoded client frame checked against the protocol; undefined for anything else. */
export function checkClientMessage(v: unknown): ClientMessage | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const t = (v as { type?: unknown }).type;
  if (t === 'enter') {
    const at = (v as { access_token?: unknown }).access_token;
    if (at === undefined) return { type: 'enter' };
    return typeof at === 'string' && at.length <= MAX_ACCESS_TOKEN_CHARS ? { type: 'enter', access_token: at } : undefined;
  }
  return t === 'leave' || t === 'ping' ? { type: t } : undefined;
}

/** The first subprotocol the client offered that we speak (the client's order is its preference). */
export function chooseSubprotocol(offered: string): { protocol: string; format: Format } {
  for (const p of offered.split(',')) {
    const name = p.trim();
    if (name === SUBPROTOCOL_MSGPACK) return { protocol: name, format: 'msgpack' };
    if (name === SUBPROTOCOL_JSON) return { protocol: name, format: 'json' };
  }
  return { protocol: '', format: 'json' };
}
