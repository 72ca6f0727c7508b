/**
 * `--json` output. Messages of the contracts are written in protobuf's JSON form: enum
 * values by name (`"state": "READY"`, as `halyard call` prints replies), 64-bit integers
 * as numbers, every field present.
 */
import type protobuf from 'protobufjs';

/** A JSON object of `--json` output. */
export type JsonObject = { [k: string]: unknown };

/** A generated message class of proto/gen (halyard.launcher.v1.LauncherStatus…). */
export interface MessageClass {
  fromObject(object: JsonObject): unknown;
  toObject(message: never, options?: protobuf.IConversionOptions): JsonObject;
}

/** The protobuf JSON form of a decoded bus message. */
export function messageJson(type: MessageClass, value: object): JsonObject {
  return type.toObject(type.fromObject(value as JsonObject) as never, {
    enums: String,
    longs: Number,
    defaults: true,
  });
}

/** One JSON document, indented: the whole output of a command. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** One JSON value per line: for streams of results (events, replies). */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
