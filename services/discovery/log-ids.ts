/**
 * Stable ids of discovery's log lines (`HALD` + number + severity): operators alert
 * on them, and they survive rewording of the messages.
 */
export const LogIds = {
  starting: 'HALD0001I',
  ready: 'HALD0002I',
  stopping: 'HALD0003I',
  stopped: 'HALD0004I',
  startFailed: 'HALD0005E',
  stopFailed: 'HALD0006E',
  registered: 'HALD0010I',
  deregistered: 'HALD0011I',
  statusChanged: 'HALD0012I',
  rejected: 'HALD0013W',
  reregistered: 'HALD0014I',
  leasesExpired: 'HALD0020I',
  selfPreservationEntered: 'HALD0021W',
  selfPreservationExited: 'HALD0022I',
  holdFailed: 'HALD0023E',
  probeDown: 'HALD0030W',
  probeUp: 'HALD0031I',
  probeWriteFailed: 'HALD0032E',
  ownershipChanged: 'HALD0033I',
  staticLoaded: 'HALD0040I',
  staticRenewFailed: 'HALD0041E',
  announceFailed: 'HALD0042E',
  clientRegistered: 'HALD0050I',
  clientReregistering: 'HALD0051W',
  clientFailover: 'HALD0052W',
  clientDraining: 'HALD0053I',
  clientDeregistered: 'HALD0054I',
  clientRenewFailed: 'HALD0055W',
} as const;
