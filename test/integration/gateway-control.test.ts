/**
 * What a client on the public side of a gateway can and cannot do: reach Halyard's own
 * services, speak for the gateway with x-halyard-* headers, pass tokens the gateway
 * should refuse, or learn internal addresses from error messages.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type Http2Server } from 'node:http2';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, type JWK, SignJWT } from 'jose';
import type { Bus } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { GatewayLogIds } from '../../services/gateway/log-ids.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoServer,
  echoClient,
  startEchoServer,
} from '../support/echo-service.js';
import { InstanceStatus, register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const REGISTRY = 'halyard.discovery.v1.Registry';
const LAUNCHER = 'halyard.launcher.v1.Launcher';
const ISSUER = 'https://idp.example';
const AUDIENCE = 'shop';

function rawUnary(
  client: grpc.Client,
  path: string,
  body: Uint8Array,
  metadata = new grpc.Metadata(),
): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      path,
      (x: Buffer) => x,
      (x: Buffer) => x,
      Buffer.from(body),
      metadata,
      { deadline: Date.now() + 5000 },
      (error) => resolve(error),
    ),
  );
}

/** A signing key whose public half a JWKS can carry. */
function signingKey(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    kid,
    privateKey,
    jwk: async (): Promise<JWK> => ({ ...(await exportJWK(publicKey)), kid, alg: 'ES256' }),
  };
}
type SigningKey = ReturnType<typeof signingKey>;

