import assert from 'node:assert/strict';
import { mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { demoSecrets, demoToken, gatewaySecretsEnv } from '../../services/cli/demo-secrets.js';
import { loadGatewayConfig } from '../../services/gateway/config.js';
import { Identities } from '../../services/gateway/identity.js';

test('a demo token is accepted by a gateway configured with the demo mesh secrets', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'halyard-demo-'));
  await assert.rejects(demoToken(dataDir, 'ada', 60), /run halyard up \(npm start\) first/);
  const secrets = demoSecrets(dataDir);
  assert.deepEqual(demoSecrets(dataDir), secrets, 'made once, then reused');
  assert.equal((await stat(join(dataDir, 'demo-secrets.json'))).mode & 0o777, 0o600);
  // As `halyard up` starts its gateways: this environment, read by the gateway's config.
  const env = gatewaySecretsEnv(secrets);
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let config: Awaited<ReturnType<typeof loadGatewayConfig>>;
  try {
    config = await loadGatewayConfig(['--id', 'gateway-1', '--nats', 'nats://127.0.0.1:4222']);
  } finally {
    for (const key of Object.keys(env)) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  }
  const identities = await Identities.load({
    meshSecret: config.affinity.meshSecret,
    ...config.affinity.jwt,
  });
  assert.deepEqual(identities.uncheckedClaims, [], 'issuer and audience are checked');
  const identity = await identities.verify(await demoToken(dataDir, 'ada', 60));
  assert.ok(identity.ok, identity.ok ? '' : identity.message);
  assert.match(identity.userKey, /^[A-Za-z0-9_-]{43}$/);
});
