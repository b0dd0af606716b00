import { connect, type Socket } from 'node:net';

// A minimal WebSocket client for the load generators: the handshake as one
// precomputed write, server frames parsed in place, pings answered. Nothing
// else (no extensions, no masking key per frame, no fragmented messages).
//
// Why not the `ws` package here: on this 2-core machine the load generators
// share the CPU with the gateways, and a reconnect storm of 15,000 `ws`
// clients per process blocked the generators' own event loops for up to 7.7 s
// (measured with monitorEventLoopDelay). Their 10 s handshake timers then
// fired before they read answers already waiting in their sockets: the storm
// measured the load generator. This client costs a few microseconds per
// connection and per message.

export interface LeanHandlers {
  /** a text frame (the server sends JSON in text frames) */
  message(text: string): void;
  /** the socket is gone: the close frame's code and reason, or 1006 when there was none */
  close(code: number, reason: string): void;
  /** the handshake failed or timed out, or the connection broke before it finished */
  error(reason: string): void;
}

export interface LeanOptions {
  host: string;
  port: number;
  path: string;
  protocol: string;
  localAddress?: string;
  /** from connect to the 101 answer */
  handshakeTimeoutMs: number;
}

// an unmasked-payload pong with a zero masking key (clients must mask; a zero key leaves the payload as is)
const PONG = Buffer.from([0x8a, 0x80, 0, 0, 0, 0]);

export class LeanSocket {
  private readonly sock: Socket;
  private upgraded = false;
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    o: LeanOptions,
    private readonly h: LeanHandlers,
  ) {
    this.sock = connect({ host: o.host, port: o.port, localAddress: o.localAddress, noDelay: true });
    this.timer = setTimeout(() => this.fail('handshake timeout'), o.handshakeTimeoutMs);
    this.sock.on('connect', () => {
      this.sock.write(
        `GET ${o.path} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${o.protocol}\r\n\r\n`,
      );
    });
    this.sock.on('data', (d: Buffer) => this.data(d));
    this.sock.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? err.message));
    this.sock.on('close', () => {
      if (this.upgraded) this.finish(1006);
      else this.fail('closed before the handshake');
    });
  }

  terminate(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.sock.destroy();
  }

  private fail(reason: string): void {
    if (this.done) return;
    if (this.upgraded) return this.finish(1006);
    this.done = true;
    clearTimeout(this.timer);
    this.sock.destroy();
    this.h.error(reason);
  }

  private finish(code: number, reason = ''): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.sock.destroy();
    this.h.close(code, reason);
  }

  private data(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    if (!this.upgraded) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!this.buf.subarray(0, 13).toString('latin1').startsWith('HTTP/1.1 101')) return this.fail(`answer ${this.buf.subarray(9, 12).toString('latin1')}`);
      this.upgraded = true;
      clearTimeout(this.timer);
      this.buf = this.buf.subarray(end + 4);
    }
    // frames: FIN+opcode, length (7 bits, or 16 / 64 bits after), unmasked payload
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const opcode = b[0]! & 0x0f;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + len) return;
      const payload = b.subarray(at, at + len);
      this.buf = b.subarray(at + len);
      if (opcode === 1) this.h.message(payload.toString('utf8'));
      else if (opcode === 9) this.sock.write(PONG);
      else if (opcode === 8) return this.finish(len >= 2 ? payload.readUInt16BE(0) : 1005, payload.subarray(2).toString('utf8'));
      if (this.done) return;
    }
  }
}

/**
 * The source address of a generator's i-th socket: its own 127.0.0.k spread
 * over 127.1-4.0.k, at most a quarter of its sockets on each. A socket bound
 * to a source address before connecting gets its port from bind(), which
 * searches that address's ports one by one: with 4,000 sockets on one
 * address plus the 4,000 a storm just closed (TIME_WAIT), each bind took
 * long enough to block a generator for 6-9 s (event-loop delay measured in
 * bench/storm-worker.ts; a generator of 3,000 sockets was not affected).
 */
export function spread(base: string, i: number): string {
  return base.replace(/^127\.0\./, `127.${1 + (i % 4)}.`);
}
