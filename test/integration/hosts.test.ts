import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { procStat } from '../../services/common/proc.js';
import { type Host, Hosts } from '../support/hosts.js';

const PORT = 7400;

/** A TCP server on the host's address that answers every connection with the host's name. */
async function serve(host: Host): Promise<void> {
  const script = `require('net').createServer((s) => s.end('${host.name}')).listen(${PORT}, '${host.address}', () => console.log('ready'))`;
  const child = host.spawn(process.execPath, ['-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await once(child.stdout!, 'data');
}

const CONNECT = (address: string) =>
  `const s=require('net').connect(${PORT},'${address}');let d='';` +
  `s.setTimeout(1000,()=>{console.log('TIMEOUT');process.exit()});` +
  `s.on('data',(c)=>d+=c).on('end',()=>console.log(d)).on('error',(e)=>console.log(e.code))`;

/** What a connection from inside `from` to address reads: the server's name or an error code. */
async function probeFrom(from: Host, address: string): Promise<string> {
  const child = from.spawn(process.execPath, ['-e', CONNECT(address)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (chunk) => (out += chunk));
  await once(child, 'exit');
  return out.trim();
}

/** The same from the test process, in the root namespace. */
function probeFromRoot(address: string): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    const socket = net.connect(PORT, address);
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve('TIMEOUT');
    });
    socket.on('data', (chunk) => (data += chunk));
    socket.on('end', () => resolve(data));
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function leftovers(prefix: string): string[] {
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  return [...namespaces.split('\n'), ...links.split('\n')].filter((line) => line.includes(prefix));
}

const HARNESS = new URL('../support/hosts.ts', import.meta.url).href;

/** A process that creates one host, prints the harness id, then runs `then`. */
async function harnessProcess(then: string) {
  const script = `import { Hosts } from '${HARNESS}'; const h = Hosts.create(1); console.log(h.id); ${then}`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { id: line.toString().trim(), exited, kill: () => child.kill('SIGKILL') };
}

describe('hosts as network namespaces', () => {
  let hosts: Hosts;
  before(async () => {
    hosts = Hosts.create(3);
    for (const host of hosts.hosts) await serve(host);
  });
  after(() => hosts?.close());

  test('every host reaches every other host and the test process reaches them all', async () => {
    for (const from of hosts.hosts) {
      for (const to of hosts.hosts) {
        assert.equal(await probeFrom(from, to.address), to.name, `${from.name} → ${to.name}`);
      }
    }
    for (const to of hosts.hosts) assert.equal(await probeFromRoot(to.address), to.name);
  });

  test("a host's loopback is its own", async () => {
    const [one, two] = [hosts.host(1), hosts.host(2)];
    assert.notEqual(await probeFrom(two, one.address), 'ECONNREFUSED');
    assert.equal(
      await probeFrom(two, '127.0.0.1'),
      'ECONNREFUSED',
      'nothing listens on host 2 loopback',
    );
  });

  test('a cut host reaches no one and no one reaches it; healed, it is back', async () => {
    const [one, two, three] = [hosts.host(1), hosts.host(2), hosts.host(3)];
    one.cut();
    try {
      assert.notEqual(await probeFrom(two, one.address), one.name);
      assert.notEqual(await probeFromRoot(one.address), one.name);
      assert.notEqual(await probeFrom(one, three.address), three.name);
      assert.equal(await probeFrom(two, three.address), three.name, 'the others still talk');
    } finally {
      one.heal();
    }
    assert.equal(await probeFrom(two, one.address), one.name);
  });

  test('killing a host kills every process in it and nothing elsewhere', async () => {
    const three = hosts.host(3);
    assert.ok(three.pids().length >= 1);
    await three.killAll();
    assert.deepEqual(three.pids(), []);
    assert.equal(await probeFromRoot(three.address), 'ECONNREFUSED');
    assert.equal(await probeFromRoot(hosts.host(1).address), hosts.host(1).name);
  });

  test('close removes every namespace, link and process', async () => {
    const extra = Hosts.create(2);
    await serve(extra.host(1));
    const pids = extra.host(1).pids();
    assert.ok(leftovers(extra.id).length > 0);
    await extra.close();
    assert.deepEqual(leftovers(extra.id), []);
    // Dead: gone, or a zombie this process has not reaped yet (it spawned them).
    for (const pid of pids) assert.ok([undefined, 'Z'].includes(procStat(pid)?.state), `${pid}`);
  });

  test('a harness whose process exits without closing tears down on exit', async () => {
    const child = await harnessProcess('process.exit(0);');
    await child.exited;
    assert.deepEqual(leftovers(child.id), []);
  });

  test('what a killed harness left behind is swept by the next one', async () => {
    const child = await harnessProcess('setInterval(() => {}, 1000);');
    assert.ok(leftovers(child.id).length > 0);
    child.kill();
    await child.exited;
    assert.ok(leftovers(child.id).length > 0, 'kill -9 leaves the namespaces behind');
    const next = Hosts.create(1);
    await next.close();
    assert.deepEqual(leftovers(child.id), []);
  });
});
