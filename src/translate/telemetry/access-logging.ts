/**
 * Access logging, configured the Istio way -> `IRSnapshot.accessLogging`. PURE.
 *
 * Sources (Istio 1.2x semantics, pilot/pkg/model/telemetry.go and networking/core/accesslog.go):
 *  - Telemetry (`telemetry.istio.io/v1`, `v1alpha1`) `spec.accessLogging[]` applying to this gateway:
 *    the root namespace (MeshConfig `rootNamespace`, default `istio-system`) without selector (mesh-wide), the gateway's namespace
 *    without selector, and one in the gateway's namespace whose `selector.matchLabels` selects the
 *    gateway's labels (`--gateway-labels`), from least to most specific; an empty `matchLabels` is
 *    namespace-wide. Within one level the oldest object (creation order) wins; the others get a
 *    warning. `targetRef(s)` name Gateway API gateways and waypoints, not this Istio gateway
 *    (warning, ignored).
 *  - Merged as Istio's `mergeLogs`: the providers in scope are those named by the most specific
 *    Telemetry that names any (else MeshConfig `defaultProviders.accessLogging`); entries, least
 *    specific first, set (`disabled`, `filter`) for the providers they name, or, naming none, for
 *    the providers of the entry before them (the defaults for the first). `match.mode`: a gateway
 *    is a CLIENT (Istio's ListenerClassGateway uses the client-side settings), so `SERVER` entries
 *    do not apply.
 *  - Providers: `envoy` (built-in: `/dev/stdout` with MeshConfig `accessLogFormat` and
 *    `accessLogEncoding`), or MeshConfig `extensionProviders[]` with `envoyFileAccessLog`
 *    (`path`, `logFormat.text` or `logFormat.labels` = JSON). Other provider types (OpenTelemetry,
 *    gRPC/HTTP ALS) are reported unsupported.
 *  - When no Telemetry entry applies: MeshConfig `defaultProviders.accessLogging`, else the legacy
 *    `accessLogFile` (`accessLogEncoding`, `accessLogFormat`); when none of these is set the
 *    configuration says nothing and the operator's `--access-log` flags decide (see ir/telemetry.ts).
 *
 * Formats and filters are parsed here to report errors with their field; a log whose format or
 * filter is broken is dropped (nothing logged through it) rather than logging everything.
 */
import type { AccessLog, AccessLogging, SourceRef } from '../../ir/types.js';
import { arr, bool, isObj, obj, str, strMap, type Obj } from '../../lib/unknown.js';
import { CelError, compileCel } from '../../formats/cel.js';
import { LogFormatError, parseLogFormat } from '../../formats/log-format.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { selectsSomePod } from '../selection.js';
import type { KubeObject } from '../../resources/types.js';
import { matchesLabels } from '../backends.js';
import { readMeshConfig, rootNamespaceOf, type MeshConfig } from '../mesh-config.js';
import { sourceOf, type TranslateContext } from '../types.js';

export const TELEMETRY_GROUP = 'telemetry.istio.io';

/** What one provider does after the levels are merged. */
interface ProviderSetting {
  disabled: boolean;
  filter: string | null;
  /** The Telemetry and entry index that set it. */
  from: KubeObject;
  field: string;
}

