import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

// A TCP proxy in front of a real server, to cut one client off from it (a
// network partition between one gateway and Redis) while others still reach
// it directly. `blackhole()` stops moving bytes in both directions and
// accepts new connections without serving them, as a partition looks to both
// ends: nothing arrives, commands time out, nothing is closed. Bytes are held,
// not dropped (TCP would retransmit them), so `restore()` delivers what was
// sent meanwhile, late, and the streams stay intact.

export interface TcpProxy {
  readonly address: string;
  blackhole(): void;
  restore(): void;
  stop(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i);
  const port = Number(target.slice(i + 1));
  const pairs = new Set<[Socket, Socket]>();
  let holed = false;
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(port, host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    if (holed) {
      client.pause();
      upstream.pause();
    }
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const listening = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    address: `127.0.0.1:${listening}`,
    blackhole: () => {
      holed = true;
      for (const [a, b] of pairs) {
        a.pause();
        b.pause();
      }
    },
    restore: () => {
      holed = false;
      for (const [a, b] of pairs) {
        a.resume();
        b.resume();
      }
    },
    stop: async () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
