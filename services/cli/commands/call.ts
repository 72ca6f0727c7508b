/**
 * `halyard call <gateway> <service/method>`: a gRPC call through a gateway, JSON in and
 * JSON out, like grpcurl. The built-in contracts (the demo's among them) are known;
 * another service's .proto is given with --proto.
 */
import type { Command } from 'commander';
import { CliError, ExitCodes, reportError } from '../errors.js';
import { invoke, metadataOf, type Rpc } from '../grpc-client.js';
import { printJsonLine } from '../json.js';
import { positiveSecondsArg } from '../options.js';
import { findMethod, loadProtos, messageCodec, requestFromJson } from '../proto-message.js';

interface CallFlags {
  readonly data: string;
  readonly proto?: string[];
  readonly header?: string[];
  readonly timeout: number;
  readonly json: boolean;
}

/** Bytes as they are: for a method whose .proto is unknown. */
const rawCodec = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };

export function addCallCommand(program: Command): void {
  program
    .command('call')
    .description('a gRPC call through a gateway (JSON in, JSON out), like grpcurl')
    .argument('<gateway>', 'gateway address host:port (halyard up prints them)')
    .argument('<service/method>', 'e.g. demo.greeter.v1.Greeter/SayHello')
    .option('-d, --data <json>', 'the request message as JSON', '{}')
    .option('--proto <file...>', ".proto file(s) of the service (default: the demo's)")
    .option('-H, --header <key=value...>', 'request metadata, e.g. x-user-id=alice')
    .option('--timeout <seconds>', 'deadline', positiveSecondsArg, 10)
    .option('--json', 'one JSON message per line, nothing else', false)
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 the call failed (the gateway's status and message are printed),
2 bad arguments, 3 the gateway is unreachable.

Examples:
  halyard call 127.0.0.1:PORT demo.greeter.v1.Greeter/SayHello --data '{"name":"Ada"}'
  halyard call 127.0.0.1:PORT demo.greeter.v1.Greeter/StreamHellos --data '{"name":"Ada","count":5}'
  halyard call 127.0.0.1:PORT acme.orders.v1.Orders/Get --proto orders.proto --data '{"id":"7"}'`,
    )
    .action(async (gateway: string, target: string, opts: CallFlags) => {
      try {
        process.exitCode = await call(gateway, target, opts);
      } catch (error) {
        reportError(error);
      }
    });
}

async function call(gateway: string, target: string, flags: CallFlags): Promise<number> {
  const [service, methodName] = target.split('/');
  if (!service || !methodName) {
    throw new CliError(
      `expected <service>/<method>, e.g. demo.greeter.v1.Greeter/SayHello; got ${target}`,
      ExitCodes.usage,
    );
  }
  const method = findMethod(await loadProtos(flags.proto), service, methodName);
  const rpc: Rpc = {
    address: gateway,
    path: `/${service}/${methodName}`,
    metadata: metadataOf(flags.header),
    deadline: new Date(Date.now() + flags.timeout * 1000),
    responseStream: method?.responseStream ?? false,
  };
  if (!method) {
    // Not in the .proto we have: the gateway (and the service) still say what they make
    // of it, so send an empty message and show the reply's bytes.
    if (flags.data.trim() !== '{}') {
      throw new CliError(
        `${target} is not in ${flags.proto?.join(', ') ?? "the demo's .proto"}: give its .proto with --proto <file> to send --data`,
        ExitCodes.usage,
      );
    }
    await invoke(rpc, rawCodec, Buffer.alloc(0), (reply) =>
      printJsonLine({ base64: reply.toString('base64') }),
    );
    return ExitCodes.ok;
  }
  const request = requestFromJson(method, flags.data);
  if (method.requestStream) {
    throw new CliError(
      `${target} is client-streaming: not supported by halyard call`,
      ExitCodes.usage,
    );
  }
  await invoke(rpc, messageCodec(method), request, (reply, headers) => {
    const served = headers?.get('x-halyard-gateway')[0];
    process.stdout.write(
      `${JSON.stringify(reply)}${served && !flags.json ? `   (via ${served})` : ''}\n`,
    );
  });
  return ExitCodes.ok;
}
