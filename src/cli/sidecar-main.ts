#!/usr/bin/env node
/**
 * The lean entry of `meshgate sidecar` (the proxy process next to every meshed pod). main.ts loads
 * every command's modules (translation, providers, admin, YAML ...) before it looks at its arguments;
 * the proxy needs none of them, and each loaded module is resident memory for the pod's whole life.
 *
 *   node sidecar-main.js sidecar ARGS        the proxy (what the launcher execs as the proxy uid)
 *   node sidecar-main.js plan-sidecar ARGS   prints, as shell words, the command that starts the
 *                                            sidecar for ARGS (sidecar.ts `launchPlan`): bin/meshgate
 *                                            `eval exec`s it, so only the proxy process remains
 *
 * Exit codes as main.ts: 2 for a usage error, 1 for a failure, else the command's.
 */
import { runEntry, usageFail as fail, UsageError, waitForSignal } from './entry.js';
import { launchPlan, parseSidecarOptions, shellQuote, SIDECAR_ENTRY, sidecarCommand, SIDECAR_USAGE } from './sidecar.js';

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (args.includes('--help') || args.includes('-h')) {
    // The plan for --help is the entry printing the usage (bin/meshgate execs what the plan prints).
    if (command === 'plan-sidecar') process.stdout.write(`${shellQuote([process.execPath, ...process.execArgv, SIDECAR_ENTRY, 'sidecar', '--help'])}\n`);
    else process.stdout.write(`usage: ${SIDECAR_USAGE}\n`);
    return 0;
  }
  if (command === 'plan-sidecar') {
    const plan = launchPlan(parseSidecarOptions(args, fail), args, fail);
    process.stdout.write(`${shellQuote(plan.argv)}\n`);
    return 0;
  }
  if (command === 'sidecar') return sidecarCommand(args, fail, waitForSignal);
  throw new UsageError(`sidecar-main.js runs "sidecar" or "plan-sidecar", not "${command ?? ''}" (use the meshgate command)`);
}

runEntry(main);