export function translateAccessLogging(ctx: TranslateContext, resources: ResourceSet): AccessLogging {
  const mesh = readMeshConfig(ctx, resources);
  const m: Obj = mesh?.mesh ?? {};
  const defaults = arr(obj(m.defaultProviders).accessLogging).filter((n): n is string => typeof n === 'string');

  // Istio's mergeLogs (pilot/pkg/networking/core/accesslog.go), levels least specific first:
  // the providers in scope are those the most specific Telemetry naming any names (else MeshConfig
  // defaultProviders); an entry naming none acts on the providers of the entry before it (starting
  // from the defaults); later entries override a provider's disabled/filter.
  const telemetries = telemetriesHere(ctx, resources, 'accessLogging');
  const telemetryApplies = telemetries.length > 0;
  let inScope: string[] = defaults;
  for (const t of telemetries) {
    const names = arr(obj(t.body.spec).accessLogging).flatMap((e) => arr(obj(e).providers).map((p) => str(obj(p).name) ?? '')).filter((n) => n !== '');
    if (names.length > 0) inScope = names;
  }
  const inScopeSet = new Set(inScope);
  const settings = new Map<string, ProviderSetting>();
  let parent: string[] = defaults;
  for (const t of telemetries) {
    const entries = arr(obj(t.body.spec).accessLogging);
    entries.forEach((raw, i) => {
      const e = obj(raw);
      const field = `spec.accessLogging[${i}]`;
      const named = arr(e.providers).map((p) => str(obj(p).name) ?? '').filter((n) => n !== '');
      const names = named.length > 0 ? named : parent;
      parent = names;
      const mode = str(obj(e.match).mode) ?? 'CLIENT_AND_SERVER';
      if (mode === 'SERVER') {
        ctx.report('info', 'MG_NOT_BOUND', t, `${field}.match.mode`, 'match.mode SERVER applies to sidecars\' inbound traffic; a gateway uses the CLIENT settings');
        return;
      }
      if (names.length === 0) {
        ctx.report('warning', 'MG_MISSING_FIELD', t, `${field}.providers`, 'no provider named, none inherited from a less specific entry, and MeshConfig defaultProviders.accessLogging is empty: this entry configures no access log (name one, e.g. providers: [{name: envoy}])');
      }
      const filter = str(obj(e.filter).expression) ?? null;
      for (const name of names) {
        // A provider a more specific Telemetry no longer names is out of scope (Istio drops it).
        if (!inScopeSet.has(name)) continue;
        settings.set(name, { disabled: bool(e.disabled) ?? false, filter, from: t, field });
      }
    });
  }

  const logs: AccessLog[] = [];
  let configured = telemetryApplies;
  if (telemetryApplies) {
    for (const name of [...settings.keys()].sort()) {
      const s = settings.get(name)!;
      if (s.disabled) continue;
      const log = providerLog(ctx, mesh, name, s.from, `${s.field}.providers`);
      if (log === null) continue;
      if (s.filter !== null && !checkFilter(ctx, s.from, `${s.field}.filter.expression`, s.filter)) continue;
      logs.push({ ...log, filter: s.filter, sources: [...log.sources, sourceOf(s.from, s.field)] });
    }
  } else if (defaults.length > 0 && mesh !== null) {
    // MeshConfig default providers log without any Telemetry object.
    configured = true;
    for (const name of [...new Set(defaults)].sort()) {
      const log = providerLog(ctx, mesh, name, mesh.from, 'data.mesh.defaultProviders.accessLogging');
      if (log !== null) logs.push(log);
    }
  } else if (mesh !== null && (str(m.accessLogFile) ?? '') !== '') {
    configured = true;
    const log = meshFormatLog(ctx, mesh, 'mesh-config', str(m.accessLogFile)!);
    if (log !== null) logs.push(log);
  }
  return { configured, logs };
}

