/**
 * h2load against gRPC: the request body it sends (an Echo request in gRPC's
 * length-prefixed framing) and what it reports of a run (its summary line and the
 * per-request latencies of its log file).
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { halyard } from '../proto/gen/halyard.js';

/** Writes `request` as one framed gRPC message into `dir`, for h2load's `-d`. */
export function echoRequestFile(dir: string, name: string, request: object): string {
  const { EchoRequest } = halyard.testing.v1;
  const bytes = EchoRequest.encode(EchoRequest.fromObject(request)).finish();
  const framed = Buffer.alloc(5 + bytes.length);
  framed.writeUInt32BE(bytes.length, 1);
  framed.set(bytes, 5);
  const file = join(dir, `${name}-${bytes.length}.bin`);
  writeFileSync(file, framed);
  return file;
}

export interface H2loadRun {
  readonly rps: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Every request's latency in ms, ascending. */
  readonly latenciesMs: number[];
}

/** Reads one run from h2load's output and its `--log-file` (which it then removes). */
export function readH2loadRun(stdout: string, logFile: string): H2loadRun {
  const figure = (pattern: RegExp) => Number(pattern.exec(stdout)?.[1] ?? Number.NaN);
  const latenciesMs = readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    // Columns: start time, status, latency in µs.
    .map((line) => Number(line.split('\t')[2]) / 1000)
    .sort((a, b) => a - b);
  rmSync(logFile);
  return {
    rps: figure(/finished in [\d.]+s, ([\d.]+) req\/s/),
    succeeded: figure(/requests: .* (\d+) succeeded/),
    failed: figure(/requests: .* (\d+) failed/),
    latenciesMs,
  };
}
