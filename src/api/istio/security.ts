/**
 * security.istio.io RequestAuthentication and AuthorizationPolicy (served as v1 and v1beta1, same
 * shapes): every spec field of istio/api security/v1beta1/{request_authentication,authorization}.proto
 * and type/v1beta1/selector.proto, as the CRDs accept them (lowerCamelCase JSON names).
 */

import { any, arrayOf, boolean, duration, object, objectMeta, oneOfStrings, string, stringMap, strings } from '../schema.js';
import type { ObjectSchema } from '../schema.js';

function securityKind(name: string, spec: ObjectSchema): ObjectSchema {
  return object({ apiVersion: string, kind: string, metadata: objectMeta(), spec, status: any }, { name });
}

const workloadSelector = object({ matchLabels: stringMap }, { name: 'WorkloadSelector' });
const policyTargetReference = object({ group: string, kind: string, name: string, namespace: string }, { name: 'PolicyTargetReference', required: ['kind', 'name'] });

const jwtHeader = object({ name: string, prefix: string }, { name: 'JWTHeader', required: ['name'] });
const claimToHeader = object({ header: string, claim: string }, { name: 'ClaimToHeader', required: ['header', 'claim'] });

const jwtRule = object(
  {
    issuer: string,
    audiences: strings,
    jwksUri: string,
    jwks: string,
    fromHeaders: arrayOf(jwtHeader),
    fromParams: strings,
    fromCookies: strings,
    outputPayloadToHeader: string,
    forwardOriginalToken: boolean,
    outputClaimToHeaders: arrayOf(claimToHeader),
    timeout: duration,
    spaceDelimitedClaims: strings,
  },
  { name: 'JWTRule', required: ['issuer'] },
);

export const requestAuthentication: ObjectSchema = securityKind(
  'RequestAuthentication',
  object(
    { selector: workloadSelector, targetRef: policyTargetReference, targetRefs: arrayOf(policyTargetReference), jwtRules: arrayOf(jwtRule) },
    { name: 'RequestAuthentication', oneOf: [['selector', 'targetRef', 'targetRefs']] },
  ),
);

const source = object(
  {
    principals: strings,
    notPrincipals: strings,
    requestPrincipals: strings,
    notRequestPrincipals: strings,
    namespaces: strings,
    notNamespaces: strings,
    serviceAccounts: strings,
    notServiceAccounts: strings,
    ipBlocks: strings,
    notIpBlocks: strings,
    remoteIpBlocks: strings,
    notRemoteIpBlocks: strings,
  },
  { name: 'Source' },
);

const operation = object(
  { hosts: strings, notHosts: strings, ports: strings, notPorts: strings, methods: strings, notMethods: strings, paths: strings, notPaths: strings },
  { name: 'Operation' },
);

const condition = object({ key: string, values: strings, notValues: strings }, { name: 'Condition', required: ['key'] });

const rule = object(
  {
    from: arrayOf(object({ source }, { name: 'Rule.From' })),
    to: arrayOf(object({ operation }, { name: 'Rule.To' })),
    when: arrayOf(condition),
  },
  { name: 'Rule' },
);

export const authorizationPolicy: ObjectSchema = securityKind(
  'AuthorizationPolicy',
  object(
    {
      selector: workloadSelector,
      targetRef: policyTargetReference,
      targetRefs: arrayOf(policyTargetReference),
      rules: arrayOf(rule),
      action: oneOfStrings('ALLOW', 'DENY', 'AUDIT', 'CUSTOM'),
      provider: object({ name: string }, { name: 'ExtensionProvider' }),
    },
    { name: 'AuthorizationPolicy', oneOf: [['selector', 'targetRef', 'targetRefs']] },
  ),
);

/** PeerAuthentication (istio/api security/v1beta1/peer_authentication.proto); `portLevelMtls` keys are port numbers (strings in JSON/YAML). */
const peerMtls = object({ mode: oneOfStrings('UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT') }, { name: 'PeerAuthentication.MutualTLS' });

export const peerAuthentication: ObjectSchema = securityKind(
  'PeerAuthentication',
  object({ selector: workloadSelector, mtls: peerMtls, portLevelMtls: any }, { name: 'PeerAuthentication' }),
);
