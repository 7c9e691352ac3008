/**
 * A source of configuration objects. The file directory is one; the Kubernetes API server another.
 * Both feed the same pipeline.
 */
import { loadDirectory } from '../providers/file/load.js';
import { DEFAULT_DEBOUNCE_MS, directorySignature, watchDirectory } from '../providers/file/watch.js';
import { EmptiedFiles } from '../providers/file/emptied.js';
import type { ConfigSource, LoadedConfig } from '../providers/types.js';

export type { ConfigSource } from '../providers/types.js';

export class DirectorySource implements ConfigSource {
  readonly description: string;
  readonly #emptied = new EmptiedFiles();
  /** Until watching starts: the directory's signature taken before the last load. */
  #baseline: Promise<string> | null = null;
  #watching = false;
  constructor(readonly dir: string) {
    this.description = `dir:${dir}`;
  }
  async load(): Promise<LoadedConfig> {
    // The watcher compares with the directory as it was before this read, so a change made during
    // the first load or before watch() is called is reported, not taken as the starting state.
    if (!this.#watching) this.#baseline = directorySignature(this.dir).catch(() => '');
    await this.#baseline;
    // A file written just now may still be being written: read it once it has settled, as the watcher reports it.
    return loadDirectory(this.dir, this.#emptied, { settleMs: DEFAULT_DEBOUNCE_MS });
  }
  watch(onChange: () => void): { close(): void } {
    this.#watching = true;
    return watchDirectory(this.dir, onChange, this.#baseline !== null ? { baseline: this.#baseline } : {});
  }
}
