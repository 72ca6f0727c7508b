/**
 * Stable ids of the console's log lines (`HALW` + number + severity), so that operators
 * can alert on them and they survive rewording.
 */
export const ConsoleLogIds = {
  listening: 'HALW0001I',
  stopped: 'HALW0002I',
  refused: 'HALW0020W',
  replayFailed: 'HALW0030W',
} as const;
