/**
 * A source of configuration objects. The file directory is one; the Kubernetes API server another.
 * Both feed the same pipeline.
 */
import { loadDirectory } from '../providers/file/load.js';
import { watchDirectory } from '../providers/file/watch.js';
import { EmptiedFiles } from '../providers/file/emptied.js';
import type { ConfigSource, LoadedConfig } from '../providers/types.js';

export type { ConfigSource } from '../providers/types.js';

export class DirectorySource implements ConfigSource {
  readonly description: string;
  readonly #emptied = new EmptiedFiles();
  constructor(readonly dir: string) {
    this.description = `dir:${dir}`;
  }
  load(): Promise<LoadedConfig> {
    return loadDirectory(this.dir, this.#emptied);
  }
  watch(onChange: () => void): { close(): void } {
    return watchDirectory(this.dir, onChange);
  }
}
