/** Discovery replicas, Registry clients and health-checked backends for tests. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { Logger } from 'pino';
import { pino } from 'pino';
import { tokenDigest } from '../../services/common/callers.js';
import { clientCredentials } from '../../services/common/client-tls.js';
import type { AccessOptions } from '../../services/discovery/access.js';
import type { RegistryCredential } from '../../services/discovery/client.js';
import { LogIds } from '../../services/discovery/log-ids.js';
import { DiscoveryReplica, type ReplicaOptions } from '../../services/discovery/replica.js';
import { registryDefinition } from '../../services/discovery/service.js';
import type { NatsCluster } from './nats-cluster.js';
import { until } from './wait.js';

/** The token of `tester`, which the replicas of tests grant every service id, name and read. */
export const TESTER_TOKEN = 'tester-token-for-discovery-tests';

export const TESTER_ACCESS: AccessOptions = {
  tokens: [{ sha256: tokenDigest(TESTER_TOKEN), identity: 'tester' }],
  grants: { tester: { services: { '*': ['*'] }, read: true } },
};

/** A file holding `token` (0600), as a registering service is given its token. */
export function tokenFile(token = TESTER_TOKEN): string {
  const file = join(mkdtempSync(join(tmpdir(), 'halyard-token-')), 'registry.token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return file;
}

/** The replica config lines that grant `tester` (YAML, for replicas run as processes). */
export const TESTER_ACCESS_YAML = [
  'tokens:',
  `  - { sha256: ${tokenDigest(TESTER_TOKEN)}, identity: tester }`,
  'grants:',
  `  tester: { services: { "*": ["*"] }, read: true }`,
].join('\n');

/** Short leases and fast loops, so that lapses and probes happen within a test's time. */
export const FAST = {
  leases: { defaultSeconds: 15, minSeconds: 1, maxSeconds: 300 },
  replicaLeaseSeconds: 2,
  expiryCheckIntervalMs: 300,
  expirySettleMs: 200,
  selfPreservation: { windowMs: 2000 },
  health: { intervalMs: 400, timeoutMs: 300, failureThreshold: 2 },
} satisfies Partial<ReplicaOptions>;

export async function startReplica(
  cluster: NatsCluster,
  replicaId: string,
  overrides: Partial<ReplicaOptions> = {},
  logger: Logger = pino({ level: 'warn' }),
): Promise<DiscoveryReplica> {
  const replica = await DiscoveryReplica.start({
    replicaId,
    bus: { servers: cluster.servers },
    grpcListen: '127.0.0.1:0',
    adminPort: 0,
    logger,
    access: TESTER_ACCESS,
    ...FAST,
    ...overrides,
  });
  await replica.loaded;
  return replica;
}

type Obj = Record<string, unknown>;
const RegistryClient = grpc.makeGenericClientConstructor(registryDefinition, 'Registry');

/** Who a test client is: a token (default `tester`'s), a client certificate, or nothing. */
export type TestCredential =
  | { readonly token: string }
  | { readonly tls: NonNullable<RegistryCredential['tls']>; readonly token?: string }
  | 'anonymous';

/** A promisified Registry client; failures reject with the grpc ServiceError. */
export class TestRegistryClient {
  readonly stub: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  private readonly metadata = new grpc.Metadata();

  constructor(address: string, credential: TestCredential = { token: TESTER_TOKEN }) {
    const tls = credential !== 'anonymous' && 'tls' in credential ? credential.tls : undefined;
    const channel = clientCredentials(tls);
    if (credential !== 'anonymous' && credential.token !== undefined) {
      this.metadata.set('authorization', `Bearer ${credential.token}`);
    }
    this.stub = new RegistryClient(address, channel) as never;
  }

  private unary(method: string, request: object, timeoutMs = 30_000): Promise<Obj> {
    return new Promise((resolve, reject) =>
      this.stub[method]!(
        request,
        this.metadata,
        { deadline: Date.now() + timeoutMs },
        (e: Error | null, r: Obj) => (e ? reject(e) : resolve(r)),
      ),
    );
  }

  register(instance: object, timeoutMs?: number) {
    return this.unary('register', { instance }, timeoutMs);
  }
  renew(serviceId: string, instanceId: string) {
    return this.unary('renew', { instance: { serviceId, instanceId } });
  }
  deregister(serviceId: string, instanceId: string) {
    return this.unary('deregister', { instance: { serviceId, instanceId } });
  }
  setStatus(serviceId: string, instanceId: string, status: number) {
    return this.unary('setStatus', { instance: { serviceId, instanceId }, status });
  }
  async list(serviceId = ''): Promise<Obj[]> {
    return ((await this.unary('list', { serviceId })).instances ?? []) as Obj[];
  }
  watch(serviceId = ''): grpc.ClientReadableStream<Obj> {
    return this.stub.watch!({ serviceId }, this.metadata) as grpc.ClientReadableStream<Obj>;
  }
  close(): void {
    this.stub.close();
  }
}

/** Rejection of a call: its gRPC status code and message. */
export async function rejection(
  call: Promise<unknown>,
): Promise<{ code: number; details: string }> {
  try {
    await call;
  } catch (error) {
    const e = error as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error('the call succeeded; a rejection was expected');
}

/**
 * A real gRPC server implementing grpc.health.v1 whose status the test sets, and
 * which records the user agent of every probe (discovery names its replica there).
 */
export class HealthBackend {
  status: 'SERVING' | 'NOT_SERVING' = 'SERVING';
  readonly probers: string[] = [];
  private constructor(
    private readonly server: grpc.Server,
    readonly address: string,
  ) {}

  static async start(): Promise<HealthBackend> {
    const server = new grpc.Server();
    let backend: HealthBackend | undefined;
    server.addService(healthService as unknown as grpc.ServiceDefinition, {
      check: (call: grpc.ServerUnaryCall<Obj, Obj>, callback: grpc.sendUnaryData<Obj>) => {
        const agent = String(call.metadata.get('user-agent')[0] ?? '');
        backend?.probers.push(/halyard-discovery\/(\S+)/.exec(agent)?.[1] ?? agent);
        callback(null, { status: backend?.status ?? 'UNKNOWN' });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    backend = new HealthBackend(server, `127.0.0.1:${port}`);
    return backend;
  }

  close(): void {
    this.server.forceShutdown();
  }
}

export interface ChildProcessHandle {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Lines carrying this stable message id. */
  withId(msgId: string): Array<Record<string, unknown>>;
}

/** Runs a TypeScript entry point under tsx, collecting its JSON log lines. */
export function spawnTs(
  entry: string,
  args: string[],
  env: Record<string, string> = {},
): ChildProcessHandle {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part));
      } catch {
        lines.push({ text: part });
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => lines.push({ stderr: chunk.toString() }));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, exited, withId: (msgId) => lines.filter((l) => l.msgId === msgId) };
}

export interface ReplicaProcess extends ChildProcessHandle {
  readonly grpcAddress: string;
  readonly adminPort: number;
}

/** A discovery replica as a real process (`services/discovery/main.ts`), once it is ready. */
export async function spawnReplica(
  cluster: NatsCluster,
  replicaId: string,
  configFile: string,
): Promise<ReplicaProcess> {
  const handle = spawnTs('services/discovery/main.ts', [
    '--config',
    configFile,
    '--nats',
    cluster.servers.join(','),
    '--replica-id',
    replicaId,
    '--grpc-listen',
    '127.0.0.1:0',
    '--admin-port',
    '0',
  ]);
  const ready = await until(
    `replica ${replicaId} ready`,
    () => {
      if (handle.child.exitCode !== null) {
        throw new Error(`replica ${replicaId} exited: ${JSON.stringify(handle.lines.slice(-5))}`);
      }
      return handle.withId(LogIds.ready)[0];
    },
    30_000,
  );
  return { ...handle, grpcAddress: String(ready.grpcAddress), adminPort: Number(ready.adminPort) };
}
