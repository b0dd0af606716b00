import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

// A TCP proxy in front of a real server, to cut one client off from it (a
// network partition between one gateway and Redis) while others still reach
// it directly. `blackhole()` stops forwarding in both directions without
// closing anything (packets that go nowhere, as a partition looks to the
// client: commands time out); `restore()` forwards again and lets new
// connections through.

export interface TcpProxy {
  readonly address: string;
  blackhole(): void;
  restore(): void;
  stop(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const [host, portText] = target.split(':');
  const pairs = new Set<[Socket, Socket]>();
  let holed = false;
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(portText), host!);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (b: Buffer) => {
        if (!holed) to.write(b);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
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
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    address: `127.0.0.1:${port}`,
    blackhole: () => {
      holed = true;
    },
    restore: () => {
      holed = false;
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
