/**
 * What every command-line entry shares (main.ts and the lean sidecar-main.ts): the two kinds of
 * user-facing errors, the wait for SIGINT/SIGTERM, and the exit codes. Nothing else is imported here,
 * so the lean entry stays lean.
 *
 * Exit codes: 2 for a usage error; 1 for a failure (one line for a user mistake or a system error on
 * something the user named, else the stack); otherwise the command's own code.
 */

export class UsageError extends Error {}
/** A user mistake that is not bad usage (a config path that is not a directory, a busy port): one line, exit 1. */
export class UserError extends Error {}

export function usageFail(message: string): never {
  throw new UsageError(message);
}

export function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

/** Runs an entry's `main` and exits with its code, or with the code of what it threw. */
export function runEntry(main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`meshgate: ${e.message}\n`);
        process.exit(2);
      }
      // A user mistake, or a system error on something the user named (a path, a port): one line.
      if (e instanceof UserError || /^E[A-Z]+$/.test(String((e as NodeJS.ErrnoException).code ?? ''))) {
        process.stderr.write(`meshgate: ${(e as Error).message}\n`);
        process.exit(1);
      }
      process.stderr.write(`meshgate: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
