/**
 * A nats-server's HTTP monitoring endpoints (`/healthz`, `/jsz`, `/routez`…), read with
 * Node's own HTTP client: the local bus's readiness does not depend on (or mask bugs in)
 * the NATS client library.
 */
import * as http from 'node:http';

const HTTP_TIMEOUT_MS = 1_000;

/** Plain HTTP GET without keep-alive; any failure becomes status 0 so callers just keep polling. */
export function monitorGet(
  port: number,
  urlPath: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: urlPath, agent: false, timeout: HTTP_TIMEOUT_MS },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (err) => resolve({ status: 0, body: String(err) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, body: String(err) }));
  });
}

/** A monitoring endpoint's JSON, or undefined when it does not answer 200 with JSON. */
export async function monitorJson(port: number, urlPath: string): Promise<unknown> {
  const res = await monitorGet(port, urlPath);
  if (res.status !== 200) return undefined;
  try {
    return JSON.parse(res.body);
  } catch {
    return undefined;
  }
}

/** The parts of `/jsz` read here and by callers. */
export interface Jsz {
  meta_cluster?: { leader?: string };
  account_details?: {
    stream_detail?: {
      name: string;
      config?: { num_replicas?: number };
      state?: { messages?: number };
      cluster?: { leader?: string };
    }[];
  }[];
}
