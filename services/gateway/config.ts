/**
 * The gateway's settings: YAML file, then `HALYARD_GATEWAY_*` environment variables,
 * then flags, validated by one zod schema whose errors name the field.
 */
import { z } from 'zod';
import { id } from '../../bus/index.js';

const port = z.number().int().min(0).max(65_535);

export const gatewayConfigSchema = z.object({
  /** This replica's id: in events, logs and the `x-halyard-gateway` header. */
  id,
  nats: z.object({
    servers: z.array(z.string().min(1)).min(1, 'name at least one NATS server'),
  }),
  listen: z.object({ host: z.string().default('0.0.0.0'), port: port.default(8080) }).prefault({}),
  /** Client-facing TLS (ALPN h2); plain h2c when absent. */
  tls: z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
  admin: z.object({ host: z.string().default('127.0.0.1'), port: port.default(9090) }).prefault({}),
  limits: z
    .object({
      /** HTTP/2 header list size advertised to clients; larger requests are refused. */
      maxHeaderListBytes: z.number().int().min(1024).default(16_384),
      /** Concurrent calls per gateway before RESOURCE_EXHAUSTED; 0: no limit. */
      maxConcurrentCalls: z.number().int().nonnegative().default(0),
      /** Cap on every call's deadline, also given to calls without one; 0: none. */
      maxTimeoutMs: z.number().int().nonnegative().default(0),
      /** Flow-control window per stream and per connection, both ways. */
      windowBytes: z
        .number()
        .int()
        .min(65_535)
        .max(2 ** 31 - 1)
        .default(1 << 20),
    })
    .prefault({}),
  retry: z
    .object({
      maxAttempts: z.number().int().min(1).max(10).default(3),
      /** Retries in flight as a share of calls in flight (Envoy's budget_percent / 100). */
      budgetRatio: z.number().min(0).max(1).default(0.2),
      minConcurrent: z.number().int().nonnegative().default(3),
      /** Request bytes kept for replay on another instance; larger requests are not retried. */
      bufferBytes: z.number().int().nonnegative().default(65_536),
    })
    .prefault({}),
  ejection: z
    .object({
      consecutiveFailures: z.number().int().min(1).default(3),
      baseSeconds: z.number().positive().default(5),
      maxSeconds: z.number().positive().default(300),
    })
    .prefault({}),
  upstream: z
    .object({
      backoffBaseMs: z.number().int().positive().default(100),
      backoffMaxMs: z.number().int().positive().default(10_000),
      /** Internal TLS towards instances (h2 by ALPN); h2c when absent. Cert and key: mTLS. */
      tls: z
        .object({
          caFile: z.string().min(1),
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
        })
        .optional(),
    })
    .prefault({}),
  /** Sticky routing (`lb.policy=user`): how callers are verified and keyed. */
  affinity: z
    .object({
      /**
       * Key of the HMAC that turns a user id into the user key stored on the bus; the
       * same on every gateway (env HALYARD_GATEWAY_MESH_SECRET). Never logged.
       */
      meshSecret: z.string().min(16, 'must be at least 16 characters').optional(),
      jwt: z
        .object({
          /** Shared secret of HS256 tokens (env HALYARD_GATEWAY_JWT_SECRET). */
          hs256Secret: z.string().min(32, 'must be at least 32 characters').optional(),
          /** PEM files of RS256 / ES256 public keys. */
          publicKeyFiles: z.array(z.string().min(1)).default([]),
          /** A JSON Web Key Set file. */
          jwksFile: z.string().min(1).optional(),
          issuer: z.string().min(1).optional(),
          audience: z.string().min(1).optional(),
        })
        .prefault({}),
      /**
       * How often this gateway removes preferences idle past their lapse (plus
       * `sweepGraceSeconds` for clock skew) from the bucket; 0: never. Every replica
       * may sweep: removals are idempotent and re-checked against the stored value.
       */
      sweepSeconds: z.number().nonnegative().default(60),
      sweepGraceSeconds: z.number().nonnegative().default(30),
    })
    .prefault({}),
  /** On SIGTERM, calls in flight get this long to finish after GOAWAY. */
  stopTimeoutSeconds: z.number().positive().default(20),
});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;
