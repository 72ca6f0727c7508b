import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { z } from 'zod';
import { loadCacheSettings } from '../../services/cache/config.js';
import { addSettings, configFrom } from '../../services/common/component-config.js';
import { ConfigError, loadYamlConfig } from '../../services/common/config.js';
import { consoleSettings } from '../../services/console/config.js';
import { loadDiscoveryConfig } from '../../services/discovery/config.js';
import { loadGatewayConfig } from '../../services/gateway/config.js';
import { loadLauncherSettings } from '../../services/launcher/config.js';

const schema = z
  .object({ listen: z.object({ port: z.number().int().min(1).max(65535) }) })
  .strict();

async function file(text: string): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'halyard-config-')), 'c.yaml');
  await writeFile(path, text);
  return path;
}

test('a valid file is parsed and typed', async () => {
  assert.deepEqual(await loadYamlConfig(schema, await file('listen:\n  port: 8443\n')), {
    listen: { port: 8443 },
  });
});

test('an invalid field is named with its path and the file', async () => {
  const path = await file('listen:\n  port: 70000\n');
  await assert.rejects(
    loadYamlConfig(schema, path),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.file === path &&
      /listen\.port: Too big: expected number to be <=65535/.test(error.message),
  );
});

test('broken YAML says where', async () => {
  await assert.rejects(loadYamlConfig(schema, await file('listen: [\n')), /line \d+, column \d+/);
});

test('a missing file is a config error, not a crash', async () => {
  await assert.rejects(
    loadYamlConfig(schema, '/nonexistent/halyard.yaml'),
    /\/nonexistent\/halyard\.yaml: cannot read/,
  );
});

/** Runs `body` with these environment variables set (undefined: unset), then restores them. */
async function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T>) {
  const saved = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]));
  const assign = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  assign(vars);
  try {
    return await body();
  } finally {
    assign(saved);
  }
}

/** No variable of the developer's shell may leak into these tests. */
const clean = {
  HALYARD_NATS: undefined,
  HALYARD_GATEWAY_CONFIG: undefined,
  HALYARD_GATEWAY_ID: undefined,
  HALYARD_GATEWAY_LISTEN: undefined,
  HALYARD_GATEWAY_ADMIN: undefined,
  HALYARD_GATEWAY_MESH_SECRET: undefined,
  HALYARD_GATEWAY_JWT_SECRET: undefined,
  HALYARD_DISCOVERY_CONFIG: undefined,
  HALYARD_REPLICA_ID: undefined,
  HALYARD_GRPC_LISTEN: undefined,
  HALYARD_ADMIN_PORT: undefined,
  HALYARD_STATIC_FILE: undefined,
  HALYARD_CACHE_CONFIG: undefined,
  HALYARD_LAUNCHER_CONFIG: undefined,
  HALYARD_HOST: undefined,
};

test('a typo in a gateway config is refused, naming the field and the file', async () => {
  const path = await file(
    'id: gw-1\nlimits:\n  maxConcurentCalls: 10\nretyr: { maxAttempts: 2 }\n',
  );
  await withEnv(clean, () =>
    assert.rejects(loadGatewayConfig(['--config', path]), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, path);
      assert.match(error.message, new RegExp(`^${path}: `));
      assert.match(error.message, /limits: Unrecognized key: "maxConcurentCalls"/);
      assert.match(error.message, /\(top level\): Unrecognized key: "retyr"/);
      return true;
    }),
  );
});

test('a typo in a cache or discovery config is refused, naming the field and the file', async () => {
  const cache = await file('bus: { server: [nats://a:4222] }\n');
  const discovery = await file('health: { intervalMs: 500, timeout: 300 }\n');
  await withEnv(clean, async () => {
    await assert.rejects(loadCacheSettings(['-c', cache]), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, cache);
      assert.match(error.message, /bus: Unrecognized key: "server"/);
      return true;
    });
    await assert.rejects(loadDiscoveryConfig(['-c', discovery]), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, discovery);
      assert.match(error.message, /health: Unrecognized key: "timeout"/);
      return true;
    });
  });
});

test('every component reads the bus from `bus.servers`, HALYARD_NATS and --nats, in that order', async () => {
  const gateway = await file('id: gw-1\nbus: { servers: [nats://file:4222] }\n');
  const discovery = await file('bus: { servers: [nats://file:4222] }\n');
  const cache = await file('bus: { servers: nats://file:4222 }\n');
  const launcher = await file('hostId: h1\nbus: { servers: [nats://file:4222] }\n');
  const loaders = [
    (argv: string[]) => loadGatewayConfig(['-c', gateway, ...argv]),
    (argv: string[]) => loadDiscoveryConfig(['-c', discovery, ...argv]),
    (argv: string[]) => loadCacheSettings(['-c', cache, ...argv]),
    async (argv: string[]) => (await loadLauncherSettings(['-c', launcher, ...argv])).config,
  ];
  for (const load of loaders) {
    await withEnv(clean, async () => {
      assert.deepEqual((await load([])).bus.servers, ['nats://file:4222']);
    });
    await withEnv({ ...clean, HALYARD_NATS: 'nats://env-a:4222, nats://env-b:4222' }, async () => {
      assert.deepEqual((await load([])).bus.servers, ['nats://env-a:4222', 'nats://env-b:4222']);
      assert.deepEqual((await load(['--nats', 'nats://flag:4222'])).bus.servers, [
        'nats://flag:4222',
      ]);
    });
  }
});

