/**
 * `meshgate --version` and `meshgate COMMAND --help`: what each command does and takes. The full
 * flag list of `run` is the one in main.ts's usage; this adds a line of purpose per command.
 */
import { readFileSync } from 'node:fs';

/** The package version (package.json next to dist/), e.g. `0.1.0`. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

const PURPOSE: Readonly<Record<string, string>> = {
  run: 'Serve the Ingress, Istio and Gateway objects of a directory (--config DIR) or of a cluster (--kubernetes), reloading on change.',
  validate: 'Check directories of configuration: every diagnostic with object, field and file:line; exit 1 when any is an error.',
  translate: 'Print the routing snapshot (IR) a directory translates to, as JSON (private keys redacted), or as tables (--routes, --clusters).',
  routes: 'The routes of a running gateway, as a table (from its admin server).',
  clusters: 'The clusters and endpoints of a running gateway, with outlier-detection state (from its admin server).',
  demo: 'Echo backends on 127.0.0.1:9101-9104 and the gateway serving examples/ (what `npm start` runs).',
};

/** The help of one command: its purpose and its usage lines taken from the full usage text. */
export function commandHelp(command: string, usage: string): string | null {
  const purpose = PURPOSE[command];
  if (purpose === undefined) return null;
  const lines = usage.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`  meshgate ${command}`));
  const own: string[] = [];
  if (start >= 0) {
    own.push(lines[start].slice(2));
    for (let i = start + 1; i < lines.length && /^\s{3,}/.test(lines[i]); i++) own.push(lines[i].slice(2));
  }
  return `${purpose}\n\nusage:\n${own.map((l) => `  ${l}`).join('\n')}\n`;
}
