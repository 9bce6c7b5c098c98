/**
 * A TCP pass-through with an off switch, put in front of moto to simulate an S3 outage without losing
 * moto's (in-memory) bucket: while down, open connections are cut and new ones are reset at once, the
 * way an unreachable endpoint looks to the SDK; switched up again, traffic flows as before.
 */
import net from 'node:net';

export interface TcpSwitch {
  /** `http://127.0.0.1:PORT`, to use as the S3 endpoint. */
  url: string;
  setDown(down: boolean): void;
  /** Connections accepted while up (for asserting traffic). */
  connections: number;
  stop(): Promise<void>;
}

export async function startTcpSwitch(target: string): Promise<TcpSwitch> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.resetAndDestroy();
      return;
    }
    sw.connections++;
    const upstream = net.connect({ host: hostname, port: Number(port) });
    sockets.add(client);
    sockets.add(upstream);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  const sw: TcpSwitch = {
    url: `http://127.0.0.1:${address.port}`,
    connections: 0,
    setDown(value: boolean) {
      down = value;
      if (down) for (const socket of sockets) socket.destroy();
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return sw;
}
