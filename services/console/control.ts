/**
 * The console's only actions: a launcher's restart, stop and start of one component (or
 * one of its instances), sent as `halyard launcher` sends them. They exist only when the
 * operator turned control on (`control: true`, which needs access tokens, and a bus role
 * that may send control requests: operator), and a request acts only when it carries a
 * listed token and shows that it comes from the console's own page:
 *
 * - `POST /api/control` with a JSON body: a cross-site form cannot send one, and a
 *   cross-site script would need a CORS preflight the console never grants;
 * - the header `x-halyard-csrf` holding the value `GET /api/session` gives the page (an
 *   HMAC of the token's digest under a key drawn when the console starts), which only a
 *   same-origin reader can learn;
 * - an `Origin` and `Sec-Fetch-Site`, when the browser sends them, that name the
 *   console itself; and the token's cookie is `SameSite=Strict`.
 *
 * Every action is logged with the caller's identity (never the token) and counted.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Bus, ControlError, Subjects } from '../../bus/index.js';
import { ControlCodecsOf } from '../launcher/control.js';
import type { ConsoleAccess, TokenCaller } from './access.js';
import { ConsoleLogIds } from './log-ids.js';
import { consoleMetrics } from './metrics.js';

const CONTROL_VERBS = ['restart', 'stop', 'start'] as const;
export type ControlVerb = (typeof CONTROL_VERBS)[number];

/** The header that carries the page's anti-forgery value. */
export const CSRF_HEADER = 'x-halyard-csrf';

/** A rolling restart of a large component takes a while: its reply is awaited this long. */
const CONTROL_TIMEOUT_MS = 300_000;
/** A control request's body is a few names: anything longer is not one. */
const BODY_MAX_BYTES = 4096;

const controlRequest = z.strictObject({
  host: z.string().min(1).max(64),
  verb: z.enum(CONTROL_VERBS),
  component: z.string().min(1).max(64),
  /** 0: every instance of the component. */
  instance: z.number().int().min(0).max(65_535).default(0),
});

export type ControlRequest = z.infer<typeof controlRequest>;

/** What the page learns of its own rights. */
export interface ControlSession {
  readonly control: boolean;
  /** Why the page is read-only, when it is. */
  readonly why?: string;
  readonly identity?: string;
  /** The value to send in `x-halyard-csrf`. */
  readonly csrf?: string;
}

export interface ControlOptions {
  readonly bus: Bus;
  readonly access: ConsoleAccess;
  /** Whether the operator turned control on. */
  readonly enabled: boolean;
  /** Whether the console serves HTTPS: the origin its pages have. */
  readonly secure: boolean;
  readonly logger: Logger;
}

/** Why a request may not act: answered 403 with `message`, counted by `reason`. */
class Forbidden extends Error {
  constructor(
    readonly reason: 'off' | 'no_token' | 'forgery',
    message: string,
  ) {
    super(message);
  }
}

class BadRequest extends Error {}

export class ConsoleControl {
  /** Keys the anti-forgery values; drawn anew at each start, so a restart ends old pages' rights. */
  private readonly key = randomBytes(32);

  constructor(private readonly options: ControlOptions) {}

  /** `GET /api/session`: whether this caller's page may act, and its anti-forgery value. */
  session(req: IncomingMessage): ControlSession {
    if (!this.options.enabled) {
      return { control: false, why: 'read-only: this console runs without control' };
    }
    const caller = this.options.access.tokenCaller(req);
    if (!caller) {
      return {
        control: false,
        why: 'read-only: actions need an access token (open the console as /?token=<token>)',
      };
    }
    return { control: true, identity: caller.identity, csrf: this.csrfOf(caller) };
  }

