/**
 * An extender: counts how often each component exited, across the whole mesh, and
 * survives its own crashes with every event counted exactly once.
 *
 *   node --enable-source-maps dist/examples/restart-counter.js --servers nats://127.0.0.1:4222 --state ./exits.json
 *
 * The bus is found as the `halyard` command finds it: `--servers`, else HALYARD_NATS. On a
 * locked bus it connects as the extender role, from the variables every component reads
 * (HALYARD_NATS_ROLES=<dir> HALYARD_NATS_ROLE=extender, or HALYARD_NATS_CA, _CERT, _KEY,
 * _NKEY and _ROLE: services/common/bus-settings.ts).
 *
 * How it gets "exactly once in effect" from at-least-once delivery:
 *   - a durable subscription resumes after a crash where it left off;
 *   - the state and the sequence of the last event counted are written together,
 *     atomically (write a temp file, rename), before the event is acknowledged;
 *   - an event redelivered after a crash (counted, not yet acknowledged) has a
 *     sequence at or below the saved one and is skipped.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { Bus } from '../bus/index.js';
import { halyard } from '../proto/gen/halyard.js';
import { busOptions, busSecurityFromEnv } from '../services/common/bus-settings.js';

const options = new Command('restart-counter')
  .description('counts the exits of every component in the mesh')
  .addOption(
    new Option('--servers <urls>', 'comma-separated NATS URLs')
      .env('HALYARD_NATS')
      .default('nats://127.0.0.1:4222'),
  )
  .option('--state <file>', 'where the counts are kept', './restart-counter.json')
  .option('--durable <name>', 'name of the durable subscription', 'restart-counter')
  .parse()
  .opts<{ servers: string; state: string; durable: string }>();

interface State {
  lastSeq: number;
  exits: Record<string, number>;
}

const stateFile = options.state;

function load(): State {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8')) as State;
  } catch {
    return { lastSeq: 0, exits: {} };
  }
}

function save(state: State): void {
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(state));
  renameSync(`${stateFile}.tmp`, stateFile);
}

const state = load();
const bus = await Bus.connect(
  busOptions(
    { ...busSecurityFromEnv(), servers: options.servers.split(',') },
    `example-${options.durable}`,
  ),
);

const subscription = await bus.subscribe(
  { kind: 'lifecycle', durable: options.durable, from: 'all', prefetch: 32 },
  ({ event }, { seq }) => {
    if (seq <= state.lastSeq) return; // counted before a crash; acknowledge again, count never twice
    if (event.kind === halyard.launcher.v1.LifecycleEvent.Kind.EXITED) {
      state.exits[event.component] = (state.exits[event.component] ?? 0) + 1;
    }
    state.lastSeq = seq;
    save(state);
  },
);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    await subscription.stop();
    await bus.close();
  });
}
