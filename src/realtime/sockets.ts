import type { UWS } from '../uws.js';
import type { Metrics } from '../metrics.js';
import { Close, type CloseCode, type Format, type ServerMessage } from '../protocol/wire.js';
import type { SocketSink } from './event-room.js';
import { encode } from './codec.js';

// The open sockets of this instance, by id. Rooms, timers and tick handlers
// hold ids, never socket handles: a closed socket is simply not found.

/** What the registry needs of a socket's own data: the format its messages are written in. */
export type WS = UWS.WebSocket<{ readonly format: Format }>;

export interface WsOptions {
  maxPerIp: number;
  connectRps: number;
  connectBurst: number;
  messageRps: number;
  messageBurst: number;
  maxClients: number;
  maxConnections: number;
  /** a socket with more than this queued is skipped for position updates until it drains */
  softBackpressureBytes: number;
  maxBackpressureBytes: number;
  maxMessageBytes: number;
  idleTimeoutSec: number;
}

/** The socket registry the rooms send through. */
export class Sockets implements SocketSink {
  readonly open = new Map<number, WS>();
  private nextId = 1;
  constructor(
    private readonly o: WsOptions,
    private readonly metrics: Metrics,
  ) {}

  newId(): number {
    return this.nextId++;
  }

  send(id: number, msg: ServerMessage, essential: boolean): boolean {
    const ws = this.open.get(id);
    if (!ws) return false;
    if (!essential && ws.getBufferedAmount() > this.o.softBackpressureBytes) {
      this.metrics.wsDropped.inc({ action: 'skipped' });
      return false;
    }
    const data = encode(msg, ws.getUserData().format);
    let r = 1;
    ws.cork(() => {
      r = ws.send(data, typeof data !== 'string');
    });
    if (r === 2) {
      // past maxBackpressure: drop the consumer (it reconnects) instead of buffering without bound
      this.metrics.wsDropped.inc({ action: 'closed' });
      this.close(id, Close.SLOW_CONSUMER, 'slow consumer');
      return false;
    }
    this.metrics.wsMessagesOut.inc({ type: msg.type });
    return true;
  }

  close(id: number, code: CloseCode, reason: string): void {
    const ws = this.open.get(id);
    if (!ws) return;
    this.open.delete(id);
    ws.cork(() => ws.end(code, reason));
  }

  closeAll(code: CloseCode, reason: string): number {
    const ids = [...this.open.keys()];
    for (const id of ids) this.close(id, code, reason);
    return ids.length;
  }
}

