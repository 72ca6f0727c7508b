/**
 * The bus settings every component shares: YAML `bus:`, environment variables and flags,
 * turned into the options of `Bus.connect`. A new bus setting is added here and nowhere
 * else: a field of `busSettings`, a row of `busFlags`, its place in `busOptions`.
 *
 * | YAML `bus.`    | environment                  | flag                   |
 * |----------------|------------------------------|------------------------|
 * | `servers`      | `HALYARD_NATS`               | `--nats`               |
 * | `ca`           | `HALYARD_NATS_CA`            | `--nats-ca`            |
 * | `cert`         | `HALYARD_NATS_CERT`          | `--nats-cert`          |
 * | `key`          | `HALYARD_NATS_KEY`           | `--nats-key`           |
 * | `creds`        | `HALYARD_NATS_CREDS`         | `--nats-creds`         |
 * | `nkey`         | `HALYARD_NATS_NKEY`          | `--nats-nkey`          |
 * | `user`         | `HALYARD_NATS_USER`          | `--nats-user`          |
 * | `passwordFile` | `HALYARD_NATS_PASSWORD_FILE` | `--nats-password-file` |
 * | `roles`        | `HALYARD_NATS_ROLES`         | `--nats-roles`         |
 * | `role`         | `HALYARD_NATS_ROLE`          | `--nats-role`          |
 *
 * `roles` and `role` name the files a role has in the layout `halyard certs` writes
 * (`<roles>/<role>/ca.crt`, `client.crt`, `client.key`, `nkey.seed`): one directory
 * for a host's components, one name per component. A file named on its own wins. The
 * role also names the connection's reply inbox (`_INBOX.<role>`), the only one its
 * permissions let it read: give it with explicit files too.
 *
 * Every value is a URL or a file name: secrets (a private key, a seed, a password) are
 * read from files that only their owner may read, never given on a command line.
 * One credential at most: a `.creds` file, an nkey seed file, or a user and its
 * password file.
 */
import * as path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { BusAuth, BusOptions, BusTls } from '../../bus/index.js';
import { list, type Setting } from './component-config.js';

const url = z.string().min(1);
const file = z.string().min(1);

export const busSettings = z
  .strictObject({
    /** NATS URLs; any one is enough to find the cluster. A single URL may stand alone. */
    servers: z
      .union([url.transform((server) => [server]), z.array(url).min(1, 'name a NATS server')])
      .default(['nats://127.0.0.1:4222']),
    /** Stream and bucket replicas; by default 3 when the server is in a cluster, else 1. */
    replicas: z.number().int().min(1).max(5).optional(),
    /** The CA that signed the servers' certificates (PEM); turns TLS on. */
    ca: file.optional(),
    /** This client's certificate and its key (PEM), for servers that verify clients. */
    cert: file.optional(),
    key: file.optional(),
    /** A `.creds` file (JWT and seed). */
    creds: file.optional(),
    /** A user nkey seed file (`halyard certs` writes one per role). */
    nkey: file.optional(),
    /** A user name, with its password in `passwordFile`. */
    user: z.string().min(1).optional(),
    passwordFile: file.optional(),
    /** A directory of role directories, as `halyard certs` writes `<dir>/roles`. */
    roles: file.optional(),
    /** This component's role: `gateway`, `launcher-<host>`, … (its files in `roles`, its inbox). */
    role: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a role name')
      .optional(),
  })
  .check((ctx) => {
    const s = ctx.value;
    const given = [s.creds && 'creds', s.nkey && 'nkey', (s.user || s.passwordFile) && 'user']
      .filter(Boolean)
      .join(', ');
    if (given.includes(',')) {
      ctx.issues.push({
        code: 'custom',
        input: s,
        message: `give one bus credential, not several (${given})`,
      });
    }
    if (!s.user !== !s.passwordFile) {
      ctx.issues.push({
        code: 'custom',
        input: s,
        path: [s.user ? 'passwordFile' : 'user'],
        message: 'a bus user needs both a name and a password file',
      });
    }
    if (s.roles && !s.role) {
      ctx.issues.push({
        code: 'custom',
        input: s,
        path: ['role'],
        message: 'name the role whose files to use in the roles directory',
      });
    }
    if (!s.cert !== !s.key) {
      ctx.issues.push({
        code: 'custom',
        input: s,
        path: [s.cert ? 'key' : 'cert'],
        message: 'a client certificate needs both the certificate and its key',
      });
    }
  })
  .prefault({});