/** The Telemetry objects with `section` applying to this gateway, least specific first (root, namespace, selector). */
export function telemetriesHere(ctx: TranslateContext, resources: ResourceSet, section: 'accessLogging' | 'tracing'): KubeObject[] {
  const levels: KubeObject[][] = [[], [], []];
  const root = rootNamespaceOf(ctx, resources);
  for (const o of [...resources.ofKind('Telemetry')].sort(compareByCreation)) {
    if (!o.apiVersion.startsWith(`${TELEMETRY_GROUP}/`)) continue;
    const spec = obj(o.body.spec);
    if (spec[section] === undefined) continue;
    if (spec.targetRef !== undefined || spec.targetRefs !== undefined) {
      ctx.report('warning', 'MG_UNSUPPORTED', o, spec.targetRef !== undefined ? 'spec.targetRef' : 'spec.targetRefs', 'Telemetry with targetRef applies to Gateway API gateways and waypoints, not to this Istio gateway; use spec.selector');
      continue;
    }
    const ns = o.metadata.namespace;
    if (ns !== root && ns !== ctx.options.gatewayNamespace) {
      ctx.report('info', 'MG_NOT_BOUND', o, null, `Telemetry in namespace "${ns}" does not apply to the gateway (namespace "${ctx.options.gatewayNamespace}", root namespace "${root}")`);
      continue;
    }
    // Istio (pilot/pkg/model/telemetry.go): an empty matchLabels is namespace-wide; a selector only
    // selects workloads of its own namespace (the gateway's namespace, which may be the root one).
    const selector = strMap(obj(spec.selector).matchLabels);
    const hasSelector = Object.keys(selector).length > 0;
    if (hasSelector) {
      if (ns !== ctx.options.gatewayNamespace) {
        ctx.report('info', 'MG_NOT_BOUND', o, 'spec.selector', `a Telemetry selector selects workloads of its own namespace ("${ns}") only; the gateway is in "${ctx.options.gatewayNamespace}"`);
        continue;
      }
      if (!matchesLabels(ctx.options.gatewayLabels, selector)) {
        const elsewhere = selectsSomePod(resources, selector, ns);
        ctx.report(elsewhere ? 'info' : 'warning', 'MG_NOT_BOUND', o, 'spec.selector', `Telemetry selector does not select this gateway${elsewhere ? '' : ' nor any Pod: it applies to nothing'}`);
        continue;
      }
    }
    levels[hasSelector ? 2 : ns === root ? 0 : 1].push(o);
  }
  const out: KubeObject[] = [];
  for (const level of levels) {
    if (level.length === 0) continue;
    out.push(level[0]);
    for (const o of level.slice(1)) {
      ctx.report('warning', 'MG_DUPLICATE_OBJECT', o, `spec.${section}`, `Telemetry ${level[0].metadata.namespace}/${level[0].metadata.name} is older and applies at the same level; this one is ignored (Istio uses the oldest)`);
    }
  }
  return out;
}

type LogWithoutFilter = Omit<AccessLog, 'filter'> & { filter: null };

/** The access log of provider `name`, or null (reported on `from`/`field`) when it cannot be written. */
function providerLog(ctx: TranslateContext, mesh: MeshConfig | null, name: string, from: KubeObject, field: string): LogWithoutFilter | null {
  if (name === 'envoy') return meshFormatLog(ctx, mesh, 'envoy', '/dev/stdout');
  const providers = arr(mesh?.mesh.extensionProviders);
  const idx = providers.findIndex((p) => str(obj(p).name) === name);
  if (idx < 0 || mesh === null) {
    ctx.report('error', 'MG_INVALID_FIELD', from, field, `access-log provider "${name}" is neither "envoy" nor a MeshConfig extensionProviders[].name; nothing is logged through it`);
    return null;
  }
  const p = obj(providers[idx]);
  const meshField = `data.mesh.extensionProviders[${idx}]`;
  const file = p.envoyFileAccessLog;
  if (!isObj(file)) {
    const type = Object.keys(p).find((k) => k !== 'name') ?? 'unknown';
    ctx.report('warning', 'MG_UNSUPPORTED', from, field, `access-log provider "${name}" is of type ${type}; meshgate writes only envoyFileAccessLog (file) access logs, nothing is logged through it`);
    return null;
  }
  const path = str(file.path) ?? '';
  if (path === '') {
    ctx.report('error', 'MG_MISSING_FIELD', mesh.from, `${meshField}.envoyFileAccessLog.path`, `access-log provider "${name}" has no path`);
    return null;
  }
  const lf = obj(file.logFormat);
  const sources = [sourceOf(mesh.from)];
  if (isObj(lf.labels)) {
    const jsonFormat = jsonLabels(ctx, mesh.from, `${meshField}.envoyFileAccessLog.logFormat.labels`, lf.labels);
    return jsonFormat === null ? null : { provider: name, path, encoding: 'JSON', format: null, jsonFormat, filter: null, sources };
  }
  if (typeof lf.text === 'string') {
    if (!checkFormat(ctx, mesh.from, `${meshField}.envoyFileAccessLog.logFormat.text`, lf.text)) return null;
    return { provider: name, path, encoding: 'TEXT', format: lf.text, jsonFormat: null, filter: null, sources };
  }
  // No logFormat: Istio's default TEXT format.
  return { provider: name, path, encoding: 'TEXT', format: null, jsonFormat: null, filter: null, sources };
}

