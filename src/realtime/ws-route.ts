import type { UWS } from '../uws.js';
import { loadUws } from '../uws.js';
import { TokenBuckets } from '../net/rate-limit.js';
import { clientAddress } from '../net/client-address.js';
import { Close, chooseSubprotocol, type CloseCode, type Format } from '../protocol/wire.js';
import { Connection, type ConnectionHub } from './connection.js';
import type { WsOptions } from './sockets.js';

// GET /api/v1/queue/ws?token=<waiting_token> on the same uWebSockets.js app.
// The upgrade is answered synchronously, inside uWS's own handler: upgrading
// later through res.cork() can tear the new socket down right after `open`
// (uNetworking/uWebSockets#1928, fixed upstream by #1929, not in this build;
// seen here as 1006 closes under load). The attach (one Redis read) runs once
// the socket is open; the welcome follows it. Timers and tick handlers hold
// socket ids, never socket handles: a closed socket is simply not found.

/** What uWS keeps for each socket. */
interface SocketData {
  readonly conn: Connection;
  readonly format: Format;
}

export interface WsRouteDeps extends Omit<ConnectionHub, 'options' | 'perIp'> {
  isDraining: () => boolean;
  trustProxy: boolean;
}

export function registerWsRoute(app: UWS.TemplatedApp, d: WsRouteDeps, o: WsOptions): void {
  const { sockets, realtime, metrics } = d;
  const hub: ConnectionHub = { ...d, options: o, perIp: new Map<string, number>() };
  const connectLimiter = new TokenBuckets(o.connectRps, o.connectBurst, o.maxClients);

  /** Why this socket cannot stay (it is upgraded anyway, then closed with the code: a client reads a close code, not a refused handshake). */
  function refusal(ip: string): [CloseCode, string] | undefined {
    if (d.isDraining()) return [Close.DRAINING, 'draining: reconnect'];
    // this instance cannot record the socket's claim: send the client elsewhere at once
    if (!realtime.storeAvailable) return [Close.STORE_UNAVAILABLE, 'store unavailable: reconnect later'];
    if (sockets.open.size >= o.maxConnections) return [Close.OVERLOADED, 'instance full: reconnect later'];
    if (!connectLimiter.take(ip).ok) {
      metrics.rateLimitDropped.inc({ scope: 'ws_connect' });
      return [Close.RATE_LIMITED, 'too many connection attempts: reconnect later'];
    }
    if ((hub.perIp.get(ip) ?? 0) >= o.maxPerIp) {
      metrics.rateLimitDropped.inc({ scope: 'ws_per_ip' });
      return [Close.RATE_LIMITED, 'too many connections from this address'];
    }
    return undefined;
  }

  app.ws<SocketData>('/api/v1/queue/ws', {
    compression: loadUws().DISABLED,
    maxPayloadLength: o.maxMessageBytes,
    maxBackpressure: o.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: o.idleTimeoutSec,
    sendPingsAutomatically: true,

    // read everything from the request synchronously: uWS frees it when this returns
    upgrade: (res, req, context) => {
      const query = req.getQuery() ?? '';
      const key = req.getHeader('sec-websocket-key');
      const offered = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const forwarded = req.getHeader('x-forwarded-for');
      let remote = '';
      try {
        remote = Buffer.from(res.getRemoteAddressAsText()).toString();
      } catch {
        remote = ''; // the client is already gone: the address only matters for limits
      }
      const ip = clientAddress(remote, forwarded, d.trustProxy);
      const token = new URLSearchParams(query).get('token') ?? '';
      const { protocol, format } = chooseSubprotocol(offered);
      const conn = new Connection(hub, sockets.newId(), ip, token, format, refusal(ip));
      // uWS copies the user data's own fields onto its socket object (methods on a prototype do not
      // survive): the connection goes in by reference, the format beside it for the send path
      res.upgrade<SocketData>({ conn, format }, key, protocol, extensions, context);
    },
    open: (ws) => ws.getUserData().conn.opened(ws),
    message: (ws, message, isBinary) => ws.getUserData().conn.received(message, isBinary),
    drain: (ws) => ws.getUserData().conn.drained(),
    close: (ws, code) => ws.getUserData().conn.closed(code),
  });
}
