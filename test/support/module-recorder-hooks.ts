/** Module hooks of module-recorder.ts: they run on the loader thread and append each loaded URL to a file. */
import { appendFileSync } from 'node:fs';

let file = '';

export function initialize(data: { file: string }): void {
  file = data.file;
}

export async function load(url: string, context: unknown, next: (url: string, context: unknown) => Promise<unknown>): Promise<unknown> {
  if (file) appendFileSync(file, `${url}\n`);
  return next(url, context);
}
