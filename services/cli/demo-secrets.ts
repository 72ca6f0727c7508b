/**
 * Secrets of the local demo mesh: the HMAC key of user keys and the HS256 key of demo
 * tokens, made once per data dir (mode 0600) so that `halyard up` can hand them to
 * its gateways and `halyard token` can sign tokens they accept. A production mesh
 * configures its own keys (see services/gateway/README.md).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SignJWT } from 'jose';
import { tokenDigest } from '../common/callers.js';

export interface DemoSecrets {
  readonly meshSecret: string;
  readonly jwtSecret: string;
}

const FILE = 'demo-secrets.json';
/** The `iss` and `aud` of demo tokens, which the demo mesh's gateways require. */
const DEMO_ISSUER = 'halyard-demo';
const DEMO_AUDIENCE = 'halyard-demo-gateways';

export function demoSecrets(dataDir: string): DemoSecrets {
  const file = path.join(dataDir, FILE);
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')) as DemoSecrets;
  const secrets = {
    meshSecret: randomBytes(32).toString('base64url'),
    jwtSecret: randomBytes(32).toString('base64url'),
  };
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 });
  return secrets;
}

/** The environment that gives the demo mesh's gateways these secrets. */
export function gatewaySecretsEnv(secrets: DemoSecrets): Record<string, string> {
  return {
    HALYARD_GATEWAY_MESH_SECRET: secrets.meshSecret,
    HALYARD_GATEWAY_JWT_SECRET: secrets.jwtSecret,
    HALYARD_GATEWAY_JWT_ISSUER: DEMO_ISSUER,
    HALYARD_GATEWAY_JWT_AUDIENCE: DEMO_AUDIENCE,
  };
}

/**
 * A bearer token for the demo mesh: HS256, `sub` = the user, the demo issuer and
 * audience, expiring after `ttlSeconds`.
 */
export async function demoToken(
  dataDir: string,
  user: string,
  ttlSeconds: number,
): Promise<string> {
  const file = path.join(dataDir, FILE);
  if (!fs.existsSync(file)) {
    throw new Error(`no demo mesh secrets in ${dataDir}: run halyard up (npm start) first`);
  }
  const { jwtSecret } = demoSecrets(dataDir);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(user)
    .setIssuer(DEMO_ISSUER)
    .setAudience(DEMO_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(jwtSecret));
}

/**
 * Registry credentials of the demo mesh, in `<dataDir>/registry/` (0700): the greeter's
 * service token (`greeter.token`, 0600, made once) and the discovery config that grants
 * it service `greeter` and its gRPC name (`discovery.yaml`, holding only the token's
 * SHA-256). deploy/local/mesh.yaml hands each component its file.
 */
export function registryCredentials(dataDir: string): { readonly dir: string } {
  const dir = path.join(dataDir, 'registry');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tokenFile = path.join(dir, 'greeter.token');
  if (!fs.existsSync(tokenFile)) {
    fs.writeFileSync(tokenFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
  }
  const token = fs.readFileSync(tokenFile, 'utf8').trim();
  const grants = [
    '# Written by halyard up: who may call the Registry of the demo mesh.',
    'tokens:',
    `  - { sha256: ${tokenDigest(token)}, identity: greeter }`,
    'grants:',
    // services/demo/main.ts registers service greeter serving demo.greeter.v1.Greeter.
    '  greeter: { services: { greeter: [demo.greeter.v1.Greeter] } }',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'discovery.yaml'), grants, { mode: 0o600 });
  return { dir };
}

/** The environment that tells the demo mesh (deploy/local/mesh.yaml) where those files are. */
export function registryCredentialsEnv(credentials: {
  readonly dir: string;
}): Record<string, string> {
  return { HALYARD_MESH_REGISTRY_DIR: credentials.dir };
}
