/**
 * The rollout records of the mesh configuration versions, as `status` and `rollout`
 * read and print them: where each version's rollout is, and which version each host
 * runs.
 */
import { type Bus, type HostRollout, type Rollout, RolloutsBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { formatAge, nameOf, table } from './format.js';
import { type JsonObject, messageJson } from './json.js';

const { Rollout: RolloutMessage, HostRollout: HostRolloutMessage } = halyard.launcher.v1;
const HostState = HostRolloutMessage.State;
const RolloutState = RolloutMessage.State;

/** Every rollout record, oldest version first. */
export async function rolloutRecords(bus: Bus): Promise<Rollout[]> {
  const view = (await bus.store(RolloutsBucket)).view();
  try {
    await view.ready;
    return [...view.values()].sort((a, b) => a.version - b.version);
  } finally {
    view.stop();
  }
}

/** Where one host stands: the newest version it runs, and what it says of the newest it knows. */
export interface HostConfigState {
  readonly hostId: string;
  /** The newest version it applied (0: none). */
  readonly applied: number;
  /** The newest version it has an entry for, and that entry. */
  readonly version: number;
  readonly entry: HostRollout;
  /** Behind the newest version, or not APPLIED there. */
  readonly lagging: boolean;
}

/** Each host that ever joined a rollout, sorted by host id, against version `latest`. */
export function hostConfigStates(records: Rollout[], latest: number): HostConfigState[] {
  const hosts = new Map<string, HostConfigState>();
  for (const record of records) {
    for (const entry of record.hosts) {
      const before = hosts.get(entry.hostId);
      const applied = entry.state === HostState.APPLIED ? record.version : (before?.applied ?? 0);
      hosts.set(entry.hostId, {
        hostId: entry.hostId,
        applied,
        version: record.version,
        entry,
        lagging: record.version < latest || entry.state !== HostState.APPLIED,
      });
    }
  }
  return [...hosts.values()].sort((a, b) => a.hostId.localeCompare(b.hostId));
}

/** `rolling`, `done`, `halted`, `aborted`: a rolling record whose hosts all applied it is done. */
export function rolloutPhase(record: Rollout): string {
  if (
    record.state === RolloutState.ROLLING &&
    record.hosts.length > 0 &&
    record.hosts.every((h) => h.state === HostState.APPLIED)
  ) {
    return 'done';
  }
  return nameOf(RolloutState, record.state);
}

/** The hosts of a rollout in turn order, with their state, reason and age. */
export function rolloutText(record: Rollout, now: number): string {
  const head = `ROLLOUT of version ${record.version}: ${rolloutPhase(record)}${record.reason ? ` (${record.reason})` : ''}`;
  const rows = record.hosts.map((h) => [
    h.hostId,
    nameOf(HostState, h.state),
    formatAge(now - h.updatedAtMs),
    h.reason,
  ]);
  return `${head}\n${table(['HOST', 'STATE', 'SINCE', 'DETAIL'], rows)}`;
}

/** Hosts against the newest version: which one each runs, and why a lagging one is behind. */
export function hostConfigText(states: HostConfigState[], latest: number): string {
  if (states.length === 0) return '  (no launcher follows the mesh configuration on the bus)';
  return table(
    ['HOST', 'RUNS', 'STATE', 'DETAIL'],
    states.map((s) => [
      s.hostId,
      s.applied ? `v${s.applied}` : '-',
      s.lagging
        ? s.version < latest
          ? `lagging (knows only v${s.version})`
          : `${nameOf(HostState, s.entry.state)} (v${s.version})`
        : 'current',
      s.lagging ? s.entry.reason : '',
    ]),
  );
}

export function rolloutJson(record: Rollout): JsonObject {
  return { ...messageJson(RolloutMessage, record), phase: rolloutPhase(record) };
}

export function hostConfigJson(state: HostConfigState): JsonObject {
  return { ...state, entry: messageJson(HostRolloutMessage, state.entry) };
}
