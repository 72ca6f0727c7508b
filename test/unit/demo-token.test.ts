import assert from 'node:assert/strict';
import { mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { demoSecrets, demoToken, gatewaySecretsEnv } from '../../services/cli/demo-secrets.js';
import { Identities } from '../../services/gateway/identity.js';

test('a demo token is accepted by a gateway configured with the demo mesh secrets', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'halyard-demo-'));
  await assert.rejects(demoToken(dataDir, 'ada', 60), /run halyard up \(npm start\) first/);
  const secrets = demoSecrets(dataDir);
  assert.deepEqual(demoSecrets(dataDir), secrets, 'made once, then reused');
  assert.equal((await stat(join(dataDir, 'demo-secrets.json'))).mode & 0o777, 0o600);
  // As the demo mesh's gateways are configured: issuer and audience checked, exp required.
  const env = gatewaySecretsEnv(secrets);
  const identities = await Identities.load({
    meshSecret: env.HALYARD_GATEWAY_MESH_SECRET,
    hs256Secret: env.HALYARD_GATEWAY_JWT_SECRET,
    issuer: env.HALYARD_GATEWAY_JWT_ISSUER,
    audience: env.HALYARD_GATEWAY_JWT_AUDIENCE,
  });
  assert.deepEqual(identities.uncheckedClaims, []);
  const identity = await identities.verify(await demoToken(dataDir, 'ada', 60));
  assert.ok(identity.ok, identity.ok ? '' : identity.message);
  assert.match(identity.userKey, /^[A-Za-z0-9_-]{43}$/);
});
