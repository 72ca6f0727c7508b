/** How `halyard up` ends early: a problem the user can fix, or a stop they asked for. */

/** A problem the user can fix; reported as one error line with its message id, exit code 1. */
export class UpError extends Error {
  constructor(
    readonly msgId: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** `up` was asked to stop (a signal): exit code 0. */
export class StopRequested extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopping on ${signal}`);
  }
}
