/**
 * The launchers' view of their processes (control verb `display`), as `status` and
 * `launcher display` fetch and print it.
 */
import { type Bus, type LauncherStatus, Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { ControlCodecsOf } from '../launcher/control.js';
import { CliError, ExitCodes } from './errors.js';
import { formatAge, nameOf, table } from './format.js';
import { type JsonObject, messageJson } from './json.js';

const { LauncherStatus: LauncherStatusMessage, ProcessStatus } = halyard.launcher.v1;
/** A fan-out cannot know how many launchers will answer: it collects replies this long. */
const FAN_OUT_WAIT_MS = 1500;
const DISPLAY_TIMEOUT_MS = 3000;

/** The status of one launcher (`host`), or of every launcher that answers, sorted by host. */
export async function launchers(bus: Bus, host: string | undefined): Promise<LauncherStatus[]> {
  const subject = Subjects.control('launcher', host ?? '*', 'display');
  if (host) {
    try {
      return [await bus.request(subject, {}, ControlCodecsOf.display, DISPLAY_TIMEOUT_MS)];
    } catch (error) {
      throw new CliError(`launcher ${host}: ${(error as Error).message}`, ExitCodes.failed, {
        cause: error,
      });
    }
  }
  const replies = await bus.requestMany(subject, {}, ControlCodecsOf.display, FAN_OUT_WAIT_MS);
  return replies
    .flatMap((r) => (r.ok ? [r.value] : []))
    .sort((a, b) => a.hostId.localeCompare(b.hostId));
}

/** Each launcher and a table of its processes. */
export function launcherTable(list: LauncherStatus[], now: number): string {
  if (list.length === 0) return '  (no launcher answered)';
  return list
    .map((l) => {
      const rows = l.processes.map((p) => [
        `${p.component}#${p.instance}`,
        nameOf(ProcessStatus.State, p.state),
        p.pid ? String(p.pid) : '-',
        p.port ? String(p.port) : '-',
        p.startedAtMs ? formatAge(now - p.startedAtMs) : '-',
        String(p.restarts),
        p.lastExit || '',
      ]);
      return `  host ${l.hostId} (launcher ${l.launcherId}, up ${formatAge(now - l.startedAtMs)})\n${table(
        ['PROCESS', 'STATE', 'PID', 'PORT', 'UPTIME', 'RESTARTS', 'LAST EXIT'],
        rows,
        '    ',
      )}`;
    })
    .join('\n');
}

/** A launcher's status in `--json` output. */
export function launcherJson(status: LauncherStatus): JsonObject {
  return messageJson(LauncherStatusMessage, status);
}