export type BusSettings = z.infer<typeof busSettings>;
export type BusSettingsInput = z.input<typeof busSettings>;

/** Every bus setting's environment variable, by field. */
export const BusEnv = {
  servers: 'HALYARD_NATS',
  ca: 'HALYARD_NATS_CA',
  cert: 'HALYARD_NATS_CERT',
  key: 'HALYARD_NATS_KEY',
  creds: 'HALYARD_NATS_CREDS',
  nkey: 'HALYARD_NATS_NKEY',
  user: 'HALYARD_NATS_USER',
  passwordFile: 'HALYARD_NATS_PASSWORD_FILE',
  roles: 'HALYARD_NATS_ROLES',
  role: 'HALYARD_NATS_ROLE',
} as const;

const fileFlag = (
  field: Exclude<keyof typeof BusEnv, 'servers'>,
  flag: string,
  description: string,
): Setting => ({ flag, env: BusEnv[field], path: `bus.${field}`, description });

export const busFlags: readonly Setting[] = [
  {
    flag: '--nats <urls>',
    env: BusEnv.servers,
    path: 'bus.servers',
    description: 'comma-separated NATS URLs',
    parse: list,
  },
  fileFlag('ca', '--nats-ca <file>', 'CA certificate of the bus (PEM); turns TLS on'),
  fileFlag('cert', '--nats-cert <file>', 'client certificate for the bus (PEM)'),
  fileFlag('key', '--nats-key <file>', 'key of the client certificate (PEM, mode 0600)'),
  fileFlag('creds', '--nats-creds <file>', 'NATS .creds file (mode 0600)'),
  fileFlag('nkey', '--nats-nkey <file>', 'NATS user nkey seed file (mode 0600)'),
  fileFlag('user', '--nats-user <name>', 'NATS user name (with --nats-password-file)'),
  fileFlag('passwordFile', '--nats-password-file <file>', 'NATS password file (mode 0600)'),
  fileFlag('roles', '--nats-roles <dir>', 'directory of role directories (`halyard certs`)'),
  fileFlag('role', '--nats-role <name>', 'this component’s bus role (gateway, launcher-<host>, …)'),
];

/**
 * The security settings (everything but the servers) found in `env`, for programs
 * without a config file such as the CLI.
 */
export function busSecurityFromEnv(env: NodeJS.ProcessEnv = process.env): BusSettings {
  const given = Object.fromEntries(
    (Object.keys(BusEnv) as Array<keyof typeof BusEnv>)
      .filter((field) => field !== 'servers' && env[BusEnv[field]])
      .map((field) => [field, env[BusEnv[field]]]),
  );
  return busSettings.parse(given);
}

/** What `Bus.connect` needs; `name` is the connection's name in the server's monitoring. */
export function busOptions(given: BusSettings, name: string, logger?: Logger): BusOptions {
  const settings = withRoleFiles(given);
  const auth = busAuth(settings);
  const tls = busTls(settings);
  return {
    servers: settings.servers,
    name,
    ...(logger ? { logger } : {}),
    ...(settings.replicas ? { replicas: settings.replicas } : {}),
    ...(auth ? { auth } : {}),
    ...(tls ? { tls } : {}),
    ...(settings.role ? { role: settings.role } : {}),
  };
}

/** The files of `role` in `roles`, where no file was named on its own. */
function withRoleFiles(s: BusSettings): BusSettings {
  if (!s.roles || !s.role) return s;
  const dir = path.join(s.roles, s.role);
  const explicitCredential = s.creds || s.nkey || s.user;
  return {
    ...s,
    ca: s.ca ?? path.join(dir, 'ca.crt'),
    cert: s.cert ?? path.join(dir, 'client.crt'),
    key: s.key ?? path.join(dir, 'client.key'),
    ...(explicitCredential ? {} : { nkey: path.join(dir, 'nkey.seed') }),
  };
}

function busAuth(s: BusSettings): BusAuth | undefined {
  if (s.creds) return { credsFile: s.creds };
  if (s.nkey) return { nkeyFile: s.nkey };
  if (s.user && s.passwordFile) return { user: s.user, passwordFile: s.passwordFile };
  return undefined;
}

function busTls(s: BusSettings): BusTls | undefined {
  if (!s.ca && !s.cert) return undefined;
  return {
    ...(s.ca ? { caFile: s.ca } : {}),
    ...(s.cert ? { certFile: s.cert } : {}),
    ...(s.key ? { keyFile: s.key } : {}),
  };
}
