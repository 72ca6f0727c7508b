/**
 * Stable ids of the gateway's log lines (`HALG` + number + severity), so that operators
 * can alert on them and they survive rewording.
 */
export const GatewayLogIds = {
  listening: 'HALG0001I',
  ready: 'HALG0002I',
  stopping: 'HALG0003I',
  stopped: 'HALG0004I',
  stopTimedOut: 'HALG0005W',
  viewsFailed: 'HALG0006E',
  routesChanged: 'HALG0010I',
  serviceNameClash: 'HALG0011W',
  upstreamConnected: 'HALG0020I',
  upstreamLost: 'HALG0021W',
  upstreamConnectFailed: 'HALG0022W',
  upstreamGoaway: 'HALG0023I',
  instanceEjected: 'HALG0030W',
  instanceReturned: 'HALG0031I',
  retryBudgetExhausted: 'HALG0040W',
  badRequest: 'HALG0050W',
  clientSessionError: 'HALG0051W',
  eventPublishFailed: 'HALG0060E',
  affinityWriteFailed: 'HALG0080W',
  affinityMoved: 'HALG0081I',
  identityUnconfigured: 'HALG0082W',
  jwtClaimsUnchecked: 'HALG0083W',
  affinityReleased: 'HALG0084I',
  affinityReleaseIgnored: 'HALG0085W',
  registrationFailed: 'HALG0090W',
  configInvalid: 'HALG0070E',
  fatal: 'HALG0071E',
} as const;