  /** `POST /api/control`: checks the caller, sends the verb, answers the launcher's reply. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let caller: TokenCaller;
    let request: ControlRequest;
    let subject: string;
    try {
      caller = this.admit(req);
      request = parseRequest(await readBody(req));
      subject = subjectOf(request);
    } catch (error) {
      if (error instanceof Forbidden) {
        consoleMetrics.controlForbidden.inc({ reason: error.reason });
        this.options.logger.warn(
          {
            msgId: ConsoleLogIds.controlForbidden,
            reason: error.reason,
            identity: this.options.access.tokenCaller(req)?.identity,
            from: req.socket.remoteAddress,
            origin: req.headers.origin,
          },
          'console control request refused',
        );
        json(res, 403, { error: error.message });
      } else {
        req.resume();
        json(res, 400, { error: (error as Error).message });
      }
      return;
    }
    const { host, verb, component, instance } = request;
    const what = { host, verb, component, instance, identity: caller.identity };
    try {
      const codecs = ControlCodecsOf[verb];
      const reply = await this.options.bus.request(
        subject,
        { component, instance },
        codecs,
        CONTROL_TIMEOUT_MS,
      );
      const outcome = reply.accepted ? 'accepted' : 'refused';
      consoleMetrics.control.inc({ verb, outcome });
      this.options.logger.info(
        { msgId: ConsoleLogIds.controlSent, ...what, outcome, detail: reply.detail },
        `console ${verb} ${outcome}`,
      );
      json(res, 200, { accepted: reply.accepted, detail: reply.detail });
    } catch (error) {
      consoleMetrics.control.inc({ verb, outcome: 'failed' });
      const message =
        error instanceof ControlError
          ? `${error.code}: ${error.message}`
          : `launcher ${host}: ${(error as Error).message}`;
      this.options.logger.warn(
        { msgId: ConsoleLogIds.controlFailed, ...what, err: message },
        `console ${verb} failed`,
      );
      json(res, 502, { error: message });
    }
  }

  /** The caller of a request that may act; throws Forbidden otherwise. */
  private admit(req: IncomingMessage): TokenCaller {
    if (!this.options.enabled) {
      throw new Forbidden(
        'off',
        'this console is read-only: actions need control: true, access tokens and the bus operator role',
      );
    }
    // The token in a query string only opens the page: it never acts.
    const caller = this.options.access.tokenCaller(req);
    if (!caller) throw new Forbidden('no_token', 'actions need a listed access token');
    const origin = req.headers.origin;
    const own = `${this.options.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
    if (origin !== undefined && origin !== own) {
      throw new Forbidden('forgery', `a request from ${origin} may not act on this console`);
    }
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') {
      throw new Forbidden('forgery', `a ${site} request may not act on this console`);
    }
    if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
      throw new Forbidden('forgery', 'an action is a JSON body (content-type: application/json)');
    }
    const given = Buffer.from(String(req.headers[CSRF_HEADER] ?? ''));
    const expected = Buffer.from(this.csrfOf(caller));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new Forbidden(
        'forgery',
        `an action needs the ${CSRF_HEADER} header the console's page sends (from /api/session)`,
      );
    }
    return caller;
  }

  private csrfOf(caller: TokenCaller): string {
    return createHmac('sha256', this.key).update(caller.digest).digest('base64url');
  }
}

function parseRequest(body: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new BadRequest('the body is not JSON');
  }
  const parsed = controlRequest.safeParse(value);
  if (!parsed.success) {
    throw new BadRequest(
      `an action is {host, verb: ${CONTROL_VERBS.join('|')}, component, instance?}: ${parsed.error.issues
        .map((i) => `${i.path.join('.') || 'body'}: ${i.message}`)
        .join('; ')}`,
    );
  }
  return parsed.data;
}

/** The launcher's control subject; a host id that cannot be one is a bad request. */
function subjectOf({ host, verb }: ControlRequest): string {
  try {
    return Subjects.control('launcher', host, verb);
  } catch (error) {
    throw new BadRequest((error as Error).message);
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_MAX_BYTES) {
        req.removeAllListeners('data');
        reject(new BadRequest(`the body is longer than ${BODY_MAX_BYTES} bytes`));
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(JSON.stringify(body));
}
