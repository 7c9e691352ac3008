/**
 * What every provider produces: a source of configuration objects (the file directory, the
 * Kubernetes API server). Defined here, with the providers, so they depend on no other layer;
 * control/ consumes them (providers/ never import control/, ir/, translate/ or runtime/).
 */
import type { Diagnostic } from '../lib/diagnostic.js';
import type { KubeObject } from '../resources/types.js';

/** Every object a source holds right now, with the diagnostics of loading them. */
export interface LoadedConfig {
  objects: KubeObject[];
  diagnostics: Diagnostic[];
}

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
