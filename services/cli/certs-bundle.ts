/**
 * Everything a locked bus needs that is secret or per host: a CA, a certificate per
 * host (client port and routes) and per role (client certificates), an nkey per role
 * (one launcher nkey per host, since a launcher may act only for its own host), and the
 * files that join them to deploy/nats/nats.conf:
 *
 *   <dir>/ca/ca.crt, ca.key               the CA (keep ca.key off the hosts)
 *   <dir>/hosts/<host>/                   copy to each host's config dir
 *     nats.conf                           deploy/nats/nats.conf, unchanged
 *     host.conf                           this host's name, addresses and files
 *     routes.conf                         its route listener and routes (none alone)
 *     users.conf                          every role's nkey and permissions
 *     ca.crt, server.crt, server.key
 *   <dir>/roles/<role>/                   give each component only its role's directory
 *     ca.crt, client.crt, client.key, nkey.seed
 *     bus.env                             HALYARD_NATS_CA=… lines for that role
 *
 * Certificates are made by openssl (node cannot sign X.509). Every directory is 0700 and
 * every file 0600, so nothing is readable by another user even for a moment.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { newUserNkey, type Role, Roles, roleName, rolePermissions } from '../../bus/index.js';
import { BusEnv } from '../common/bus-settings.js';
import { REPO_ROOT } from '../common/repo-root.js';

const run = promisify(execFile);

/** The shipped server configuration every host runs. */
const NATS_CONF = path.join(REPO_ROOT, 'deploy/nats/nats.conf');

export interface BusHost {
  /** `server_name` and the launcher's host id, e.g. `n1`. */
  readonly name: string;
  /** The address clients and the other servers reach it at (IP or DNS name). */
  readonly address: string;
  readonly clientPort?: number;
  readonly routePort?: number;
  readonly monitorPort?: number;
}

export interface BundleOptions {
  readonly dir: string;
  readonly hosts: readonly BusHost[];
  /** Where each host's directory will be installed (default: where it is written). */
  readonly installDir?: string;
  /** Where each host's JetStream stores its data. */
  readonly storeDir?: string;
  /** Host ids of the launchers, one role each (default: the hosts' names). */
  readonly launcherHosts?: readonly string[];
  /** Certificate lifetime in days. */
  readonly days?: number;
}

/** A role's connection files, as a component is given them. */
export interface RoleFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly nkey: string;
}

/** The role name of a host's launcher; every other role is shared by all hosts. */
export const launcherRole = (host: string) => roleName('launcher', host);

export function roleFiles(dir: string, role: string): RoleFiles {
  const d = path.join(dir, 'roles', role);
  return {
    ca: path.join(d, 'ca.crt'),
    cert: path.join(d, 'client.crt'),
    key: path.join(d, 'client.key'),
    nkey: path.join(d, 'nkey.seed'),
  };
}

/** The variables of one host that deploy/nats/nats.conf reads (see host.conf there). */
export interface HostVars {
  readonly name: string;
  /** The cluster's name, the same on every host (default `halyard`). */
  readonly cluster?: string;
  readonly clientListen: string;
  readonly monitorListen: string;
  readonly routeListen: string;
  readonly routes: readonly string[];
  readonly storeDir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Top-level settings appended as they are (log_file, pid_file…). */
  readonly extra?: readonly string[];
}

function renderHostConf(v: HostVars): string {
  const q = JSON.stringify;
  return `${[
    "# This host's part of the bus configuration; nats.conf reads these variables.",
    `HALYARD_SERVER_NAME: ${q(v.name)}`,
    `HALYARD_CLIENT_LISTEN: ${q(v.clientListen)}`,
    `HALYARD_MONITOR_LISTEN: ${q(v.monitorListen)}`,
    `HALYARD_STORE_DIR: ${q(v.storeDir)}`,
    `HALYARD_CA_FILE: ${q(v.caFile)}`,
    `HALYARD_CERT_FILE: ${q(v.certFile)}`,
    `HALYARD_KEY_FILE: ${q(v.keyFile)}`,
    ...(v.extra ?? []),
  ].join('\n')}\n`;
}

/** `routes.conf`, inside nats.conf's cluster block: a lone server has no routes. */
function renderRoutesConf(v: HostVars): string {
  if (v.routes.length === 0) return '# A single server: no routes.\n';
  const q = JSON.stringify;
  return `name: ${q(v.cluster ?? 'halyard')}\nlisten: ${q(v.routeListen)}\nroutes: [${v.routes.map((r) => q(r)).join(', ')}]\n`;
}

/** Writes a host's host.conf and routes.conf into `hostDir`. */
export function writeHostConf(hostDir: string, v: HostVars): void {
  fs.writeFileSync(path.join(hostDir, 'host.conf'), renderHostConf(v), { mode: 0o600 });
  fs.writeFileSync(path.join(hostDir, 'routes.conf'), renderRoutesConf(v), { mode: 0o600 });
}

