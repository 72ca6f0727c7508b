/**
 * Protobuf on the wire, zod before trust. A codec validates on the way out (nothing
 * invalid is ever written) and on the way in (nothing invalid is ever handed on).
 */
import type { z } from 'zod';
import { halyard } from '../proto/gen/halyard.js';
import * as schemas from './schemas.js';

/** Where a message came from, for errors and logs. */
export interface MessageOrigin {
  /** Subject (stream messages) or bucket key (KV entries). */
  readonly subject: string;
  /** Stream sequence or KV revision. */
  readonly seq?: number;
}

/** A bus message that does not decode or validate. Says which message and why. */
export class InvalidMessageError extends Error {
  override readonly name = 'InvalidMessageError';
  constructor(
    readonly typeName: string,
    readonly reason: string,
    readonly origin?: MessageOrigin,
    options?: ErrorOptions,
  ) {
    const where = origin ? ` on ${origin.subject}${origin.seq ? ` (seq ${origin.seq})` : ''}` : '';
    super(`invalid ${typeName}${where}: ${reason}`, options);
  }
}

interface ProtoType {
  encode(message: object): { finish(): Uint8Array };
  decode(bytes: Uint8Array): object;
  toObject(message: object, options: { defaults: boolean; longs: NumberConstructor }): object;
}

export interface Codec<T> {
  /** Fully qualified protobuf type name, carried in the `Halyard-Type` header. */
  readonly typeName: string;
  /** Validates, then encodes. Throws InvalidMessageError naming the field. */
  encode(value: T): Uint8Array;
  /** Decodes, then validates. `type` is the header value when the transport has headers. */
  decode(bytes: Uint8Array, origin: MessageOrigin, type?: string): T;
}

function describe(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.join('.') || '(message)'}: ${issue.message}`)
    .join('; ');
}

function protoCodec<S extends z.ZodType<object>>(
  typeName: string,
  type: ProtoType,
  schema: S,
): Codec<z.infer<S>> {
  const validate = (value: unknown, origin?: MessageOrigin): z.infer<S> => {
    const result = schema.safeParse(value);
    if (!result.success) throw new InvalidMessageError(typeName, describe(result.error), origin);
    return result.data;
  };
  return {
    typeName,
    encode: (value) => type.encode(validate(value)).finish(),
    decode(bytes, origin, header) {
      if (header !== undefined && header !== typeName) {
        throw new InvalidMessageError(typeName, `type header is "${header}"`, origin);
      }
      let message: object;
      try {
        // A plain Uint8Array view (no copy) so bytes fields come out as Uint8Array
        // whichever transport buffer type the message arrived in.
        message = type.decode(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      } catch (error) {
        throw new InvalidMessageError(
          typeName,
          `not protobuf: ${(error as Error).message}`,
          origin,
          { cause: error },
        );
      }
      return validate(type.toObject(message, { defaults: true, longs: Number }), origin);
    },
  };
}

const { discovery, affinity, cache, launcher, gateway, lease, config } = halyard;

export const Codecs = {
  serviceInstance: protoCodec(
    'halyard.discovery.v1.ServiceInstance',
    discovery.v1.ServiceInstance,
    schemas.serviceInstance,
  ),
  affinityPreference: protoCodec(
    'halyard.affinity.v1.AffinityPreference',
    affinity.v1.AffinityPreference,
    schemas.affinityPreference,
  ),
  cacheEntry: protoCodec('halyard.cache.v1.CacheEntry', cache.v1.CacheEntry, schemas.cacheEntry),
  lease: protoCodec('halyard.lease.v1.Lease', lease.v1.Lease, schemas.lease),
  hostChildren: protoCodec(
    'halyard.launcher.v1.HostChildren',
    launcher.v1.HostChildren,
    schemas.hostChildren,
  ),
  rollout: protoCodec('halyard.launcher.v1.Rollout', launcher.v1.Rollout, schemas.rollout),
  lifecycleEvent: protoCodec(
    'halyard.launcher.v1.LifecycleEvent',
    launcher.v1.LifecycleEvent,
    schemas.lifecycleEvent,
  ),
  gatewayEvent: protoCodec(
    'halyard.gateway.v1.GatewayEvent',
    gateway.v1.GatewayEvent,
    schemas.gatewayEvent,
  ),
  discoveryEvent: protoCodec(
    'halyard.discovery.v1.DiscoveryEvent',
    discovery.v1.DiscoveryEvent,
    schemas.discoveryEvent,
  ),
  displayRequest: protoCodec(
    'halyard.launcher.v1.DisplayRequest',
    launcher.v1.DisplayRequest,
    schemas.displayRequest,
  ),
  refreshRequest: protoCodec(
    'halyard.launcher.v1.RefreshRequest',
    launcher.v1.RefreshRequest,
    schemas.refreshRequest,
  ),
  componentRequest: protoCodec(
    'halyard.launcher.v1.ComponentRequest',
    launcher.v1.ComponentRequest,
    schemas.componentRequest,
  ),
  launcherStatus: protoCodec(
    'halyard.launcher.v1.LauncherStatus',
    launcher.v1.LauncherStatus,
    schemas.launcherStatus,
  ),
  commandResult: protoCodec(
    'halyard.launcher.v1.CommandResult',
    launcher.v1.CommandResult,
    schemas.commandResult,
  ),
  meshConfigVersion: protoCodec(
    'halyard.config.v1.MeshConfigVersion',
    config.v1.MeshConfigVersion,
    schemas.meshConfigVersion,
  ),
} as const;