describe('a gateway closes the control plane to its clients', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let gateway: Gateway;
  let echo: EchoServer;
  let client: ReturnType<typeof echoClient>;
  /** Claims Halyard's own services, as a hijacked registration would: counts what reaches it. */
  let control: Http2Server;
  let controlStreams = 0;
  let jwksServer: Server;
  let jwks: { keys: JWK[] } = { keys: [] };
  let jwksFetches = 0;
  const k1 = signingKey('k1');
  const k2 = signingKey('k2');
  const logs = captureLogs('info');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('control-test', logs.logger));
    control = createServer();
    control.on('stream', (stream) => {
      controlStreams++;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' });
      stream.end();
    });
    await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
    jwks = { keys: [await k1.jwk()] };
    jwksServer = createHttpServer((_, response) => {
      jwksFetches++;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));

    echo = await startEchoServer({ instanceId: 'echo-1' });
    await register(bus, {
      instanceId: 'echo-1',
      address: echo.address,
      metadata: { 'lb.policy': 'user' },
    });
    await register(bus, {
      serviceId: 'control',
      instanceId: 'evil',
      address: `127.0.0.1:${(control.address() as AddressInfo).port}`,
      grpcServices: [REGISTRY, LAUNCHER],
    });
    gateway = await startGateway(bus, cluster.servers, logs.logger, {
      affinity: {
        meshSecret: 'control-test-mesh-secret',
        jwt: {
          jwksUrls: [`http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`],
          // Short, so that the rotation below is seen within the test.
          jwksCacheSeconds: 0.2,
          issuer: ISSUER,
          audience: AUDIENCE,
        },
      },
    });
    await routed(gateway, ECHO_SERVICE, 'echo-1');
    client = echoClient(`127.0.0.1:${gateway.port}`);
  });
  after(async () => {
    client?.close();
    await gateway?.stop();
    await echo?.stop();
    control?.close();
    jwksServer?.close();
    await bus?.close();
    await cluster?.close();
  });

  const echoCall = (metadata = new grpc.Metadata()) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      client.unary(
        { payload: Buffer.from('hello') },
        metadata,
        { deadline: Date.now() + 5000 },
        (error) => resolve(error),
      ),
    );

  test('an anonymous Registry/Register and Launcher/Stop are refused, nothing is forwarded, echo traffic is untouched', async () => {
    const refusedBefore = await counterValue(gatewayMetrics.rejected, {
      reason: 'service-internal',
    });
    const hijack = halyard.discovery.v1.RegisterRequest.encode({
      instance: {
        serviceId: 'aaa',
        instanceId: 'evil',
        address: '127.0.0.1:9',
        grpcServices: [ECHO_SERVICE],
        status: InstanceStatus.UP,
      },
    }).finish();
    const stop = halyard.launcher.v1.ComponentRequest.encode({ component: 'gateway' }).finish();
    const [register, stopped, ...echoes] = await Promise.all([
      rawUnary(client, `/${REGISTRY}/Register`, hijack),
      rawUnary(client, `/${LAUNCHER}/Stop`, stop),
      ...Array.from({ length: 20 }, () => echoCall()),
    ]);
    for (const [error, service] of [
      [register, REGISTRY],
      [stopped, LAUNCHER],
    ] as const) {
      assert.equal(error?.code, grpc.status.PERMISSION_DENIED);
      assert.equal(
        error?.details,
        `${service} is a Halyard control-plane service: gateways do not route it to clients`,
      );
    }
    assert.deepEqual(echoes, Array(20).fill(null), 'echo calls alongside all succeed');
    assert.equal(controlStreams, 0, 'nothing reached the instance claiming them');
    assert.equal(
      await counterValue(gatewayMetrics.rejected, { reason: 'service-internal' }),
      refusedBefore + 2,
    );
    assert.equal(gateway.table.route(REGISTRY), undefined, 'never in the routing table');
  });

  test('x-halyard-* headers a client sends never reach the backend', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-halyard-gateway', 'spoofed-gateway');
    metadata.set('x-halyard-instance', 'echo-1');
    metadata.set('x-halyard-user-key', 'someone-else');
    metadata.set('x-request-id', 'kept');
    const seenBefore = echo.calls.length;
    assert.equal(await echoCall(metadata), null);
    const seen = echo.calls[seenBefore]!.metadata.getMap();
    assert.deepEqual(
      Object.keys(seen).filter((key) => key.startsWith('x-halyard-')),
      [],
    );
    assert.equal(seen['x-request-id'], 'kept', 'other headers pass');
  });

  test('tokens without exp, for another audience, or signed by a rotated-out key are refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = (key: SigningKey, claims: { exp?: number; aud?: string; sub?: string } = {}) => {
      const jwt = new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: key.kid })
        .setSubject(claims.sub ?? 'ada')
        .setIssuer(ISSUER)
        .setAudience(claims.aud ?? AUDIENCE)
        .setIssuedAt(now);
      if (claims.exp !== 0) jwt.setExpirationTime(claims.exp ?? now + 600);
      return jwt.sign(key.privateKey);
    };
    const asUser = async (jwt: string) => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${jwt}`);
      return echoCall(metadata);
    };
    const unauthenticated = async (jwt: string, why: RegExp) => {
      const error = await asUser(jwt);
      assert.equal(error?.code, grpc.status.UNAUTHENTICATED);
      assert.match(error!.details, why);
    };
    assert.equal(await asUser(await token(k1)), null, 'a good token passes');
    await unauthenticated(await token(k1, { exp: 0 }), /no "exp" claim/);
    await unauthenticated(await token(k1, { aud: 'billing' }), /"aud" claim is not accepted/);
    await unauthenticated(await token(k1, { exp: now + 2 * 86_400 }), /longer than/);

    // The identity provider rotates k1 out: the gateway fetches the new set and a token
    // k1 signs from then on is refused.
    jwks = { keys: [await k2.jwk()] };
    const fetchesBefore = jwksFetches;
    let n = 0;
    await until(
      'k2 accepted',
      async () => (await asUser(await token(k2, { sub: `u${n++}` }))) === null,
    );
    assert.ok(jwksFetches > fetchesBefore);
    await unauthenticated(await token(k1, { sub: 'fresh' }), /no matching key in the JWKS/);
    assert.deepEqual(logs.withId(GatewayLogIds.jwtClaimsUnchecked), [], 'iss and aud set');
  });

  test('an UNAVAILABLE answer names the service and the failure, never an address or errno', async () => {
    const closed = createNetServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await register(bus, {
      serviceId: 'slow',
      instanceId: 'slow-1',
      address: `127.0.0.1:${port}`,
      grpcServices: ['halyard.testing.v1.Slow'],
    });
    await until('slow routed', () => gateway.table.route('halyard.testing.v1.Slow'));
    const error = await rawUnary(client, '/halyard.testing.v1.Slow/Call', new Uint8Array());
    assert.equal(error?.code, grpc.status.UNAVAILABLE);
    assert.match(error!.details, /slow/);
    assert.match(error!.details, /cannot connect|down/);
    assert.doesNotMatch(error!.details, /127\.0\.0\.1|:\d{2,5}\b|\bE[A-Z]{4,}\b/);
    assert.ok(
      logs
        .withId(GatewayLogIds.upstreamConnectFailed)
        .some((line) => line.address === `127.0.0.1:${port}`),
      'the address is in the log',
    );
  });
});
