/**
 * A source of configuration objects. The file directory is one; the Kubernetes API server another.
 * Both feed the same pipeline.
 */
import { loadDirectory } from '../providers/file/load.js';
import { watchDirectory } from '../providers/file/watch.js';
import type { LoadedConfig } from './pipeline.js';

export interface ConfigSource {
  /** Every object as of now, with loading diagnostics. */
  load(): Promise<LoadedConfig>;
  /** Call `onChange` (debounced by the source) whenever `load` would return something new. */
  watch(onChange: () => void): { close(): void };
  /** Release connections and timers. */
  close?(): Promise<void> | void;
  /** For logs and the admin API: `dir:/path` or `kubernetes:https://...`. */
  readonly description: string;
}

export class DirectorySource implements ConfigSource {
  readonly description: string;
  constructor(readonly dir: string) {
    this.description = `dir:${dir}`;
  }
  load(): Promise<LoadedConfig> {
    return loadDirectory(this.dir);
  }
  watch(onChange: () => void): { close(): void } {
    return watchDirectory(this.dir, onChange);
  }
}
