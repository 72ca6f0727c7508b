/**
 * A 3-host Halyard deployment on one machine, built from deploy/ as an operator would on
 * three machines: hosts are network namespaces (hosts.ts); `halyard certs` makes the CA,
 * certificates, role nkeys and per-host NATS configs for their addresses; each host runs
 * its NATS node from deploy/nats/nats.conf and a launcher (host-<i>, `--address` = the
 * host's address, role launcher-host-<i>) in `bus` mode; `halyard bus provision` runs
 * once as admin, then the operator role publishes deploy/multi-host/mesh.yaml (without
 * its host settings) as the mesh configuration. Every process runs inside its host's
 * namespace, so `killHost` is a power loss and `cutHost` a partition; `close()` leaves
 * nothing behind.
 *
 * The test process stays outside every host, as a client would: it reaches the gateways
 * and the bus over the hosts' network. Logs go to `<dir>/logs/<host>-<process>.log`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Bus, type LauncherStatus, type ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import {
  demoSecrets,
  demoToken,
  gatewaySecretsEnv,
  registryCredentials,
  registryCredentialsEnv,
} from '../../services/cli/demo-secrets.js';
import { launchers } from '../../services/cli/launchers.js';
import { publishMeshFile } from '../../services/cli/up/mesh-config.js';
import { busOptions, busSettings } from '../../services/common/bus-settings.js';
import { type Host, Hosts } from './hosts.js';
import { until } from './wait.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MESH_CONFIG = path.join(REPO, 'deploy/multi-host/mesh.yaml');
const NATS_PORT = 4222;
export const GATEWAY_PORT = 8443;
const ADMIN_BASE = 9200;
const { State } = halyard.launcher.v1.ProcessStatus;
const { InstanceStatus } = halyard.discovery.v1;

/** What runs where in deploy/multi-host/mesh.yaml: instances per host (1-based). */
export const PLACEMENT: Readonly<Record<string, readonly number[]>> = {
  discovery: [1, 2, 3],
  gateway: [1, 2],
  cache: [2, 3],
  greeter: [1, 2, 3],
};

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export class MultiHost {
  private readonly nats = new Map<number, ChildProcess>();
  private readonly launchers = new Map<number, ChildProcess>();
  private operatorBus: Bus | undefined;

  private constructor(
    readonly hosts: Hosts,
    /** Everything of this deployment: the certs bundle, stores, mesh secrets, logs. */
    readonly dir: string,
    private readonly natsBin: string,
  ) {}

  /** Makes the hosts and the certs; nothing runs yet (see start()). */
  static async create(): Promise<MultiHost> {
    const hosts = Hosts.create(3);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `halyard-${hosts.id}-`));
    const deployment = new MultiHost(hosts, dir, natsServerBin());
    try {
      fs.mkdirSync(deployment.logs, { recursive: true });
      const certs = await runCli(
        undefined,
        [
          'certs',
          path.join(dir, 'bus'),
          ...hosts.hosts.flatMap((h) => ['--host', `n${h.index}=${h.address}`]),
          ...hosts.hosts.flatMap((h) => ['--launcher-host', h.name]),
          // Relative: each node runs in its own host directory (on a machine of its own,
          // the defaults /etc/halyard/nats and /var/lib/halyard/nats).
          ...['--install-dir', '.', '--store-dir', 'jetstream'],
        ],
        {},
      );
      if (certs.code !== 0) throw new Error(`halyard certs failed: ${certs.stderr}`);
      demoSecrets(deployment.meshDir);
      registryCredentials(deployment.meshDir);
      fs.writeFileSync(deployment.launcherConfig, 'meshConfig: bus\n');
    } catch (err) {
      await deployment.close();
      throw err;
    }
    return deployment;
  }

  /** create(), then every NATS node, provisioning and every launcher, until all is ready. */
  static async start(): Promise<MultiHost> {
    const deployment = await MultiHost.create();
    try {
      for (const host of deployment.hosts.hosts) deployment.startNats(host.index);
      await deployment.provision();
      await deployment.applyMeshConfig();
      for (const host of deployment.hosts.hosts) deployment.startLauncher(host.index);
      await deployment.waitFullyReady(180_000);
    } catch (err) {
      await deployment.close();
      throw err;
    }
    return deployment;
  }

  get servers(): string[] {
    return this.hosts.hosts.map((h) => `nats://${h.address}:${NATS_PORT}`);
  }

  /** Where clients reach the gateways: hosts 1 and 2. */
  get gatewayAddresses(): string[] {
    return PLACEMENT.gateway!.map((i) => `${this.hosts.host(i).address}:${GATEWAY_PORT}`);
  }

  get logs(): string {
    return path.join(this.dir, 'logs');
  }

  private get meshDir(): string {
    return path.join(this.dir, 'mesh');
  }

  /** Every host's launcher file: the components come from the bus. */
  private get launcherConfig(): string {
    return path.join(this.dir, 'launcher.yaml');
  }

  private get roles(): string {
    return path.join(this.dir, 'bus', 'roles');
  }

  host(index: number): Host {
    return this.hosts.host(index);
  }

  /** The environment that makes a process connect to this bus as `role`. */
  roleEnv(role: string): Record<string, string> {
    return {
      HALYARD_NATS: this.servers.join(','),
      HALYARD_NATS_ROLES: this.roles,
      HALYARD_NATS_ROLE: role,
    };
  }

  /** Starts host `index`'s NATS node from deploy/nats/nats.conf, as its systemd unit would. */
  startNats(index: number): ChildProcess {
    const host = this.host(index);
    const hostDir = path.join(this.dir, 'bus', 'hosts', `n${index}`);
    const child = host.spawn(this.natsBin, ['-c', path.join(hostDir, 'nats.conf')], {
      cwd: hostDir,
      stdio: ['ignore', this.logFd(host, 'nats'), this.logFd(host, 'nats')],
    });
    this.nats.set(index, child);
    return child;
  }

  /**
   * Starts host `index`'s launcher, which runs the mesh configuration on the bus: its
   * file holds only that (its id, address and bus are flags and environment).
   */
  startLauncher(index: number): ChildProcess {
    const host = this.host(index);
    const args = [
      ...['--import', 'tsx', path.join(REPO, 'services/launcher/main.ts')],
      ...['--config', this.launcherConfig, '--host-id', host.name, '--address', host.address],
      ...['--nats', this.servers.join(','), '--grpc', `${host.address}:7400`],
      ...['--admin-port', '7401'],
    ];
    const secrets = demoSecrets(this.meshDir);
    const child = host.spawn(process.execPath, args, {
      cwd: REPO,
      stdio: ['ignore', this.logFd(host, 'launcher'), this.logFd(host, 'launcher')],
      env: {
        ...process.env,
        ...this.roleEnv(`launcher-${host.name}`),
        ...gatewaySecretsEnv(secrets),
        ...registryCredentialsEnv({ dir: path.join(this.meshDir, 'registry') }),
        HALYARD_ADMIN_BASE: String(ADMIN_BASE),
      },
    });
    this.launchers.set(index, child);
    return child;
  }

  /** kill -9 of host `index`'s NATS node only. */
  killNats(index: number): void {
    const child = this.nats.get(index);
    if (child?.pid) process.kill(child.pid, 'SIGKILL');
    this.nats.delete(index);
  }

  /** SIGTERM to host `index`'s NATS node (a clean shutdown); resolves once it exited. */
  async stopNats(index: number): Promise<void> {
    const child = this.nats.get(index);
    this.nats.delete(index);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  /** The launcher process of host `index` as started here (undefined once it exited). */
  launcherPid(index: number): number | undefined {
    const child = this.launchers.get(index);
    return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** `halyard bus provision` as admin, from host 1, retried while the cluster forms. */
  async provision(timeoutMs = 90_000): Promise<void> {
    let last: CommandResult | undefined;
    await until(
      'halyard bus provision',
      async () => {
        last = await this.halyard(1, 'admin', [
          'bus',
          'provision',
          '--servers',
          this.servers.join(','),
        ]);
        return last.code === 0;
      },
      timeoutMs,
      1000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}: ${last?.stderr ?? ''}`);
    });
  }

  /**
   * Publishes deploy/multi-host/mesh.yaml as the mesh configuration, without its host
   * settings (the `hostId` a launcher in `file` mode reads), as the operator role: what
   * `halyard config apply` publishes, without the start of a CLI process.
   */
  async applyMeshConfig(): Promise<void> {
    await publishMeshFile(await this.bus(), MESH_CONFIG, pino({ level: 'silent' }));
  }

  /** Runs the `halyard` CLI inside host `index`, connected as `role`. */
  halyard(index: number, role: string, args: readonly string[]): Promise<CommandResult> {
    return runCli(this.host(index), args, this.roleEnv(role));
  }

  /** A bearer token the gateways accept, for `user` (as `halyard token` makes them). */
  token(user: string): Promise<string> {
    return demoToken(this.meshDir, user, 3600);
  }

  /** A connection of the test process to the bus as the operator (read-only). */
  async bus(): Promise<Bus> {
    if (!this.operatorBus) {
      const settings = busSettings.parse({
        servers: this.servers,
        roles: this.roles,
        role: 'operator',
      });
      this.operatorBus = await Bus.connect(
        busOptions(settings, 'multi-host-test', pino({ level: 'silent' })),
      );
    }
    return this.operatorBus;
  }

  /** Every launcher that answers, with its processes. */
  async launcherStatus(): Promise<LauncherStatus[]> {
    return launchers(await this.bus(), undefined);
  }

  /** The registry's entries. */
  async registrations(): Promise<ServiceInstance[]> {
    return [...(await (await this.bus()).snapshot('registrations')).entries.values()];
  }

  /**
   * What keeps the deployment from being whole: a launcher missing, an instance of the
   * placement not READY, a greeter or discovery replica not UP in the registry, or
   * undefined when every host runs everything it should.
   */
  async missing(): Promise<string | undefined> {
    const status = await this.launcherStatus().catch((err: Error) => err);
    if (status instanceof Error) return `launchers: ${status.message}`;
    for (const host of this.hosts.hosts) {
      const launcher = status.find((s) => s.hostId === host.name);
      if (!launcher) return `launcher ${host.name}`;
      for (const [component, on] of Object.entries(PLACEMENT)) {
        if (!on.includes(host.index)) continue;
        const p = launcher.processes.find((x) => x.component === component);
        if (p?.state !== State.READY) return `${component} on ${host.name}`;
      }
    }
    const registrations = await this.registrations().catch(() => []);
    for (const [service, component] of [
      ['greeter', 'greeter'],
      ['halyard-discovery', 'discovery'],
    ] as const) {
      const up = registrations.filter(
        (r) => r.serviceId === service && r.status === InstanceStatus.UP,
      );
      if (up.length < PLACEMENT[component]!.length) {
        return `${service}: ${up.length} of ${PLACEMENT[component]!.length} UP`;
      }
    }
    return undefined;
  }

  /** Resolves once missing() finds nothing; the time it took in ms. */
  async waitFullyReady(timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    let last: string | undefined;
    await until(
      'the whole deployment',
      async () => {
        last = await this.missing();
        return last === undefined;
      },
      timeoutMs,
      500,
    ).catch((err) => {
      throw new Error(`${(err as Error).message} (still missing: ${last}; logs in ${this.logs})`);
    });
    return Date.now() - t0;
  }

  /** kill -9 of every process of host `index`: its machine loses power. */
  async killHost(index: number): Promise<void> {
    await this.host(index).killAll();
    this.nats.delete(index);
    this.launchers.delete(index);
  }

  /** The machine is back: its NATS node and its launcher start again (systemd's job). */
  restartHost(index: number): void {
    this.startNats(index);
    this.startLauncher(index);
  }

  cutHost(index: number): void {
    this.host(index).cut();
  }

  healHost(index: number): void {
    this.host(index).heal();
  }

  async close(): Promise<void> {
    const bus = this.operatorBus;
    this.operatorBus = undefined;
    await bus?.close().catch(() => {});
    await this.hosts.close();
    if (!process.env.HALYARD_KEEP_LOGS) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private logFd(host: Host, what: string): number {
    return fs.openSync(path.join(this.logs, `${host.name}-${what}.log`), 'a');
  }
}

/** The `halyard` CLI of this checkout, inside `host` (or here when undefined). */
async function runCli(
  host: Host | undefined,
  args: readonly string[],
  env: Record<string, string>,
): Promise<CommandResult> {
  const argv = ['--import', 'tsx', path.join(REPO, 'services/cli/main.ts'), ...args];
  const options = {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env, HALYARD_LOG_LEVEL: 'warn' },
  };
  const child = host
    ? host.spawn(process.execPath, argv, options)
    : spawn(process.execPath, argv, options);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

function natsServerBin(): string {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  return execFileSync('bash', [path.join(REPO, 'deploy/nats/ensure-nats-server.sh')], {
    encoding: 'utf8',
  }).trim();
}
