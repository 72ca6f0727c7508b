/**
 * Stable ids of the console's log lines (`HALW` + number + severity), so that operators
 * can alert on them and they survive rewording.
 */
export const ConsoleLogIds = {
  listening: 'HALW0001I',
  stopped: 'HALW0002I',
  refused: 'HALW0020W',
  replayFailed: 'HALW0030W',
  controlSent: 'HALW0040I',
  controlForbidden: 'HALW0041W',
  controlFailed: 'HALW0042W',
} as const;
