/**
 * Stable ids of the launcher's log lines (`HALL` + number + severity), so that
 * operators can alert on them and they survive rewording.
 */
export const LogIds = {
  // One per lifecycle transition (the same facts as the events on the bus).
  starting: 'HALL0001I',
  started: 'HALL0002I',
  ready: 'HALL0003I',
  exited: 'HALL0004W',
  restarting: 'HALL0005I',
  gaveUp: 'HALL0006E',
  stopping: 'HALL0007I',
  stopped: 'HALL0008I',
  // The launcher itself.
  listening: 'HALL0009I',
  launcherStarted: 'HALL0010I',
  launcherStopping: 'HALL0011I',
  launcherStopped: 'HALL0012I',
  configInvalid: 'HALL0013E',
  refreshApplied: 'HALL0014I',
  refreshRejected: 'HALL0015W',
  // Children's own output, relayed line by line.
  childStdout: 'HALL0020I',
  childStderr: 'HALL0021W',
  spawnFailed: 'HALL0022E',
  notReady: 'HALL0023W',
  killed: 'HALL0024W',
  eventNotPublished: 'HALL0025E',
  settingsUnwritten: 'HALL0026E',
  // Recovery: from the launchers bucket, else by replay.
  replayed: 'HALL0030I',
  leftoverStopped: 'HALL0031W',
  leftoverAdopted: 'HALL0032I',
  leftoverGone: 'HALL0033I',
  recoveredRecorded: 'HALL0034I',
  childrenNotRecorded: 'HALL0035E',
  adoptedOutdated: 'HALL0036W',
  // Control.
  rollingRestart: 'HALL0040I',
  rollingAborted: 'HALL0041E',
  controlRefused: 'HALL0042W',
  plaintextTokens: 'HALL0043W',
  drainMarkContended: 'HALL0044W',
  // Mesh configuration from the bus, and its rollouts.
  meshVersionApplied: 'HALL0050I',
  meshVersionFailed: 'HALL0051E',
  rolloutStep: 'HALL0052I',
  rolloutStepFailed: 'HALL0053E',
  rolloutWaiting: 'HALL0054I',
  rolloutSkipped: 'HALL0055W',
  noMeshVersion: 'HALL0056W',
  meshVersionUnread: 'HALL0057W',
} as const;
