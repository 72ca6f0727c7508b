/**
 * How a grpc-js client reaches one of several equal replicas (gateways, cache replicas)
 * and rides out the loss of one: one channel over every address with `round_robin`, so
 * a replica that dies is skipped as soon as its connection drops (grpc-js moves calls
 * that never reached it to another one by itself: its transparent retry), and a retry
 * policy for UNAVAILABLE on the methods the caller declares idempotent only — a call
 * that was in flight on a dying replica may have run, and only an idempotent one may
 * run twice.
 *
 *   const { target, options } = failoverChannel({ addresses: ['10.0.0.1:8443', '10.0.0.2:8443'] });
 *   const client = new GreeterClient(target, credentials, options);
 *
 * Any other gRPC client gets the same with a DNS name that resolves to every replica
 * and this service config (`dns:///gateways.example:8443`), which is also what one
 * `dns:///name:port` address given here becomes.
 */
import { isIP } from 'node:net';
import type { ChannelOptions } from '@grpc/grpc-js';

export interface FailoverChannelOptions {
  /** `host:port` of each replica: IP addresses (one DNS name alone is passed through). */
  readonly addresses: readonly string[];
  /**
   * Methods safe to run twice, retried on another gateway after UNAVAILABLE:
   * `pkg.Service` (every method) or `pkg.Service/Method`.
   */
  readonly idempotent?: readonly string[];
  /** Attempts of an idempotent call, the first included (grpc-js caps this at 5). */
  readonly maxAttempts?: number;
}

export interface FailoverChannel {
  /** The grpc-js target: every address, resolved statically. */
  readonly target: string;
  readonly options: ChannelOptions;
}

export function failoverChannel(options: FailoverChannelOptions): FailoverChannel {
  if (options.addresses.length === 0) throw new Error('name at least one address');
  return {
    target: staticTarget(options.addresses),
    options: {
      'grpc.service_config': JSON.stringify(serviceConfig(options)),
      'grpc.enable_retries': 1,
    },
  };
}

function serviceConfig(options: FailoverChannelOptions) {
  const names = (options.idempotent ?? []).map((name) => {
    const [service, method] = name.split('/');
    if (!service || name.split('/').length > 2) {
      throw new Error(`idempotent method "${name}": expected pkg.Service or pkg.Service/Method`);
    }
    return method ? { service, method } : { service };
  });
  return {
    loadBalancingConfig: [{ round_robin: {} }],
    methodConfig:
      names.length === 0
        ? []
        : [
            {
              name: names,
              retryPolicy: {
                maxAttempts: options.maxAttempts ?? 3,
                initialBackoff: '0.05s',
                maxBackoff: '1s',
                backoffMultiplier: 2,
                retryableStatusCodes: ['UNAVAILABLE'],
              },
            },
          ],
  };
}

/**
 * `ipv4:a:p,b:p` or `ipv6:[a]:p,…` (grpc-js needs one address family per target); a
 * single `host:port` or `dns:///name:port` is left to the resolver.
 */
function staticTarget(addresses: readonly string[]): string {
  const [only] = addresses;
  if (addresses.length === 1 && only && !isIP(only.replace(/^\[?([^\]]+?)\]?:\d+$/, '$1'))) {
    return only;
  }
  const parsed = addresses.map((address) => {
    const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
    const host = match?.[1] ?? '';
    const family = isIP(host);
    if (!match || family === 0) {
      throw new Error(
        `gateway address "${address}": expected ip:port (a DNS name: use dns:///name:port)`,
      );
    }
    return { family, text: family === 6 ? `[${host}]:${match[2]}` : `${host}:${match[2]}` };
  });
  const families = new Set(parsed.map((p) => p.family));
  if (families.size > 1) throw new Error('addresses must all be IPv4 or all IPv6');
  return `${parsed[0]!.family === 6 ? 'ipv6' : 'ipv4'}:${parsed.map((p) => p.text).join(',')}`;
}