test('env overrides the file and a flag overrides env, setting by setting', async () => {
  const path = await file(
    'replicaId: from-file\nadminPort: 9001\ngrpcListen: "127.0.0.1:7000"\nhealth: { intervalMs: 500 }\n',
  );
  await withEnv(
    {
      ...clean,
      HALYARD_DISCOVERY_CONFIG: path,
      HALYARD_ADMIN_PORT: '9002',
      HALYARD_REPLICA_ID: 'from-env',
    },
    async () => {
      const config = await loadDiscoveryConfig(['--replica-id', 'from-flag']);
      assert.equal(config.replicaId, 'from-flag');
      assert.equal(config.adminPort, 9002);
      assert.equal(config.grpcListen, '127.0.0.1:7000');
      assert.equal(config.health.intervalMs, 500);
    },
  );
});

test('the gateway: env and flags reach nested settings; secrets only from the environment', async () => {
  const path = await file(
    'id: gw-file\nlisten: { host: 127.0.0.1, port: 8000 }\naffinity: { jwt: { issuer: halyard } }\n',
  );
  const secrets = {
    HALYARD_GATEWAY_MESH_SECRET: 'a-mesh-secret-of-16+',
    HALYARD_GATEWAY_JWT_SECRET: 'a-jwt-secret-that-is-32-characters-long',
  };
  await withEnv(
    { ...clean, ...secrets, HALYARD_GATEWAY_ID: 'gw-env', HALYARD_GATEWAY_LISTEN: ':8001' },
    async () => {
      const config = await loadGatewayConfig(['-c', path, '--listen', '127.0.0.1:8002']);
      assert.equal(config.id, 'gw-env');
      assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8002 });
      assert.equal(config.affinity.meshSecret, secrets.HALYARD_GATEWAY_MESH_SECRET);
      assert.equal(config.affinity.jwt.hs256Secret, secrets.HALYARD_GATEWAY_JWT_SECRET);
      assert.equal(config.affinity.jwt.issuer, 'halyard', 'the rest of the file is kept');
    },
  );
});

test('a bad value given by flag or environment names it', async () => {
  await withEnv({ ...clean, HALYARD_ADMIN_PORT: 'x' }, async () => {
    await assert.rejects(
      loadDiscoveryConfig([]),
      /^ConfigError: \(flags and environment\): adminPort \(from HALYARD_ADMIN_PORT\): /,
    );
    await assert.rejects(
      loadDiscoveryConfig(['--admin-port', '70000']),
      /adminPort \(from --admin-port\): Too big/,
    );
  });
});

test('a CLI command reads its settings as a component does: the file, overridden by flags', async () => {
  const consoleConfig = async (argv: string[]) => {
    const program = new Command('halyard').exitOverride();
    let loaded: unknown;
    addSettings(program.command('console'), consoleSettings).action(async (_flags, cmd) => {
      loaded = (await configFrom(cmd, consoleSettings)).config;
    });
    await program.parseAsync(['console', ...argv], { from: 'user' });
    return loaded;
  };
  const path = await file('listen: 127.0.0.1:9100\n');
  assert.deepEqual(await consoleConfig(['-c', path]), {
    listen: '127.0.0.1:9100',
    tokens: [],
    control: false,
  });
  assert.deepEqual(
    await consoleConfig(['--config', path, '--listen', '127.0.0.1:9200', '--control']),
    {
      listen: '127.0.0.1:9200',
      tokens: [],
      control: true,
    },
  );
  await assert.rejects(
    consoleConfig(['-c', await file('listen: 127.0.0.1:9100\nlisten_port: 1\n')]),
    /c\.yaml: \(top level\): Unrecognized key: "listen_port"/,
  );
});

test('the host a cache or gateway runs on is a setting of its own (HALYARD_HOST); comma lists are trimmed', async () => {
  const path = await file('discovery: { tokenFile: /etc/halyard/cache.registry-token }\n');
  await withEnv({ ...clean, HALYARD_HOST: 'host-a' }, async () => {
    const config = await loadCacheSettings([
      '-c',
      path,
      '--discovery',
      ' 10.0.0.1:7400, 10.0.0.2:7400,',
    ]);
    assert.equal(config.hostId, 'host-a');
    assert.deepEqual(config.discovery?.addresses, ['10.0.0.1:7400', '10.0.0.2:7400']);
    assert.equal((await loadGatewayConfig(['--id', 'gw-1'])).hostId, 'host-a');
  });
  await withEnv(clean, async () => {
    assert.equal((await loadCacheSettings([])).hostId, undefined);
  });
});
