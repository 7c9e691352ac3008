/**
 * Telemetry API tracing -> `IRSnapshot.tracing`. PURE.
 *
 * The Telemetry objects applying to this gateway are those of access logging (access-logging.ts:
 * root namespace, gateway namespace, selector; oldest per level). Entries whose `match.mode` is
 * SERVER do not apply (a gateway is a CLIENT). Fields merge from least to most specific, as Istio
 * merges them: the last entry that sets `providers`, `randomSamplingPercentage` or
 * `disableSpanReporting` wins; `customTags` merge by name. Without providers, MeshConfig
 * `defaultProviders.tracing` names the provider; without one either, the `--tracing-endpoint`
 * flag's exporter is used (the sampling and tags still apply).
 *
 * Providers: MeshConfig `extensionProviders[].opentelemetry` with `http` (OTLP/HTTP:
 * `http://<service>:<port><http.path, default /v1/traces>`). OTLP/gRPC (no `http`), Zipkin,
 * Datadog, SkyWalking and Stackdriver are reported unsupported and tracing is then off.
 * `useRequestIdForTraceSampling`, `enableIstioTags` and `disableContextPropagation` are not
 * implemented (warning when set to a non-default value); custom tags of kind `formatter` neither.
 */
import type { CustomTag, SourceRef, TracingConfig } from '../../ir/types.js';
import { arr, bool, isObj, num, obj, str } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { readMeshConfig } from '../mesh-config.js';
import { sourceOf, type TranslateContext } from '../types.js';
import { telemetriesHere } from './access-logging.js';

export function translateTracing(ctx: TranslateContext, resources: ResourceSet): TracingConfig {
  const mesh = readMeshConfig(ctx, resources);
  // Set inside the forEach callbacks below (declared with their full types: TS does not track closures).
  let named = null as { name: string; obj: KubeObject; field: string } | null;
  let samplingPercentage: number | null = null;
  let disableSpanReporting = false;
  const tags = new Map<string, CustomTag>();
  const sources: SourceRef[] = [];
  let configured = false;

  for (const t of telemetriesHere(ctx, resources, 'tracing')) {
    let used = false;
    arr(obj(t.body.spec).tracing).forEach((raw, i) => {
      const e = obj(raw);
      const field = `spec.tracing[${i}]`;
      if ((str(obj(e.match).mode) ?? 'CLIENT_AND_SERVER') === 'SERVER') {
        ctx.report('info', 'MG_NOT_BOUND', t, `${field}.match.mode`, "match.mode SERVER applies to sidecars' inbound traffic; a gateway uses the CLIENT settings");
        return;
      }
      used = true;
      const names = arr(e.providers).map((p) => str(obj(p).name) ?? '').filter((n) => n !== '');
      if (names.length > 1) ctx.report('warning', 'MG_UNSUPPORTED', t, `${field}.providers`, `only one tracing provider is used (as in Istio): "${names[0]}"`);
      if (names.length > 0) named = { name: names[0], obj: t, field: `${field}.providers[0]` };
      const pct = num(e.randomSamplingPercentage);
      if (pct !== undefined) samplingPercentage = pct;
      const disable = bool(e.disableSpanReporting);
      if (disable !== undefined) disableSpanReporting = disable;
      for (const [name, rawTag] of Object.entries(obj(e.customTags))) {
        const tag = obj(rawTag);
        const tagField = `${field}.customTags.${name}`;
        if (isObj(tag.literal)) tags.set(name, { name, kind: 'literal', value: str(tag.literal.value) ?? '', defaultValue: null });
        else if (isObj(tag.header)) tags.set(name, { name, kind: 'header', value: (str(tag.header.name) ?? '').toLowerCase(), defaultValue: str(tag.header.defaultValue) ?? null });
        else if (isObj(tag.environment)) tags.set(name, { name, kind: 'environment', value: str(tag.environment.name) ?? '', defaultValue: str(tag.environment.defaultValue) ?? null });
        else ctx.report('warning', 'MG_UNSUPPORTED', t, tagField, 'only literal, header and environment custom tags are supported; this tag is left out');
      }
      if (bool(e.useRequestIdForTraceSampling) === false) ctx.report('warning', 'MG_UNSUPPORTED', t, `${field}.useRequestIdForTraceSampling`, 'not implemented: new traces are sampled by trace id');
      if (bool(e.enableIstioTags) === false) ctx.report('warning', 'MG_UNSUPPORTED', t, `${field}.enableIstioTags`, 'not implemented: the Istio tags are always set');
      if (bool(e.disableContextPropagation) === true) ctx.report('warning', 'MG_UNSUPPORTED', t, `${field}.disableContextPropagation`, 'not implemented: trace context is always propagated');
    });
    if (used) {
      configured = true;
      sources.push(sourceOf(t, 'spec.tracing'));
    }
  }

  let endpoint: string | null = null;
  let providerName: string | null = null;
  if (configured) {
    const chosen = named?.name ?? arr(obj(mesh?.mesh.defaultProviders).tracing).map((n) => str(n) ?? '').find((n) => n !== '') ?? null;
    if (chosen !== null) {
      providerName = chosen;
      const from = named?.obj ?? mesh?.from ?? null;
      const field = named?.field ?? 'data.mesh.defaultProviders.tracing';
      const providers = arr(mesh?.mesh.extensionProviders);
      const idx = providers.findIndex((p) => str(obj(p).name) === chosen);
      if (idx < 0) {
        if (from !== null) ctx.report('error', 'MG_INVALID_FIELD', from, field, `tracing provider "${chosen}" is not a MeshConfig extensionProviders[].name; tracing is off`);
      } else {
        const p = obj(providers[idx]);
        const otel = p.opentelemetry;
        if (isObj(otel) && isObj(otel.http)) {
          const service = str(otel.service) ?? '';
          const port = num(otel.port);
          const path = str(otel.http.path) ?? '/v1/traces';
          const url = `http://${service}:${port}${path}`;
          const field = `data.mesh.extensionProviders[${idx}].opentelemetry`;
          if (service === '' || port === undefined) ctx.report('error', 'MG_MISSING_FIELD', mesh!.from, field, `tracing provider "${chosen}" needs service and port; tracing is off`);
          else if (!Number.isInteger(port) || port < 1 || port > 65535) ctx.report('error', 'MG_INVALID_FIELD', mesh!.from, `${field}.port`, `tracing provider "${chosen}": port ${port} is not 1-65535; tracing is off`);
          else if (!path.startsWith('/') || !URL.canParse(url)) ctx.report('error', 'MG_INVALID_FIELD', mesh!.from, `${field}.http.path`, `tracing provider "${chosen}": "${url}" is not a valid URL (service a host name, path starting with /); tracing is off`);
          else endpoint = url;
        } else if (from !== null) {
          const type = isObj(otel) ? 'opentelemetry over gRPC (no http)' : (Object.keys(p).find((k) => k !== 'name') ?? 'unknown');
          ctx.report('warning', 'MG_UNSUPPORTED', from, field, `tracing provider "${chosen}" is ${type}; meshgate exports OTLP/HTTP only (opentelemetry with http); tracing is off`);
        }
      }
    }
  }
  return {
    configured,
    provider: providerName,
    endpoint,
    samplingPercentage,
    disableSpanReporting,
    customTags: [...tags.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    sources,
  };
}
