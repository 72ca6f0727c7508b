import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import type { Bus } from '../../bus/index.js';
import { tokenDigest } from '../../services/common/callers.js';
import {
  ConsoleAccess,
  ConsoleConfigError,
  checkControl,
  checkExposure,
  isLoopback,
} from '../../services/console/access.js';
import { consoleConfig } from '../../services/console/config.js';
import { parseListen, startConsole } from '../../services/console/server.js';

const TOKEN = 'a-console-access-token';
const tokens = [{ sha256: tokenDigest(TOKEN), identity: 'ops' }];
const tls = { certFile: 'c.pem', keyFile: 'k.pem', clientCaFile: 'ca.pem' };

function request(headers: Record<string, string>, authorized?: boolean): IncomingMessage {
  return { headers, socket: authorized === undefined ? {} : { authorized } } as never;
}

describe('console access', () => {
  test('loopback addresses are told apart from the rest', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']) {
      assert.equal(isLoopback(host), true, host);
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'console.example.com', '128.0.0.1']) {
      assert.equal(isLoopback(host), false, host);
    }
  });

  test('a non-loopback listener without tokens or required client certificates refuses to start', async () => {
    assert.throws(() => checkExposure('0.0.0.0', [], undefined), ConsoleConfigError);
    assert.throws(
      () => checkExposure('10.0.0.5', [], { ...tls, requireClientCert: false }),
      /not a loopback address, without access control/,
    );
    checkExposure('0.0.0.0', tokens, undefined);
    checkExposure('0.0.0.0', [], { ...tls, requireClientCert: true });
    checkExposure('127.0.0.1', [], undefined);
    // Before anything else: the bus is never touched.
    await assert.rejects(
      startConsole({ bus: {} as Bus, listen: '0.0.0.0:0', logger: pino({ level: 'silent' }) }),
      /refusing to listen on 0\.0\.0\.0/,
    );
  });

  test('with tokens, a request needs a listed one: bearer, cookie or first-load query', () => {
    const access = new ConsoleAccess(tokens);
    const url = new URL('http://console/');
    assert.equal(access.allows(request({}), url), false, 'missing');
    assert.equal(access.allows(request({ authorization: 'Bearer forged' }), url), false);
    assert.equal(access.allows(request({ cookie: 'halyard_console_token=forged' }), url), false);
    assert.equal(access.allows(request({}), new URL('http://console/?token=forged')), false);
    assert.equal(access.allows(request({ authorization: `Bearer ${TOKEN}` }), url), true);
    assert.equal(
      access.allows(request({ cookie: `x=1; halyard_console_token=${TOKEN}` }), url),
      true,
    );
    assert.equal(access.allows(request({}), new URL(`http://console/?token=${TOKEN}`)), true);
    assert.deepEqual(access.tokenCaller(request({ authorization: `Bearer ${TOKEN}` }), url), {
      identity: 'ops',
      digest: tokenDigest(TOKEN),
    });
    const query = new URL(`http://console/?token=${TOKEN}`);
    assert.equal(access.tokenCaller(request({}), query)?.identity, 'ops', 'a first page load');
    assert.equal(access.tokenCaller(request({})), undefined, 'without the URL, no query token');
    assert.equal(access.allows(request({}, true), url), true, 'a verified client certificate');
    assert.equal(access.allows(request({}, false), url), false, 'an unverified one');
  });

  test('without tokens every request that reached the listener is shown the console', () => {
    assert.equal(new ConsoleAccess([]).allows(request({}), new URL('http://console/')), true);
  });

  test('control needs access tokens, so that every action names who asked', async () => {
    assert.throws(() => checkControl(true, []), /control .* needs access tokens/);
    checkControl(true, tokens);
    checkControl(false, []);
    // Before anything else: the bus is never touched.
    await assert.rejects(
      startConsole({
        bus: {} as Bus,
        listen: '127.0.0.1:0',
        control: true,
        logger: pino({ level: 'silent' }),
      }),
      ConsoleConfigError,
    );
  });

  test('--listen and the config file are checked', () => {
    assert.deepEqual(parseListen('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(parseListen('[::1]:9000'), { host: '::1', port: 9000 });
    assert.deepEqual(parseListen(':9000'), { host: '127.0.0.1', port: 9000 });
    assert.throws(() => parseListen('9000'), ConsoleConfigError);
    assert.throws(() => parseListen('127.0.0.1:70000'), ConsoleConfigError);
    assert.equal(consoleConfig.parse({}).listen, '127.0.0.1:9000');
    assert.equal(consoleConfig.parse({}).control, false, 'read-only unless turned on');
    assert.equal(consoleConfig.parse({ control: true, tokens }).control, true);
    assert.throws(() => consoleConfig.parse({ control: 'yes' }));
    assert.throws(() => consoleConfig.parse({ tokens: [{ sha256: TOKEN, identity: 'ops' }] }));
    assert.throws(() => consoleConfig.parse({ listen: '0.0.0.0:9000', password: 'x' }));
  });
});