/** A log in MeshConfig's `accessLogEncoding` / `accessLogFormat` (the built-in `envoy` provider and the legacy `accessLogFile`). */
function meshFormatLog(ctx: TranslateContext, mesh: MeshConfig | null, provider: string, path: string): LogWithoutFilter | null {
  const m = mesh?.mesh ?? {};
  const sources: SourceRef[] = mesh === null ? [] : [sourceOf(mesh.from)];
  const encoding = (str(m.accessLogEncoding) ?? 'TEXT').toUpperCase();
  if (encoding !== 'TEXT' && encoding !== 'JSON') {
    ctx.report('error', 'MG_INVALID_FIELD', mesh!.from, 'data.mesh.accessLogEncoding', `accessLogEncoding "${String(m.accessLogEncoding)}" is not TEXT or JSON; TEXT is used`);
  }
  const format = str(m.accessLogFormat) ?? '';
  if (encoding === 'JSON') {
    if (format === '') return { provider, path, encoding: 'JSON', format: null, jsonFormat: null, filter: null, sources };
    // Istio reads a JSON accessLogFormat as an object of key -> format (Envoy json_format).
    let labels: unknown;
    try {
      labels = JSON.parse(format);
    } catch (e) {
      labels = undefined;
      ctx.report('error', 'MG_INVALID_FIELD', mesh!.from, 'data.mesh.accessLogFormat', `with accessLogEncoding JSON, accessLogFormat must be a JSON object of key -> format: ${(e as Error).message}; the default JSON keys are used`);
      return { provider, path, encoding: 'JSON', format: null, jsonFormat: null, filter: null, sources };
    }
    if (!isObj(labels)) {
      ctx.report('error', 'MG_INVALID_FIELD', mesh!.from, 'data.mesh.accessLogFormat', 'with accessLogEncoding JSON, accessLogFormat must be a JSON object of key -> format; the default JSON keys are used');
      return { provider, path, encoding: 'JSON', format: null, jsonFormat: null, filter: null, sources };
    }
    const jsonFormat = jsonLabels(ctx, mesh!.from, 'data.mesh.accessLogFormat', labels);
    return { provider, path, encoding: 'JSON', format: null, jsonFormat, filter: null, sources };
  }
  if (format === '') return { provider, path, encoding: 'TEXT', format: null, jsonFormat: null, filter: null, sources };
  // A bad format falls back to Istio's default rather than turning the log off (Istio rejects it; the line stays useful).
  const ok = checkFormat(ctx, mesh!.from, 'data.mesh.accessLogFormat', format);
  return { provider, path, encoding: 'TEXT', format: ok ? format : null, jsonFormat: null, filter: null, sources };
}

function jsonLabels(ctx: TranslateContext, from: KubeObject, field: string, labels: Obj): { key: string; format: string }[] | null {
  const out: { key: string; format: string }[] = [];
  for (const [key, value] of Object.entries(labels)) {
    if (typeof value !== 'string') {
      ctx.report('error', 'MG_INVALID_FIELD', from, `${field}.${key}`, `JSON access-log key "${key}" must map to a format string`);
      return null;
    }
    if (!checkFormat(ctx, from, `${field}.${key}`, value)) return null;
    out.push({ key, format: value });
  }
  return out;
}

function checkFormat(ctx: TranslateContext, from: KubeObject, field: string, format: string): boolean {
  try {
    parseLogFormat(format);
    return true;
  } catch (e) {
    if (!(e instanceof LogFormatError)) throw e;
    ctx.report('error', 'MG_INVALID_FIELD', from, field, `access-log format: ${e.message}`);
    return false;
  }
}

function checkFilter(ctx: TranslateContext, from: KubeObject, field: string, expression: string): boolean {
  try {
    compileCel(expression);
    return true;
  } catch (e) {
    if (!(e instanceof CelError)) throw e;
    ctx.report('error', 'MG_INVALID_FIELD', from, field, `CEL filter "${expression}": ${e.message}; this access log is off until the filter is fixed`);
    return false;
  }
}
