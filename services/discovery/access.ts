/**
 * Who may call the Registry and what for. A caller is identified by
 * services/common/callers.ts (a verified client certificate's subject CN, or a service
 * token whose SHA-256 the config lists); its grant says which service ids it may
 * register, renew, deregister and set the status of, which gRPC service names each of
 * those may claim, and whether it may read (`List`, `Watch`). A caller without a grant
 * may do nothing.
 *
 * ```yaml
 * tokens:
 *   - { sha256: 9f86d08…, identity: greeter }
 * grants:
 *   greeter:                                  # a token identity or a certificate CN
 *     services: { greeter: [demo.greeter.v1.Greeter] }
 *   billing-deployer:
 *     services: { billing: ["acme.billing.*"], billing-admin: ["acme.billing.admin.*"] }
 *   dashboards: { read: true }
 * ```
 *
 * A pattern is a name, or a prefix followed by `*` (`acme.billing.*`, `billing-*`, `*`).
 */
import { status } from '@grpc/grpc-js';
import { z } from 'zod';
import {
  type Caller,
  type CallerCall,
  CallerError,
  Callers,
  tokenList,
} from '../common/callers.js';
import { RegistryError } from './errors.js';

const identity = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\s*]+$/, 'must be a non-empty name without spaces or *');
const pattern = (what: string, name: RegExp) =>
  z
    .string()
    .refine(
      (value) => value === '*' || name.test(value.endsWith('*') ? value.slice(0, -1) : value),
      `must be a ${what}, or a prefix of one followed by *`,
    );
const serviceIdPattern = pattern('service id', /^[a-z0-9][a-z0-9-]{0,63}$/);
const grpcNamePattern = pattern('gRPC service name', /^[A-Za-z_][A-Za-z0-9_.]*$/);

const grant = z.strictObject({
  /** Service id (pattern) → the gRPC service names (patterns) it may claim. */
  services: z.record(serviceIdPattern, z.array(grpcNamePattern)).default({}),
  /** `List` and `Watch`. */
  read: z.boolean().default(false),
});

export const accessSettings = {
  tokens: tokenList('identity', identity),
  grants: z.record(identity, grant).default({}),
};

export interface AccessOptions {
  readonly tokens: ReadonlyArray<{ readonly sha256: string; readonly identity: string }>;
  readonly grants: Readonly<Record<string, z.infer<typeof grant>>>;
}

const matches = (pattern: string, name: string) =>
  pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;

/** Refusals carry no field: they are about the caller, not the request's shape. */
const refuse = (code: status, message: string) => new RegistryError(code, message);

export class RegistryAccess {
  private readonly callers: Callers;

  constructor(private readonly options: AccessOptions) {
    this.callers = new Callers(options.tokens);
  }

  /** Whether any identity is granted anything: without, every call is refused. */
  get empty(): boolean {
    return Object.keys(this.options.grants).length === 0;
  }

  /** The caller, or UNAUTHENTICATED / PERMISSION_DENIED. */
  identify(call: CallerCall): Caller {
    try {
      return this.callers.identify(call);
    } catch (error) {
      if (error instanceof CallerError) throw refuse(error.code, error.message);
      throw error;
    }
  }

  requireRead(caller: Caller): void {
    if (this.options.grants[caller.identity]?.read !== true) {
      throw refuse(
        status.PERMISSION_DENIED,
        `${describe(caller)} has no read grant: it may not list or watch the registry`,
      );
    }
  }

  /** May the caller register, renew, deregister or set the status of `serviceId`'s instances? */
  requireService(caller: Caller, serviceId: string): void {
    if (this.claimable(caller, serviceId) === undefined) {
      throw refuse(
        status.PERMISSION_DENIED,
        `${describe(caller)} may not act for service ${serviceId}`,
      );
    }
  }

  /** May the caller's `serviceId` claim these gRPC service names? */
  requireClaims(caller: Caller, serviceId: string, grpcServices: readonly unknown[]): void {
    const allowed = this.claimable(caller, serviceId) ?? [];
    for (const name of grpcServices) {
      // A name that is not a string is refused as invalid by the registration's validation.
      if (typeof name === 'string' && !allowed.some((p) => matches(p, name))) {
        throw refuse(
          status.PERMISSION_DENIED,
          `${describe(caller)} may not claim gRPC service ${name} for service ${serviceId}`,
        );
      }
    }
  }

  /** The gRPC name patterns of every service-id pattern granted to the caller that matches. */
  private claimable(caller: Caller, serviceId: string): string[] | undefined {
    const services = this.options.grants[caller.identity]?.services ?? {};
    const granted = Object.entries(services).filter(([p]) => matches(p, serviceId));
    return granted.length === 0 ? undefined : granted.flatMap(([, names]) => names);
  }
}

const describe = (caller: Caller) => `caller ${caller.identity} (${caller.origin})`;
