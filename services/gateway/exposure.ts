/**
 * Which gRPC services a gateway routes to its clients. Halyard's own services
 * (`halyard.*`: Registry, Launcher, Cache, …) are control-plane APIs for the internal
 * network: a gateway never routes them unless its config names them. An optional allow
 * list restricts the routed services further. The routing table consults this once per
 * rebuild, so a call pays nothing for it.
 */

/** Halyard's own packages: never routed unless named in `routing.exposeInternal`. */
const INTERNAL_PREFIX = 'halyard.';

export type Exposure =
  | { readonly routed: true }
  | { readonly routed: false; readonly reason: 'internal' | 'not-allowed' };

export interface ExposureSettings {
  /** Service names or `pkg.` prefixes; when set, nothing else is routed. */
  readonly allow?: readonly string[] | undefined;
  /** Halyard services (names or prefixes) routed all the same. */
  readonly exposeInternal: readonly string[];
}

const ROUTED: Exposure = { routed: true };

export class ExposurePolicy {
  constructor(private readonly settings: ExposureSettings) {}

  of(grpcService: string): Exposure {
    const { allow, exposeInternal } = this.settings;
    if (grpcService.startsWith(INTERNAL_PREFIX) && !matchesAny(grpcService, exposeInternal)) {
      return { routed: false, reason: 'internal' };
    }
    if (allow !== undefined && !matchesAny(grpcService, allow)) {
      return { routed: false, reason: 'not-allowed' };
    }
    return ROUTED;
  }

  /** What a client is told when it calls a service this gateway does not route. */
  static message(grpcService: string, reason: 'internal' | 'not-allowed'): string {
    return reason === 'internal'
      ? `${grpcService} is a Halyard control-plane service: gateways do not route it to clients`
      : `${grpcService} is not routed by this gateway (not in its allow list)`;
  }
}

/** An entry ending in "." is a package prefix; any other is one service name. */
function matchesAny(grpcService: string, entries: readonly string[]): boolean {
  for (const entry of entries) {
    if (entry.endsWith('.') ? grpcService.startsWith(entry) : grpcService === entry) return true;
  }
  return false;
}
