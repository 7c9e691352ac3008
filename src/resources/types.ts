/** The objects meshgate reads, as they come from a provider (file directory or API server). */

export interface ObjectMeta {
  name: string;
  /** `default` when the object does not say. */
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** RFC 3339 timestamp, or null (objects from files usually have none). */
  creationTimestamp: string | null;
}

export interface ObjectOrigin {
  /** File, relative to the config directory; null when not from a file. */
  file: string | null;
  /** 1-based line where the object starts; null when unknown. */
  line: number | null;
  /**
   * Arrival-independent order key: for files `<relative path>#<document index, 6 digits>`; for the API
   * server the creationTimestamp then uid. Used where an API orders by creation and the object has no
   * creationTimestamp.
   */
  order: string;
  /** 1-based line of each field path (`spec.rules[0].host`) where known; `{}` when unknown. */
  fieldLines: Record<string, number>;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  /** The whole object as parsed (including apiVersion, kind, metadata, spec, ...). */
  body: Record<string, unknown>;
  origin: ObjectOrigin;
}
