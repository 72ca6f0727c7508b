/**
 * The chaos suite's load: greeter calls through both gateways with the failover recipe
 * (services/common/failover-channel.ts), anonymous ones (round robin) and sticky users
 * (a bearer token per user, as `halyard token` makes them), each call recorded with its
 * start, end, outcome and the instance that answered; and acknowledged writes to a
 * replicated bucket of the bus, read back at the end.
 */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { roleFiles } from '../../services/cli/certs-bundle.js';
import { failoverChannel } from '../../services/common/failover-channel.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import { sleep } from '../../services/common/sleep.js';
import type { MultiHost } from '../support/multi-host.js';
import { rawRoleConnection } from '../support/raw-nats.js';

const GREETER = 'demo.greeter.v1.Greeter';
const Greeter = grpc.makeGenericClientConstructor(serviceDefinition(GREETER), 'Greeter');
const CALL_DEADLINE_MS = 10_000;

export type GreeterClient = grpc.Client;

interface Reply {
  readonly message: string;
  readonly instanceId: string;
}

/** A greeter client over these gateways, with the failover recipe: round robin, SayHello retried. */
export function greeterClient(addresses: readonly string[]): GreeterClient {
  const { target, options } = failoverChannel({ addresses, idempotent: [GREETER] });
  return new Greeter(target, grpc.credentials.createInsecure(), options);
}

/** One SayHello; with a token, as that token's user (sticky). */
export function sayHello(client: GreeterClient, token: string | undefined): Promise<Reply> {
  const stub = client as unknown as {
    sayHello(
      req: object,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: Reply) => void,
    ): void;
  };
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) =>
    stub.sayHello({ name: 'chaos' }, md, { deadline: Date.now() + CALL_DEADLINE_MS }, (e, r) =>
      e || !r ? reject(e) : resolve(r),
    ),
  );
}

export interface CallRecord {
  readonly start: number;
  readonly end: number;
  /** The gRPC status name of a failed call; undefined when it succeeded. */
  readonly error: string | undefined;
  readonly instanceId: string | undefined;
  /** The sticky user, or undefined for an anonymous (round-robin) call. */
  readonly user: string | undefined;
}

export interface LoadOptions {
  /** Concurrent anonymous callers. */
  readonly roundRobin: number;
  /** Sticky users; each has its own caller. */
  readonly users: number;
  /** Pause between one caller's calls. */
  readonly pauseMs: number;
}

/** Callers running until stop(); every call is in `calls`. */
export class Load {
  readonly calls: CallRecord[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private readonly client: GreeterClient;

  private constructor(addresses: readonly string[]) {
    this.client = greeterClient(addresses);
  }

  static async start(deployment: MultiHost, options: LoadOptions): Promise<Load> {
    const load = new Load(deployment.gatewayAddresses);
    for (let i = 0; i < options.roundRobin; i++) {
      load.loops.push(load.loop(undefined, undefined, options.pauseMs));
    }
    for (let u = 0; u < options.users; u++) {
      const user = `user-${u}`;
      load.loops.push(load.loop(user, await deployment.token(user), options.pauseMs));
    }
    return load;
  }

  private async loop(user: string | undefined, token: string | undefined, pauseMs: number) {
    while (this.running) {
      const start = Date.now();
      try {
        const reply = await sayHello(this.client, token);
        this.calls.push({
          start,
          end: Date.now(),
          error: undefined,
          instanceId: reply.instanceId,
          user,
        });
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        this.calls.push({
          start,
          end: Date.now(),
          error: grpc.status[code] ?? String(err),
          instanceId: undefined,
          user,
        });
      }
      await sleep(pauseMs);
    }
  }

  /** Stops every caller after its current call; calling it again changes nothing. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await Promise.all(this.loops);
    this.client.close();
  }
}

/**
 * Writes to a replicated (R3) bucket of the bus as fast as they are acknowledged, one at
 * a time; `lost()` reads back every acknowledged one.
 */
export class Writer {
  private running = true;
  private readonly acknowledged: string[] = [];
  private loop: Promise<void> = Promise.resolve();
  private bucket = '';

  private constructor(private readonly nc: NatsConnection) {}

  static async start(deployment: MultiHost, bucket: string): Promise<Writer> {
    const nc = await rawRoleConnection(
      {
        servers: deployment.servers,
        role: 'admin',
        ...roleFiles(path.join(deployment.dir, 'bus'), 'admin'),
      },
      {
        maxReconnectAttempts: -1,
        // As the bus's own connections: a partitioned server is left within seconds.
        pingInterval: 2000,
        maxPingOut: 2,
        timeout: 2000,
      },
    );
    const writer = new Writer(nc);
    const kv = await new Kvm(nc).create(bucket, { replicas: 3 });
    writer.loop = (async () => {
      for (let n = 0; writer.running; n++) {
        try {
          await kv.put(`w${n}`, String(n));
          writer.acknowledged.push(`w${n}`);
        } catch {
          // Not acknowledged: not counted.
        }
        await sleep(20);
      }
    })();
    writer.bucket = bucket;
    return writer;
  }

  get count(): number {
    return this.acknowledged.length;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** How many acknowledged writes the bucket no longer holds. */
  async lost(): Promise<number> {
    const kv = await new Kvm(this.nc).open(this.bucket);
    let lost = 0;
    for (const key of this.acknowledged) {
      const entry = await kv.get(key);
      if (!entry || entry.string() !== key.slice(1)) lost++;
    }
    return lost;
  }

  async close(): Promise<void> {
    await this.stop();
    if (!this.nc.isClosed()) await this.nc.close();
  }
}
