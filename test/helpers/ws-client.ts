import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';

// A real WebSocket client (the `ws` package) speaking the gateway's protocol.

export interface Msg {
  type: string;
  [k: string]: unknown;
}

export interface Client {
  ws: WebSocket;
  messages: Msg[];
  /** resolves with the first message matching `pred`, among those received from index `from` on (default: all) or arriving later */
  next(pred: (m: Msg) => boolean, timeoutMs?: number, from?: number): Promise<Msg>;
  closed: Promise<{ code: number; reason: string }>;
  /** set once the socket has closed (for diagnostics) */
  closeInfo?: { code: number; reason: string; atMs: number; error?: string; localPort?: number };
  send(m: unknown): void;
  close(): Promise<void>;
}

export function connect(baseUrl: string, token: string, format: 'json' | 'msgpack' = 'json', localAddress?: string): Promise<Client> {
  const url = `${baseUrl.replace(/^http/, 'ws')}/api/v1/queue/ws?token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(url, [format === 'msgpack' ? 'waiting-room.v1.msgpack' : 'waiting-room.v1.json'], localAddress ? { localAddress } : {});
  const messages: Msg[] = [];
  const waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const m = (isBinary ? unpack(data) : JSON.parse(data.toString())) as Msg;
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => {
      const client: Client = {
        ws,
        messages,
        closed,
        send: (m) => ws.send(format === 'msgpack' ? pack(m) : JSON.stringify(m)),
        next(pred, timeoutMs = 10_000, from = 0) {
          const seen = messages.slice(from).find(pred);
          if (seen) return Promise.resolve(seen);
          return new Promise<Msg>((res, rej) => {
            const t = setTimeout(() => rej(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages.slice(-5))}`)), timeoutMs);
            waiters.push({
              pred,
              resolve: (m) => {
                clearTimeout(t);
                res(m);
              },
            });
          });
        },
        close: async () => {
          if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
          await closed;
        },
      };
      let error: string | undefined;
      const localPort = (ws as unknown as { _socket?: { localPort?: number } })._socket?.localPort;
      // after the handshake an error (a bad frame, a reset) closes the socket with 1006: keep why
      ws.on('error', (err) => (error = err.message));
      void closed.then((c) => (client.closeInfo = { ...c, atMs: Date.now(), localPort, ...(error ? { error } : {}) }));
      resolve(client);
    });
  });
}

/**
 * A client that behaves like the real one (src/client/waiting-room.ts) when
 * its socket closes: a terminal code (4000-4099, 4400-4499) ends it; anything
 * else reconnects with the same token after the client's backoff (0-1 s after
 * 4100, else full jitter up to min(8 s, 500 ms * 2^attempt), reset by a
 * welcome), to the instance `pick` names (the load balancer's choice).
 */
export interface ReconnectingClient {
  readonly token: string;
  /** the socket now open or opening */
  current: Client | undefined;
  /** every close seen, in order */
  readonly closes: { code: number; reason: string; atMs: number; url: string }[];
  /** every welcome and position message, in order, across sockets */
  readonly positions: number[];
  /** welcomes received (one per socket that attached) */
  welcomes: number;
  /** set when a terminal close ended it */
  terminal: { code: number; reason: string } | undefined;
  /** socket attempts that failed at the handshake */
  failedAttempts: number;
  stop(): Promise<void>;
}

const isTerminalClose = (code: number): boolean => code >= 4000 && code <= 4999 && !(code >= 4100 && code <= 4199);

export function reconnecting(token: string, pick: () => string, localAddress?: string): ReconnectingClient {
  let attempt = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const rc: ReconnectingClient = {
    token,
    current: undefined,
    closes: [],
    positions: [],
    welcomes: 0,
    terminal: undefined,
    failedAttempts: 0,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await rc.current?.close();
    },
  };
  const schedule = (code: number): void => {
    if (stopped) return;
    const delay = code === 4100 ? Math.random() * 1000 : Math.random() * Math.min(8000, 500 * 2 ** attempt++);
    timer = setTimeout(open, delay);
  };
  const open = (): void => {
    if (stopped) return;
    const url = pick();
    connect(url, token, 'json', localAddress).then(
      (c) => {
        rc.current = c;
        const note = (m: Msg): void => {
          if (m.type === 'welcome') {
            attempt = 0;
            rc.welcomes++;
          }
          if (m.type === 'welcome' || m.type === 'position') rc.positions.push(m.position as number);
        };
        for (const m of c.messages) note(m);
        c.ws.on('message', () => note(c.messages.at(-1)!));
        void c.closed.then(({ code, reason }) => {
          rc.closes.push({ code, reason, atMs: Date.now(), url });
          if (stopped) return;
          if (isTerminalClose(code)) rc.terminal = { code, reason };
          else schedule(code);
        });
      },
      () => {
        rc.failedAttempts++;
        schedule(1006);
      },
    );
  };
  open();
  return rc;
}
