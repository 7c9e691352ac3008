/**
 * The command-line flags for edge security (issue 5), parsed into TranslateOptions fields:
 *
 *   --path-normalization NONE|BASE|MERGE_SLASHES|DECODE_AND_MERGE_SLASHES   (default MERGE_SLASHES)
 *   --escaped-slashes REJECT|DECODE|KEEP                                  (default REJECT)
 *   --headers-with-underscores REJECT_REQUEST|DROP_HEADER|ALLOW           (default REJECT_REQUEST)
 *   --gateway-namespace NS   namespace whose security policies apply besides the root namespace (MeshConfig rootNamespace, default istio-system) (default istio-system)
 */

import type { EscapedSlashesAction, PathNormalizationMode, UnderscoreHeadersAction } from '../ir/types.js';
import { DEFAULT_TRANSLATE_OPTIONS, type TranslateOptions } from '../translate/index.js';

export const SECURITY_FLAGS = {
  'path-normalization': { type: 'string' },
  'escaped-slashes': { type: 'string' },
  'headers-with-underscores': { type: 'string' },
  'gateway-namespace': { type: 'string' },
} as const;

type SecurityOptions = Pick<TranslateOptions, 'pathNormalization' | 'escapedSlashes' | 'headersWithUnderscores' | 'gatewayNamespace'>;

/** Throws an Error whose message is the one-line usage problem. */
export function securityOptions(str: (k: string) => string | undefined, usage: (message: string) => Error): SecurityOptions {
  const pick = <T extends string>(flag: string, allowed: readonly T[], dflt: T): T => {
    const v = str(flag);
    if (v === undefined) return dflt;
    if (!(allowed as readonly string[]).includes(v)) throw usage(`--${flag}: "${v}" is not one of ${allowed.join(', ')}`);
    return v as T;
  };
  const ns = str('gateway-namespace') ?? DEFAULT_TRANSLATE_OPTIONS.gatewayNamespace;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) throw usage(`--gateway-namespace: "${ns}" is not a namespace name`);
  return {
    pathNormalization: pick<PathNormalizationMode>('path-normalization', ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'], DEFAULT_TRANSLATE_OPTIONS.pathNormalization),
    escapedSlashes: pick<EscapedSlashesAction>('escaped-slashes', ['REJECT', 'DECODE', 'KEEP'], DEFAULT_TRANSLATE_OPTIONS.escapedSlashes),
    headersWithUnderscores: pick<UnderscoreHeadersAction>('headers-with-underscores', ['REJECT_REQUEST', 'DROP_HEADER', 'ALLOW'], DEFAULT_TRANSLATE_OPTIONS.headersWithUnderscores),
    gatewayNamespace: ns,
  };
}