/** `users.conf`: one nkey user per role, each with its permissions. */
function renderUsersConf(
  users: ReadonlyArray<{ role: string; publicKey: string }>,
  hosts: readonly string[],
): string {
  const rows = users.map(({ role, publicKey }) => {
    const host = hosts.find((h) => role === launcherRole(h));
    const permissions = host ? rolePermissions('launcher', host) : rolePermissions(role as Role);
    return `    # ${role}\n    ${JSON.stringify({ nkey: publicKey, permissions })}`;
  });
  return `# Generated by \`halyard certs\`: one nkey per role; the seeds are in roles/<role>/nkey.seed.\nauthorization {\n  users: [\n${rows.join('\n')}\n  ]\n}\n`;
}

/** The roles a bundle for `hosts` has: every shared role and one launcher per host. */
function bundleRoles(hosts: readonly string[]): string[] {
  return [...Roles.filter((r) => r !== 'launcher'), ...hosts.map(launcherRole)];
}

export async function makeBusBundle(options: BundleOptions): Promise<void> {
  const { dir, hosts } = options;
  const days = String(options.days ?? 825);
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    throw new Error(
      `${dir} is not empty: choose a new directory (existing keys are never overwritten)`,
    );
  }
  const mkdir = (d: string) => fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  const write = (file: string, text: string) => fs.writeFileSync(file, text, { mode: 0o600 });
  mkdir(dir);
  fs.chmodSync(dir, 0o700);
  const caDir = path.join(dir, 'ca');
  mkdir(caDir);
  const ca = { crt: path.join(caDir, 'ca.crt'), key: path.join(caDir, 'ca.key') };
  await openssl([
    'req',
    '-x509',
    ...newKey(ca.key),
    '-out',
    ca.crt,
    '-days',
    String(Number(days) * 2),
    '-subj',
    '/O=Halyard/CN=Halyard bus CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const sign = (crt: string, key: string, cn: string, sans: readonly string[]) =>
    openssl([
      'req',
      '-x509',
      ...newKey(key),
      '-out',
      crt,
      '-days',
      days,
      '-CA',
      ca.crt,
      '-CAkey',
      ca.key,
      '-subj',
      `/O=Halyard/CN=${cn}`,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      '-addext',
      `extendedKeyUsage=${sans.length > 0 ? 'serverAuth,' : ''}clientAuth`,
      ...(sans.length > 0 ? ['-addext', `subjectAltName=${sans.join(',')}`] : []),
    ]);

  const names = options.launcherHosts ?? hosts.map((h) => h.name);
  const users: Array<{ role: string; publicKey: string }> = [];
  for (const role of bundleRoles(names)) {
    const files = roleFiles(dir, role);
    mkdir(path.dirname(files.nkey));
    fs.copyFileSync(ca.crt, files.ca);
    fs.chmodSync(files.ca, 0o600);
    await sign(files.cert, files.key, role, []);
    const nkey = newUserNkey();
    write(files.nkey, `${nkey.seed}\n`);
    users.push({ role, publicKey: nkey.publicKey });
    const env = { ca: files.ca, cert: files.cert, key: files.key, nkey: files.nkey, role };
    write(
      path.join(path.dirname(files.nkey), 'bus.env'),
      Object.entries(env)
        .map(([field, value]) => `${BusEnv[field as keyof typeof env]}=${value}`)
        .join('\n')
        .concat('\n'),
    );
  }
  const usersConf = renderUsersConf(users, names);
  for (const host of hosts) {
    const hostDir = path.join(dir, 'hosts', host.name);
    const installed = options.installDir ?? hostDir;
    mkdir(hostDir);
    for (const file of [ca.crt, NATS_CONF]) {
      const copy = path.join(hostDir, path.basename(file));
      fs.copyFileSync(file, copy);
      fs.chmodSync(copy, 0o600);
    }
    const san =
      (/^[\d.]+$/.test(host.address) || host.address.includes(':') ? 'IP:' : 'DNS:') + host.address;
    const sans = [...new Set([san, 'IP:127.0.0.1', 'DNS:localhost', `DNS:${host.name}`])];
    await sign(path.join(hostDir, 'server.crt'), path.join(hostDir, 'server.key'), host.name, sans);
    write(path.join(hostDir, 'users.conf'), usersConf);
    writeHostConf(hostDir, {
      name: host.name,
      clientListen: `${host.address}:${host.clientPort ?? 4222}`,
      monitorListen: `127.0.0.1:${host.monitorPort ?? 8222}`,
      routeListen: `${host.address}:${host.routePort ?? 6222}`,
      routes: hosts
        .filter((o) => o !== host)
        .map((o) => `nats-route://${o.address}:${o.routePort ?? 6222}`),
      storeDir: options.storeDir ?? '/var/lib/halyard/nats',
      caFile: path.join(installed, 'ca.crt'),
      certFile: path.join(installed, 'server.crt'),
      keyFile: path.join(installed, 'server.key'),
    });
  }
}

function newKey(keyFile: string): string[] {
  return [
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyFile,
  ];
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const e = error as Error & { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
  // openssl creates keys with the process's umask; the directories are 0700 already.
  for (const [i, a] of args.entries()) {
    if ((a === '-keyout' || a === '-out') && args[i + 1])
      fs.chmodSync(args[i + 1] as string, 0o600);
  }
}
