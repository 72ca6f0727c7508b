/**
 * Stable ids of the cache service's log lines (`HALC` + number + severity), so that
 * operators can alert on them and they survive rewording.
 */
export const CacheLogIds = {
  starting: 'HALC0001I',
  listening: 'HALC0002I',
  ready: 'HALC0003I',
  stopping: 'HALC0004I',
  stopped: 'HALC0005I',
  valueLimitLowered: 'HALC0010W',
  plaintextTokens: 'HALC0011W',
  rejected: 'HALC0020I',
  evicted: 'HALC0030I',
  trimFailed: 'HALC0040W',
  foreignValue: 'HALC0041W',
  viewLagging: 'HALC0042W',
  writeFailed: 'HALC0050E',
  registrationFailed: 'HALC0060W',
  configInvalid: 'HALC0090E',
  startFailed: 'HALC0091E',
} as const;
