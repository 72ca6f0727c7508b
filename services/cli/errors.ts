/**
 * How a command fails: a one-line message on stderr and an exit code scripts can rely on.
 */

/** Exit codes of every command. */
export const ExitCodes = {
  ok: 0,
  /** The command ran and found a problem (a failed call, a refused control request). */
  failed: 1,
  /** Invalid flags or arguments (commander's usage errors too). */
  usage: 2,
  /** The bus (or a gateway) could not be reached. */
  unreachable: 3,
} as const;

/** A failure the user can act on: its message is all they see. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCodes.failed,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Prints `halyard: <message>` and sets the exit code (CliError's, else failed). */
export function reportError(error: unknown): void {
  process.stderr.write(`halyard: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = error instanceof CliError ? error.exitCode : ExitCodes.failed;
}
