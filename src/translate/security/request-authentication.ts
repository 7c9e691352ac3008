/**
 * RequestAuthentication -> JwtRule[] (one per `jwtRules[]` entry). PURE: a `jwksUri` is carried as
 * is and fetched by the data plane; inline `jwks` is only checked to be a JSON Web Key Set.
 *
 * Istio defaults made explicit in the IR: no `fromHeaders`/`fromParams`/`fromCookies` at all means
 * header `Authorization: Bearer <token>` and query parameter `access_token`; `timeout` 5 s;
 * `forwardOriginalToken` false.
 */
import type { JwtRule } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import { arr, bool, obj, str } from '../../lib/unknown.js';
import { parseDuration } from '../../api/duration.js';
import { sourceOf, type TranslateContext } from '../types.js';

export const DEFAULT_JWKS_TIMEOUT_MS = 5000;

const HEADER_NAME = /^[!#$%&'*+\-.^`|~0-9A-Za-z]+$/;

export function translateRequestAuthentication(ctx: TranslateContext, o: KubeObject): JwtRule[] {
  const spec = obj(o.body.spec);
  const out: JwtRule[] = [];
  arr(spec.jwtRules).forEach((raw, i) => {
    const field = `spec.jwtRules[${i}]`;
    const r = obj(raw);
    const issuer = str(r.issuer) ?? '';
    if (issuer === '') {
      ctx.report('error', 'MG_MISSING_FIELD', o, `${field}.issuer`, 'a JWT rule needs an issuer; the rule is dropped');
      return;
    }
    let jwks = str(r.jwks) ?? null;
    let jwksUri = str(r.jwksUri) ?? null;
    if (jwks !== null && !isJwks(jwks)) {
      ctx.report('error', 'MG_INVALID_FIELD', o, `${field}.jwks`, 'jwks is not a JSON Web Key Set ({"keys": [...]}); tokens of this issuer are rejected (401)');
      jwks = '{"keys":[]}';
    }
    if (jwksUri !== null && !/^https?:\/\/[^/?#\s]+/i.test(jwksUri)) {
      ctx.report('error', 'MG_INVALID_FIELD', o, `${field}.jwksUri`, `jwksUri "${jwksUri}" is not an http(s) URL; tokens of this issuer are rejected (401)`);
      jwksUri = null;
      jwks = '{"keys":[]}';
    }
    if (jwks !== null && jwksUri !== null) {
      ctx.report('warning', 'MG_INVALID_FIELD', o, `${field}.jwks`, 'both jwks and jwksUri are set; the inline jwks is used');
      jwksUri = null;
    }
    if (jwks === null && jwksUri === null) {
      ctx.report('warning', 'MG_UNSUPPORTED', o, field, 'no jwks or jwksUri: OpenID discovery of the issuer is not supported; tokens of this issuer are rejected (401)');
      jwks = '{"keys":[]}';
    }
    const fromHeaders: JwtRule['fromHeaders'] = [];
    arr(r.fromHeaders).forEach((h, j) => {
      const name = (str(obj(h).name) ?? '').toLowerCase();
      if (!HEADER_NAME.test(name)) return ctx.report('error', 'MG_INVALID_FIELD', o, `${field}.fromHeaders[${j}].name`, `"${name}" is not a header name; location ignored`);
      fromHeaders.push({ name, prefix: str(obj(h).prefix) ?? '' });
    });
    const fromParams = arr(r.fromParams).filter((p): p is string => typeof p === 'string' && p !== '');
    const fromCookies = arr(r.fromCookies).filter((p): p is string => typeof p === 'string' && p !== '');
    if (arr(r.fromHeaders).length === 0 && arr(r.fromParams).length === 0 && arr(r.fromCookies).length === 0) {
      fromHeaders.push({ name: 'authorization', prefix: 'Bearer ' });
      fromParams.push('access_token');
    }
    const outputClaimToHeaders: JwtRule['outputClaimToHeaders'] = [];
    arr(r.outputClaimToHeaders).forEach((c, j) => {
      const header = (str(obj(c).header) ?? '').toLowerCase();
      const claim = str(obj(c).claim) ?? '';
      if (!HEADER_NAME.test(header) || claim === '') return ctx.report('error', 'MG_INVALID_FIELD', o, `${field}.outputClaimToHeaders[${j}]`, 'needs a valid header name and a claim; ignored');
      outputClaimToHeaders.push({ header, claim });
    });
    let outputPayloadToHeader = str(r.outputPayloadToHeader)?.toLowerCase() ?? null;
    if (outputPayloadToHeader !== null && !HEADER_NAME.test(outputPayloadToHeader)) {
      ctx.report('error', 'MG_INVALID_FIELD', o, `${field}.outputPayloadToHeader`, `"${outputPayloadToHeader}" is not a header name; ignored`);
      outputPayloadToHeader = null;
    }
    let timeoutMs = DEFAULT_JWKS_TIMEOUT_MS;
    if (typeof r.timeout === 'string') {
      const ms = parseDuration(r.timeout);
      if (ms !== null && ms > 0) timeoutMs = Math.ceil(ms);
    }
    out.push({
      name: `requestauthentication/${o.metadata.namespace}/${o.metadata.name}/jwt/${i}`,
      source: sourceOf(o, field),
      issuer,
      audiences: arr(r.audiences).filter((a): a is string => typeof a === 'string'),
      jwks,
      jwksUri,
      jwksTimeoutMs: timeoutMs,
      fromHeaders,
      fromParams,
      fromCookies,
      outputPayloadToHeader,
      outputClaimToHeaders,
      forwardOriginalToken: bool(r.forwardOriginalToken) ?? false,
      spaceDelimitedClaims: arr(r.spaceDelimitedClaims).filter((a): a is string => typeof a === 'string'),
    });
  });
  return out;
}

function isJwks(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && Array.isArray((v as { keys?: unknown }).keys);
  } catch {
    return false;
  }
}
