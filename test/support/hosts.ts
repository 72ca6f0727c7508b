/**
 * Several hosts on one machine, for multi-host tests: each host is a Linux network
 * namespace with its own address on a private bridge, reachable from the test process
 * (which stays in the root namespace, on the bridge's own address) and from the other
 * hosts, and from nowhere else. A host's processes run inside its namespace, so they
 * bind only its address and its loopback; killing a host kills every process in its
 * namespace, and cutting its link is a partition the host cannot see coming.
 *
 * Needs root (`ip netns`); the kernel here has no netem, so a partition is a link taken
 * down. Everything is torn down at `close()`, and by an exit hook when a test dies
 * first. Names carry the creating pid, so concurrent test files never share a bridge,
 * and a harness whose process died is swept by the next one.
 */
import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { isAlive } from '../../services/common/proc.js';
import { until } from './wait.js';

/**
 * Interfaces and namespaces are named `hy<pid><letter>…` (one letter per harness of the
 * process); interface names have 15 bytes at most.
 */
const PREFIX = 'hy';
let created = 0;

export interface Host {
  /** 1-based. */
  readonly index: number;
  readonly name: string;
  readonly address: string;
  /** Starts a process inside this host's namespace; it dies with the host. */
  spawn(command: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Every process running in this host's namespace (whoever started it). */
  pids(): number[];
  /** kill -9 of every process of the host, as when its machine loses power. */
  killAll(): Promise<void>;
  /** Takes the host's link down: it can reach no one and no one reaches it. */
  cut(): void;
  /** Brings the link back up. */
  heal(): void;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryIp(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    // Already gone.
  }
}

export class Hosts {
  private closed = false;
  private readonly onExit = () => this.teardown();

  private constructor(
    readonly hosts: readonly Host[],
    /** The test process's own address on the hosts' network. */
    readonly rootAddress: string,
    /** The prefix of every name this harness created. */
    readonly id: string,
    private readonly bridge: string,
    private readonly namespaces: readonly string[],
    private readonly hostLinks: readonly string[],
  ) {
    process.once('exit', this.onExit);
  }

  /**
   * Creates `count` hosts on 10.<a>.<b>.0/24, chosen from the pid so concurrent
   * harnesses do not collide; host i is .i, the test process .254.
   */
  static create(count: number): Hosts {
    if (process.getuid?.() !== 0) throw new Error('multi-host tests need root (ip netns)');
    if (count < 1 || count > 9) throw new Error(`1 to 9 hosts, not ${count}`);
    sweepAbandoned();
    const id = `${PREFIX}${process.pid}${String.fromCharCode(97 + (created++ % 26))}`;
    const net = freeSubnet();
    const bridge = `${id}b`;
    const namespaces: string[] = [];
    const hostLinks: string[] = [];
    const hosts: Host[] = [];
    try {
      ip('link', 'add', bridge, 'type', 'bridge');
      ip('addr', 'add', `${net}.254/24`, 'dev', bridge);
      ip('link', 'set', bridge, 'up');
      for (let i = 1; i <= count; i++) {
        const ns = `${id}n${i}`;
        const outside = `${id}h${i}`;
        const inside = `${id}i${i}`;
        ip('netns', 'add', ns);
        namespaces.push(ns);
        ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
        hostLinks.push(outside);
        ip('link', 'set', inside, 'netns', ns);
        ip('link', 'set', outside, 'master', bridge, 'up');
        ip('-n', ns, 'addr', 'add', `${net}.${i}/24`, 'dev', inside);
        ip('-n', ns, 'link', 'set', inside, 'up');
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        hosts.push(makeHost(i, ns, `${net}.${i}`, outside));
      }
    } catch (err) {
      teardownNames(bridge, namespaces, hostLinks);
      throw err;
    }
    return new Hosts(hosts, `${net}.254`, id, bridge, namespaces, hostLinks);
  }

  host(index: number): Host {
    const host = this.hosts[index - 1];
    if (!host) throw new Error(`no host ${index}`);
    return host;
  }

  async close(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.killAll()));
    this.teardown();
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    process.off('exit', this.onExit);
    for (const host of this.hosts) for (const pid of host.pids()) signal(pid, 'SIGKILL');
    teardownNames(this.bridge, this.namespaces, this.hostLinks);
  }
}

function makeHost(index: number, ns: string, address: string, link: string): Host {
  const pids = (): number[] => {
    try {
      return ip('netns', 'pids', ns)
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map(Number);
    } catch {
      return [];
    }
  };
  return {
    index,
    name: `host-${index}`,
    address,
    spawn: (command, args, options = {}) =>
      spawn('ip', ['netns', 'exec', ns, command, ...args], options),
    pids,
    killAll: async () => {
      // A killed process may leave children that were not in the first listing: kill
      // what is listed until nothing is.
      await until(
        `every process of ${ns} gone after kill -9`,
        () => {
          const live = pids();
          for (const pid of live) signal(pid, 'SIGKILL');
          return live.length === 0;
        },
        5000,
      );
    },
    cut: () => ip('link', 'set', link, 'down'),
    heal: () => ip('link', 'set', link, 'up'),
  };
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}

function teardownNames(bridge: string, namespaces: readonly string[], links: readonly string[]) {
  for (const ns of namespaces) {
    try {
      for (const pid of ip('netns', 'pids', ns).split('\n').filter(Boolean)) {
        signal(Number(pid), 'SIGKILL');
      }
    } catch {
      // No such namespace.
    }
    tryIp('netns', 'del', ns);
  }
  // Deleting a namespace destroys its end of a veth pair; the host end may linger.
  for (const link of links) tryIp('link', 'del', link);
  if (bridge) tryIp('link', 'del', bridge);
}

/** A 10.x.y.0/24 no interface of this machine uses, starting from one derived from the pid. */
function freeSubnet(): string {
  const used = ip('-o', '-4', 'addr', 'show');
  for (let n = 0; n < 12_800; n++) {
    const k = (process.pid + n) % 12_800;
    const net = `10.${200 + Math.floor(k / 256)}.${k % 256}`;
    if (!used.includes(` ${net}.`)) return net;
  }
  throw new Error('no free 10.200-249.x.0/24 subnet for test hosts');
}

/** Removes what a harness left behind when its process died without tearing down. */
function sweepAbandoned(): void {
  const owners = new Set<number>();
  const pattern = new RegExp(`^${PREFIX}(\\d+)`);
  for (const ns of ip('netns', 'list').split('\n')) {
    const match = pattern.exec(ns.trim());
    if (match) owners.add(Number(match[1]));
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const match = new RegExp(`^\\d+: ${PREFIX}(\\d+)`).exec(line);
    if (match) owners.add(Number(match[1]));
  }
  for (const owner of owners) {
    if (owner === process.pid || isAlive(owner)) continue;
    const owned = new RegExp(`^${PREFIX}${owner}[a-z]`);
    const namespaces = ip('netns', 'list')
      .split('\n')
      .map((l) => l.trim().split(' ')[0] ?? '')
      .filter((ns) => owned.test(ns));
    const links = ip('-o', 'link', 'show')
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '')
      .filter((name) => owned.test(name));
    // Bridges and host ends of veth pairs alike; a missing name is skipped.
    teardownNames('', namespaces, links);
  }
}
