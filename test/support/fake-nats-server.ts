/**
 * A stand-in for a nats-server of any version, for tests of what a client does with
 * what the server says about itself (its INFO): no real server of an old version has
 * to be installed to see Halyard refuse one.
 *
 * It speaks just enough of the NATS client protocol for a client to connect: INFO on
 * accept, PONG to PING, CONNECT/SUB/UNSUB accepted and ignored; a request to the
 * JetStream API's account info (`$JS.API.INFO`) is answered as an empty account so a
 * client may go as far as checking JetStream. Everything else is dropped.
 */
import * as net from 'node:net';

export interface FakeNatsServerOptions {
  /** The version announced in INFO, e.g. `2.9.10`. */
  readonly version: string;
}

export class FakeNatsServer {
  /** Every socket a client opened, and whether the client has closed it. */
  readonly connections: Array<{ socket: net.Socket; ended: Promise<void> }> = [];
  /** Subjects the clients published to, in order. */
  readonly published: string[] = [];

  private constructor(
    private readonly server: net.Server,
    readonly url: string,
  ) {}

  static async start(options: FakeNatsServerOptions): Promise<FakeNatsServer> {
    let fake: FakeNatsServer | undefined;
    const server = net.createServer((socket) => fake?.accept(socket, options));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as net.AddressInfo;
    fake = new FakeNatsServer(server, `nats://127.0.0.1:${port}`);
    return fake;
  }

  /** Resolves when the first connection a client opened has been closed by it. */
  async firstConnectionEnded(): Promise<void> {
    const first = this.connections[0];
    if (!first) throw new Error('no client connected to the fake nats-server');
    await first.ended;
  }

  async close(): Promise<void> {
    for (const { socket } of this.connections) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket, options: FakeNatsServerOptions): void {
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    this.connections.push({ socket, ended });
    socket.on('error', () => {});
    const info = {
      server_id: 'NFAKE0000000000000000000000000000000000000000000000000000',
      server_name: 'fake',
      version: options.version,
      proto: 1,
      go: 'go0',
      host: '127.0.0.1',
      port: (this.server.address() as net.AddressInfo).port,
      headers: true,
      max_payload: 1_048_576,
      jetstream: true,
    };
    socket.write(`INFO ${JSON.stringify(info)}\r\n`);
    const subscriptions = new Map<string, string>();
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) return;
        const [op = '', ...args] = buffer.subarray(0, eol).toString().split(' ');
        const verb = op.toUpperCase();
        // PUB subject [reply] size | HPUB subject [reply] headerSize totalSize
        const size = verb === 'PUB' || verb === 'HPUB' ? Number(args.at(-1)) : -1;
        if (size >= 0 && buffer.length < eol + 2 + size + 2) return;
        buffer = buffer.subarray(eol + 2 + (size >= 0 ? size + 2 : 0));
        if (verb === 'PING') socket.write('PONG\r\n');
        else if (verb === 'SUB') subscriptions.set(args[0]!, args.at(-1)!);
        else if (size >= 0) {
          const [subject = '', reply] = args;
          this.published.push(subject);
          const replyArgs = verb === 'PUB' ? args.length === 3 : args.length === 4;
          if (subject === '$JS.API.INFO' && replyArgs && reply) {
            this.answer(socket, subscriptions, reply, ACCOUNT_INFO);
          }
        }
      }
    });
  }

  /** Sends `payload` to `reply` on the client's subscription that covers it (its inbox). */
  private answer(
    socket: net.Socket,
    subscriptions: Map<string, string>,
    reply: string,
    payload: string,
  ): void {
    for (const [subject, sid] of subscriptions) {
      const covers =
        subject === reply || (subject.endsWith('.*') && reply.startsWith(subject.slice(0, -1)));
      if (!covers) continue;
      socket.write(`MSG ${reply} ${sid} ${Buffer.byteLength(payload)}\r\n${payload}\r\n`);
      return;
    }
  }
}

const ACCOUNT_INFO = JSON.stringify({
  type: 'io.nats.jetstream.api.v1.account_info_response',
  memory: 0,
  storage: 0,
  streams: 0,
  consumers: 0,
  limits: {
    max_memory: -1,
    max_storage: -1,
    max_streams: -1,
    max_consumers: -1,
    max_ack_pending: -1,
    memory_max_stream_bytes: -1,
    storage_max_stream_bytes: -1,
    max_bytes_required: false,
  },
  api: { total: 0, errors: 0 },
});
