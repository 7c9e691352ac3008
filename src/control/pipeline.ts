/**
 * The config pipeline: loaded objects -> checked objects (with last-good fallback) -> ResourceSet ->
 * translate -> snapshot. No I/O here; the provider feeds it, the controller applies what it returns.
 *
 * "Last good" follows what a Kubernetes API server does with a bad write: it is rejected and the
 * object keeps its previous version. So:
 *  - a file that no longer parses keeps contributing the objects it had at its last good load;
 *  - an object that fails schema checks keeps its last accepted version (or is absent if it never had one);
 *  - a snapshot that fails IR validation is not served at all; the previous snapshot keeps serving.
 */
import type { Diagnostic } from '../lib/diagnostic.js';
import { compareDiagnostics } from '../lib/diagnostic.js';
import type { IRSnapshot } from '../ir/types.js';
import { ResourceSet, objectIdentity, objectKey } from '../resources/resource-set.js';
import type { KubeObject } from '../resources/types.js';
import { checkObjects } from '../api/kinds.js';
import { translate, type TranslateOptions } from '../translate/index.js';
import type { GatewayApiStatus } from '../translate/gatewayapi/status.js';

export type { LoadedConfig } from '../providers/types.js';
import type { LoadedConfig } from '../providers/types.js';

export interface PipelineResult {
  /** The snapshot to serve, or null when this input must not replace the serving one. */
  snapshot: IRSnapshot | null;
  /** Every diagnostic of this run: loading, schema, translation. */
  diagnostics: Diagnostic[];
  /** Objects that went into translation. */
  resources: ResourceSet;
  /** Gateway API status made by this run's translation (written to Kubernetes by the leader, shown by validate and the admin API). */
  gatewayApiStatus?: GatewayApiStatus;
}

export class ConfigPipeline {
  readonly #options: TranslateOptions;
  /** Last accepted version of each object, by kind/namespace/name. */
  #lastGoodObjects = new Map<string, KubeObject>();
  /** Objects each file contributed at its last load that parsed. */
  #lastGoodByFile = new Map<string, KubeObject[]>();

  constructor(options: TranslateOptions) {
    this.#options = options;
  }

  run(input: LoadedConfig): PipelineResult {
    const diagnostics: Diagnostic[] = [...input.diagnostics];

    // Files with a parse error: their previous objects stand in for whatever part of them loaded.
    const brokenFiles = new Set(input.diagnostics.filter((d) => d.reason === 'MG_PARSE_ERROR' && d.file).map((d) => d.file as string));
    const byFile = new Map<string, KubeObject[]>();
    for (const o of input.objects) {
      const f = o.origin.file ?? '';
      let list = byFile.get(f);
      if (!list) byFile.set(f, (list = []));
      list.push(o);
    }
    const candidates: KubeObject[] = [];
    for (const [file, objects] of byFile) if (!brokenFiles.has(file)) candidates.push(...objects);
    for (const file of brokenFiles) {
      const previous = this.#lastGoodByFile.get(file);
      if (previous) {
        candidates.push(...previous);
        diagnostics.push({ severity: 'warning', reason: 'MG_PARSE_ERROR', object: null, field: null, file, line: null, message: `${file} does not parse; the ${previous.length} object(s) it defined at its last good load keep serving` });
      }
    }

    const checked = checkObjects(candidates);
    diagnostics.push(...checked.diagnostics);
    const accepted = new Map<string, KubeObject>();
    // Keyed by API group too: an Istio Gateway and a Gateway API Gateway may share a name.
    for (const o of checked.accepted) accepted.set(objectIdentity(o), o);
    // Objects rejected by the schema check keep their last accepted version.
    const rejectedKeys = new Set(
      checked.diagnostics.filter((d) => d.severity === 'error' && d.object).map((d) => objectKey(d.object!.kind, d.object!.namespace, d.object!.name)),
    );
    for (const [key, previous] of this.#lastGoodObjects) {
      if (rejectedKeys.has(objectKey(previous.kind, previous.metadata.namespace, previous.metadata.name)) && !accepted.has(key)) {
        accepted.set(key, previous);
        diagnostics.push({ severity: 'warning', reason: 'MG_INVALID_OBJECT', object: { kind: previous.kind, namespace: previous.metadata.namespace, name: previous.metadata.name }, field: null, file: previous.origin.file, line: previous.origin.line, message: 'this object has errors; its last accepted version keeps serving' });
      }
    }

    const resources = new ResourceSet(accepted.values());
    const result = translate(resources, this.#options);
    diagnostics.push(...result.diagnostics);
    const invalid = result.diagnostics.some((d) => d.reason === 'MG_INVALID_IR');

    // Remember what was good this time.
    for (const [file, objects] of byFile) if (!brokenFiles.has(file)) this.#lastGoodByFile.set(file, objects);
    for (const file of [...this.#lastGoodByFile.keys()]) if (!byFile.has(file) && !brokenFiles.has(file)) this.#lastGoodByFile.delete(file);
    this.#lastGoodObjects = new Map(accepted);

    return { snapshot: invalid ? null : result.ir, diagnostics: diagnostics.sort(compareDiagnostics), resources, gatewayApiStatus: result.gatewayApiStatus };
  }
}
