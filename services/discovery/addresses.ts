/**
 * Which addresses an instance may be registered at. Gateways send client calls to
 * registered addresses, and discovery probes them: an address outside the networks
 * Halyard's services run in would make the mesh reach wherever a registrant points it
 * (a cloud metadata endpoint, another host's internal port). Registered hosts must be
 * IP addresses within the allowed networks, or host names listed one by one (a name is
 * resolved by whoever connects, so discovery cannot see where it points).
 *
 * Whatever the configuration, unspecified (0.0.0.0, ::), link-local, multicast and
 * broadcast addresses are refused: none of them names one reachable service instance.
 */
import { BlockList, isIP } from 'node:net';
import { z } from 'zod';

/** Loopback and private ranges: where a mesh's services run unless told otherwise. */
const DEFAULT_NETWORKS: readonly string[] = [
  '127.0.0.0/8',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '::1/128',
  'fc00::/7',
];

const NEVER: ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6']> = [
  ['0.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['224.0.0.0', 4, 'ipv4'],
  ['255.255.255.255', 32, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

function parseNetwork(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const slash = text.lastIndexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0) throw new Error(`"${text}" is not a network: want address/prefix`);
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new Error(`"${text}": the prefix length must be 0–${max}`);
  }
  return { address, prefix, family };
}

const network = z.string().superRefine((text, ctx) => {
  try {
    parseNetwork(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
});

export const addressSettings = {
  /** Networks (CIDR) registered IP addresses must lie in. */
  allowedNetworks: z.array(network).default([...DEFAULT_NETWORKS]),
  /** Host names that may be registered (exact, case-insensitive); none by default. */
  allowedHostnames: z.array(z.string().min(1).max(253)).default([]),
};

export interface AddressRules {
  readonly allowedNetworks: readonly string[];
  readonly allowedHostnames: readonly string[];
}

const DEFAULT_ADDRESS_RULES: AddressRules = {
  allowedNetworks: DEFAULT_NETWORKS,
  allowedHostnames: [],
};

export class AddressPolicy {
  private readonly allowed = new BlockList();
  private readonly never = new BlockList();
  private readonly hostnames: ReadonlySet<string>;

  constructor(rules: AddressRules = DEFAULT_ADDRESS_RULES) {
    for (const text of rules.allowedNetworks) {
      const { address, prefix, family } = parseNetwork(text);
      this.allowed.addSubnet(address, prefix, family);
    }
    for (const [address, prefix, family] of NEVER) this.never.addSubnet(address, prefix, family);
    this.hostnames = new Set(rules.allowedHostnames.map((h) => h.toLowerCase()));
  }

  /** Why `host:port` may not be registered, or undefined when it may. */
  refusal(hostPort: string): string | undefined {
    const host = hostPort.slice(0, hostPort.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
    const version = isIP(host);
    if (version === 0) {
      return this.hostnames.has(host.toLowerCase())
        ? undefined
        : `host name ${host} is not in allowedHostnames (register an IP address, or list the name)`;
    }
    // BlockList matches IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) against IPv4 rules.
    const family = version === 4 ? 'ipv4' : 'ipv6';
    if (this.never.check(host, family)) {
      return `${host} is an unspecified, link-local, multicast or broadcast address`;
    }
    if (!this.allowed.check(host, family)) return `${host} is outside allowedNetworks`;
    return undefined;
  }
}
