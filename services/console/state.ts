/**
 * What the console shows, kept in memory and fed by the bus: local views of the
 * registry and affinity buckets, a live subscription to the events stream, the
 * launchers' `display` replies and the streams' health. Every browser shares this one
 * model, so a page view never reaches the bus; listeners hear of each change.
 */
import {
  AffinityBucket,
  type AffinityPreference,
  type Bus,
  type BusEvent,
  type DeliveryMeta,
  Keys,
  type LauncherStatus,
  type LocalView,
  RegistryBucket,
  type ServiceInstance,
  type StreamHealth,
  type Subscription,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { eventJson } from '../cli/commands/events.js';
import { type JsonObject, messageJson } from '../cli/json.js';
import { launcherJson, launchers } from '../cli/launchers.js';
import { DISCOVERY_SERVICE_ID } from '../discovery/health-checker.js';

const { InstanceStatus, ServiceInstance: ServiceInstanceMessage } = halyard.discovery.v1;
const { LifecycleEvent } = halyard.launcher.v1;
const { State } = halyard.launcher.v1.ProcessStatus;
const { GatewayEvent } = halyard.gateway.v1;

/** How far back the live tail starts when the console starts. */
const EVENT_LOOKBACK_MS = 10 * 60_000;
/** Events kept for pages that open later (the newest). */
const EVENTS_KEPT = 1000;
/** Timeline entries kept per service (the newest). */
const TIMELINE_KEPT = 200;
/** Every launcher is asked this often; the one whose process changed, at once. */
const LAUNCHERS_EVERY_MS = 5000;
const STREAMS_EVERY_MS = 5000;
/** A launcher that has not answered for this long is shown as unreachable… */
const LAUNCHER_STALE_MS = 15_000;
/** …and after this long, forgotten (a host taken out of service). */
const LAUNCHER_FORGOTTEN_MS = 10 * 60_000;

/** The process state a lifecycle event leaves behind, until the launcher's next display. */
const stateAfter: Record<number, string> = {
  [LifecycleEvent.Kind.STARTING]: 'STARTING',
  [LifecycleEvent.Kind.STARTED]: 'RUNNING',
  [LifecycleEvent.Kind.READY]: 'READY',
  [LifecycleEvent.Kind.EXITED]: 'EXITED',
  [LifecycleEvent.Kind.RESTARTING]: 'BACKING_OFF',
  [LifecycleEvent.Kind.GAVE_UP]: 'GAVE_UP',
  [LifecycleEvent.Kind.STOPPING]: 'STOPPING',
  [LifecycleEvent.Kind.STOPPED]: 'STOPPED',
};

export interface ConsoleEvent extends JsonObject {
  readonly seq: number;
  readonly source: string;
  /** The host it concerns (lifecycle events; else the instance's host when known). */
  readonly host: string;
  /** The service or launcher component it concerns, '' when none. */
  readonly service: string;
}

export interface TimelineEntry {
  readonly atMs: number;
  readonly instanceId: string;
  /** UP, DOWN, DRAINING, …, REMOVED, EXPIRED, EJECTED, RETURNED. */
  readonly what: string;
}

interface ProcessView {
  component: string;
  instance: number;
  state: string;
  pid: number;
  port: number;
  startedAtMs: number;
  restarts: number;
  lastExit: string;
  /** When an event last changed it: a display asked before then is older news. */
  eventAtMs: number;
}

interface LauncherView {
  hostId: string;
  launcherId: string;
  startedAtMs: number;
  version: string;
  processes: ProcessView[];
  lastSeenMs: number;
}

/** The whole model as the page receives it (JSON). */
export interface ConsoleSnapshot {
  readonly now: number;
  readonly server: JsonObject;
  readonly services: Array<{
    readonly serviceId: string;
    readonly instances: JsonObject[];
    /** The `lb.*` settings of the service's newest registration. */
    readonly lb: Record<string, string>;
    /** Live sticky preferences per instance: counts only. */
    readonly stickyUsers: Record<string, number>;
    readonly timeline: TimelineEntry[];
  }>;
  readonly discoveryReplicas: JsonObject[];
  readonly gateways: JsonObject[];
  readonly launchers: JsonObject[];
  readonly streams: StreamHealth[];
}

export class ConsoleState {
  private registry!: LocalView<ServiceInstance>;
  private affinity!: LocalView<AffinityPreference>;
  private subscription: Subscription | undefined;
  private readonly hosts = new Map<string, LauncherView>();
  private streamHealth: StreamHealth[] = [];
  private readonly recent: ConsoleEvent[] = [];
  private readonly timelines = new Map<string, TimelineEntry[]>();
  private readonly changeListeners = new Set<() => void>();
  private readonly eventListeners = new Set<(event: ConsoleEvent) => void>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly hostRefreshes = new Map<string, NodeJS.Timeout>();
  private lastSeq = 0;
  private stopped = false;

  private constructor(private readonly bus: Bus) {}

  static async start(bus: Bus): Promise<ConsoleState> {
    const state = new ConsoleState(bus);
    await state.run();
    return state;
  }

  private async run(): Promise<void> {
    this.registry = (await this.bus.store(RegistryBucket)).view();
    this.affinity = (await this.bus.store(AffinityBucket)).view();
    await Promise.all([this.registry.ready, this.affinity.ready]);
    const now = Date.now();
    for (const i of this.registry.values()) {
      this.mark(i.serviceId, { atMs: now, instanceId: i.instanceId, what: statusName(i.status) });
    }
    this.registry.onChange((change) => {
      if (change.op === 'put') {
        const v = change.value;
        if (change.previous?.status !== v.status) {
          this.mark(v.serviceId, {
            atMs: Date.now(),
            instanceId: v.instanceId,
            what: statusName(v.status),
          });
        }
      } else {
        const p = change.previous;
        this.mark(p.serviceId, {
          atMs: Date.now(),
          instanceId: p.instanceId,
          what: change.reason === 'expired' ? 'EXPIRED' : 'REMOVED',
        });
      }
      this.changed();
    });
    this.affinity.onChange(() => this.changed());
    this.subscription = await this.bus.subscribe(
      { kind: 'events', from: { time: new Date(now - EVENT_LOOKBACK_MS) } },
      (delivery, meta) => this.receive(delivery as BusEvent, meta),
    );
    await Promise.all([this.refreshLaunchers(), this.refreshStreams()]);
    this.timers.push(
      setInterval(() => void this.refreshLaunchers(), LAUNCHERS_EVERY_MS),
      setInterval(() => void this.refreshStreams(), STREAMS_EVERY_MS),
    );
  }

  /** Calls `listener` after every change of the model; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Calls `listener` with every new event; returns the unsubscribe function. */
  onEvent(listener: (event: ConsoleEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** The newest events, oldest first. */
  recentEvents(): ConsoleEvent[] {
    return [...this.recent];
  }

  /** An event as the page shows and filters it. */
  describe(delivery: BusEvent, meta: Pick<DeliveryMeta, 'seq' | 'subject'>): ConsoleEvent {
    const json = eventJson(delivery, meta);
    if (delivery.source === 'lifecycle') {
      const e = delivery.event;
      return { ...json, seq: meta.seq, source: 'lifecycle', host: e.hostId, service: e.component };
    }
    const e = delivery.event;
    const instance =
      e.serviceId && e.instanceId
        ? this.registry.get(Keys.registry(e.serviceId, e.instanceId))
        : undefined;
    return {
      ...json,
      seq: meta.seq,
      source: delivery.source,
      host: instance?.hostId ?? '',
      service: e.serviceId,
    };
  }

  snapshot(): ConsoleSnapshot {
    const now = Date.now();
    const instanceJson = (i: ServiceInstance): JsonObject => ({
      ...messageJson(ServiceInstanceMessage, i),
      leaseAgeMs: now - i.renewedAtMs,
    });
    const all = [...this.registry.values()].sort(
      (a, b) => a.serviceId.localeCompare(b.serviceId) || a.instanceId.localeCompare(b.instanceId),
    );
    const sticky = new Map<string, Record<string, number>>();
    for (const p of this.affinity.values()) {
      const counts = sticky.get(p.serviceId) ?? {};
      counts[p.instanceId] = (counts[p.instanceId] ?? 0) + 1;
      sticky.set(p.serviceId, counts);
    }
    const serviceIds = [...new Set(all.map((i) => i.serviceId))].filter(
      (id) => id !== DISCOVERY_SERVICE_ID,
    );
    const launcherList = [...this.hosts.values()].sort((a, b) => a.hostId.localeCompare(b.hostId));
    return {
      now,
      server: { ...this.bus.server, connected: this.bus.connected },
      services: serviceIds.map((serviceId) => {
        const instances = all.filter((i) => i.serviceId === serviceId);
        const newest = instances.reduce((a, b) => (b.registeredAtMs > a.registeredAtMs ? b : a));
        return {
          serviceId,
          instances: instances.map(instanceJson),
          lb: Object.fromEntries(
            Object.entries(newest.metadata).filter(([key]) => key.startsWith('lb.')),
          ),
          stickyUsers: sticky.get(serviceId) ?? {},
          timeline: this.timelines.get(serviceId) ?? [],
        };
      }),
      discoveryReplicas: all.filter((i) => i.serviceId === DISCOVERY_SERVICE_ID).map(instanceJson),
      gateways: launcherList.flatMap((l) =>
        l.processes
          .filter((p) => p.component === 'gateway')
          .map((p) => ({ host: l.hostId, instance: p.instance, port: p.port, state: p.state })),
      ),
      launchers: launcherList.map((l) => ({
        ...l,
        processes: l.processes.map(({ eventAtMs: _, ...p }) => p),
        stale: now - l.lastSeenMs > LAUNCHER_STALE_MS,
      })),
      streams: this.streamHealth,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const timer of this.hostRefreshes.values()) clearTimeout(timer);
    this.registry?.stop();
    this.affinity?.stop();
    await this.subscription?.stop();
  }

  private receive(delivery: BusEvent, meta: DeliveryMeta): void {
    // A consumer recreated after a hiccup may deliver the last message again.
    if (meta.seq <= this.lastSeq) return;
    this.lastSeq = meta.seq;
    const event = this.describe(delivery, meta);
    this.recent.push(event);
    if (this.recent.length > EVENTS_KEPT) this.recent.shift();
    this.apply(delivery);
    for (const listener of this.eventListeners) listener(event);
  }

  private changed(): void {
    for (const listener of this.changeListeners) listener();
  }

  private mark(serviceId: string, entry: TimelineEntry): void {
    const list = this.timelines.get(serviceId) ?? [];
    list.push(entry);
    if (list.length > TIMELINE_KEPT) list.shift();
    this.timelines.set(serviceId, list);
  }

  /** What an event tells before anyone is asked: a process's new state, an ejection. */
  private apply(delivery: BusEvent): void {
    if (delivery.source === 'gateway') {
      const e = delivery.event;
      const what =
        e.kind === GatewayEvent.Kind.INSTANCE_EJECTED
          ? 'EJECTED'
          : e.kind === GatewayEvent.Kind.INSTANCE_RETURNED
            ? 'RETURNED'
            : undefined;
      if (what && e.serviceId) {
        this.mark(e.serviceId, { atMs: Number(e.occurredAtMs), instanceId: e.instanceId, what });
        this.changed();
      }
      return;
    }
    if (delivery.source !== 'lifecycle') return;
    const e = delivery.event;
    const host = this.hosts.get(e.hostId);
    const process = host?.processes.find(
      (p) => p.component === e.component && p.instance === e.instance,
    );
    if (process && Number(e.occurredAtMs) >= process.eventAtMs) {
      process.state = stateAfter[e.kind] ?? process.state;
      process.eventAtMs = Number(e.occurredAtMs);
      if (e.pid) process.pid = e.pid;
      if (e.kind === LifecycleEvent.Kind.STARTED) process.startedAtMs = Number(e.occurredAtMs);
      if (e.kind === LifecycleEvent.Kind.EXITED) {
        process.lastExit = e.signal ? `signal ${e.signal}` : `code ${e.exitCode}`;
      }
      this.changed();
    }
    // The launcher itself says the rest (restart counts, ports); ask it once things settle.
    if (this.stopped || this.hostRefreshes.has(e.hostId)) return;
    this.hostRefreshes.set(
      e.hostId,
      setTimeout(() => {
        this.hostRefreshes.delete(e.hostId);
        void this.refreshLaunchers(e.hostId);
      }, 200),
    );
  }

  private async refreshLaunchers(host?: string): Promise<void> {
    const asked = Date.now();
    let replies: LauncherStatus[];
    try {
      replies = await launchers(this.bus, host);
    } catch {
      return; // A launcher that does not answer turns stale; the next round asks again.
    }
    if (this.stopped) return;
    for (const status of replies) this.merge(status, asked);
    if (!host) {
      for (const [id, l] of this.hosts) {
        if (asked - l.lastSeenMs > LAUNCHER_FORGOTTEN_MS) this.hosts.delete(id);
      }
    }
    this.changed();
  }

  /** Takes a launcher's display, except for processes an event changed since it was asked. */
  private merge(status: LauncherStatus, askedAtMs: number): void {
    const json = launcherJson(status) as { processes: Array<{ state: string }> };
    const known = this.hosts.get(status.hostId);
    const processes = status.processes.map((p, i): ProcessView => {
      const previous = known?.processes.find(
        (k) => k.component === p.component && k.instance === p.instance,
      );
      const fresh: ProcessView = {
        component: p.component,
        instance: p.instance,
        state: json.processes[i]?.state ?? String(State[p.state]),
        pid: p.pid,
        port: p.port,
        startedAtMs: p.startedAtMs,
        restarts: p.restarts,
        lastExit: p.lastExit,
        eventAtMs: previous?.eventAtMs ?? 0,
      };
      if (previous && previous.eventAtMs > askedAtMs) {
        return { ...fresh, state: previous.state, pid: previous.pid, lastExit: previous.lastExit };
      }
      return fresh;
    });
    this.hosts.set(status.hostId, {
      hostId: status.hostId,
      launcherId: status.launcherId,
      startedAtMs: status.startedAtMs,
      version: status.version,
      processes,
      lastSeenMs: Date.now(),
    });
  }

  private async refreshStreams(): Promise<void> {
    try {
      this.streamHealth = await this.bus.streams();
      this.changed();
    } catch {
      // Between bus nodes: the next round asks again, the page keeps the last answer.
    }
  }
}

function statusName(status: number): string {
  return String(InstanceStatus[status] ?? status);
}
