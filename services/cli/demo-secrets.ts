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
