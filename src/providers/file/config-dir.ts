/**
 * Is a config path a readable directory? Checked before anything is loaded, so that a file, a
 * missing or an unreadable path is one clear line and exit code 1, never "0 objects" served as ready
 * and never a stack trace.
 */
import { readdir, stat } from 'node:fs/promises';

/** null when `dir` is a readable directory, else a one-line message naming it (`what` says which flag or argument). */
export async function configDirProblem(dir: string, what: string): Promise<string | null> {
  let info;
  try {
    info = await stat(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `${what} ${dir}: no such directory`;
    if (code === 'EACCES' || code === 'EPERM') return `${what} ${dir}: permission denied`;
    return `${what} ${dir}: cannot read (${code ?? (e as Error).message})`;
  }
  if (!info.isDirectory()) return `${what} ${dir}: is a file, not a directory (meshgate reads every .yaml, .yml and .json file in a directory: give the directory that holds it)`;
  try {
    await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return `${what} ${dir}: cannot list the directory (${code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code ?? (e as Error).message})`;
  }
  return null;
}
