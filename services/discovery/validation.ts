/**
 * What a Registry request must satisfy before anything is written. Every rejection
 * names the request field (proto spelling, as any client language sees it).
 */
import { status } from '@grpc/grpc-js';
import { address, grpcServiceName, id, type ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { parseInstanceMetadata } from '../common/lb-metadata.js';
import { invalid, RegistryError } from './errors.js';

const { InstanceStatus } = halyard.discovery.v1;

/** Registered service ids are DNS-label-like so they read well in routes and logs. */
const SERVICE_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

export interface LeaseBounds {
  readonly defaultSeconds: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
}

export const DEFAULT_LEASES: LeaseBounds = { defaultSeconds: 15, minSeconds: 3, maxSeconds: 300 };

/** Renew three times per lease, so two lost renewals in a row are survived. */
export function renewIntervalSeconds(leaseSeconds: number): number {
  return Math.max(1, Math.floor(leaseSeconds / 3));
}

export interface InstanceRef {
  readonly serviceId: string;
  readonly instanceId: string;
}

type Raw = Record<string, unknown> | null | undefined;

function text(raw: Raw, name: string): string {
  const value = raw?.[name];
  return typeof value === 'string' ? value : '';
}

function checkServiceId(value: string, field: string): string {
  if (value === '') throw invalid(field, 'is required');
  if (!SERVICE_ID.test(value)) {
    throw invalid(field, `"${value}" must match [a-z0-9][a-z0-9-]* (at most 64 characters)`);
  }
  return value;
}

function checkInstanceId(value: string, field: string): string {
  if (value === '') throw invalid(field, 'is required');
  if (!id.safeParse(value).success) {
    throw invalid(field, `"${value}" must be 1–64 characters of A–Z a–z 0–9 _ -`);
  }
  return value;
}

/** A settable status: a known value other than UNSPECIFIED. */
export function checkStatus(value: unknown, field: string): number {
  if (typeof value !== 'number' || !(value in InstanceStatus) || value === 0) {
    throw invalid(
      field,
      `${String(value)} is not a known status (STARTING, UP, DRAINING, DOWN, OUT_OF_SERVICE)`,
    );
  }
  return value;
}

export function checkServiceFilter(value: string, field = 'service_id'): string {
  return value === '' ? value : checkServiceId(value, field);
}

export function validateRef(ref: Raw, field = 'instance'): InstanceRef {
  if (!ref) throw invalid(field, 'is required');
  return {
    serviceId: checkServiceId(text(ref, 'serviceId'), `${field}.service_id`),
    instanceId: checkInstanceId(text(ref, 'instanceId'), `${field}.instance_id`),
  };
}

/**
 * A registration as it will be stored: defaults applied (status UP, the default
 * lease), timestamps set by discovery, never by the caller.
 */
export function validateRegistration(raw: Raw, bounds: LeaseBounds, now: number): ServiceInstance {
  if (!raw) throw invalid('instance', 'is required');
  const ref = validateRef(raw);
  const addr = text(raw, 'address');
  if (addr === '') throw invalid('instance.address', 'is required');
  if (!address.safeParse(addr).success) {
    throw invalid('instance.address', `"${addr}" must be host:port with a port 1–65535`);
  }
  const grpcServices = Array.isArray(raw.grpcServices) ? (raw.grpcServices as unknown[]) : [];
  if (grpcServices.length > 256) throw invalid('instance.grpc_services', 'at most 256 names');
  grpcServices.forEach((name, i) => {
    if (typeof name !== 'string' || !grpcServiceName.safeParse(name).success) {
      throw invalid(
        `instance.grpc_services[${i}]`,
        `"${String(name)}" must be a gRPC service name like acme.orders.v1.Orders`,
      );
    }
  });
  const instanceStatus =
    raw.status === 0 || raw.status === undefined ? InstanceStatus.UP : raw.status;
  checkStatus(instanceStatus, 'instance.status');
  const metadata = (raw.metadata ?? {}) as Record<string, string>;
  for (const [key, value] of Object.entries(metadata)) {
    if (key.length > 256 || value.length > 4096) {
      throw invalid(
        `instance.metadata["${key.slice(0, 64)}"]`,
        'keys up to 256, values up to 4096 characters',
      );
    }
  }
  const parsed = parseInstanceMetadata(metadata);
  if (!parsed.ok) {
    const problems = parsed.problems.map((problem) => `instance.${problem}`);
    const first = problems[0] ?? 'instance.metadata: invalid';
    throw new RegistryError(
      status.INVALID_ARGUMENT,
      problems.join('; '),
      first.slice(0, first.indexOf(':')),
    );
  }
  const leaseSeconds = typeof raw.leaseSeconds === 'number' ? raw.leaseSeconds : 0;
  const lease = leaseSeconds === 0 ? bounds.defaultSeconds : leaseSeconds;
  if (!Number.isInteger(lease) || lease < bounds.minSeconds || lease > bounds.maxSeconds) {
    throw invalid(
      'instance.lease_seconds',
      `${leaseSeconds} is outside ${bounds.minSeconds}–${bounds.maxSeconds} (0 takes the default ${bounds.defaultSeconds})`,
    );
  }
  const optionalToken = (name: string, field: string) => {
    const value = text(raw, name);
    if (value !== '' && !id.safeParse(value).success) {
      throw invalid(field, `"${value}" must be 1–64 characters of A–Z a–z 0–9 _ -`);
    }
    return value;
  };
  const version = text(raw, 'version');
  if (version.length > 128) throw invalid('instance.version', 'at most 128 characters');
  return {
    serviceId: ref.serviceId,
    instanceId: ref.instanceId,
    address: addr,
    grpcServices: grpcServices as string[],
    status: instanceStatus as ServiceInstance['status'],
    metadata: { ...metadata },
    leaseSeconds: lease,
    registeredAtMs: now,
    renewedAtMs: now,
    launcherId: optionalToken('launcherId', 'instance.launcher_id'),
    hostId: optionalToken('hostId', 'instance.host_id'),
    version,
  };
}
