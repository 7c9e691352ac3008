/**
 * gateway.networking.k8s.io kinds (Kubernetes Gateway API, standard channel v1.6 plus the experimental
 * fields meshgate reads): GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
 * ReferenceGrant, BackendTLSPolicy. Field names follow `apis/v1/*_types.go`.
 *
 * Enumerations the spec says an implementation must answer with a status condition (listener
 * `protocol`, match and filter `type`s, TLS `mode`) are plain strings here, so an unknown value reaches
 * the translator and becomes `Accepted=False UnsupportedValue` / `UnsupportedProtocol` instead of the
 * object being dropped. CEL rules (one filter of a type per rule, ...) are checked by the translator.
 */
import { any, arrayOf, boolean, duration, integer, object, objectMeta, portNumber, string, stringMap, strings } from '../schema.js';
import type { ObjectSchema, Schema } from '../schema.js';

function gatewayKind(name: string, spec: ObjectSchema): ObjectSchema {
  return object({ apiVersion: string, kind: string, metadata: objectMeta(), spec, status: any }, { name, required: ['spec'] });
}

const labelSelector = object(
  {
    matchLabels: stringMap,
    matchExpressions: arrayOf(object({ key: string, operator: string, values: strings }, { name: 'LabelSelectorRequirement', required: ['key', 'operator'] })),
  },
  { name: 'LabelSelector' },
);

const parentRef = object(
  { group: string, kind: string, namespace: string, name: string, sectionName: string, port: portNumber },
  { name: 'ParentReference', required: ['name'] },
);

const backendObjectRef = { group: string, kind: string, name: string, namespace: string, port: portNumber };
const backendRef = object({ ...backendObjectRef, weight: integer(0, 1_000_000) }, { name: 'BackendRef', required: ['name'] });

const headerValue = object({ name: string, value: string }, { name: 'HTTPHeader', required: ['name', 'value'] });
const headerModifier = object({ set: arrayOf(headerValue), add: arrayOf(headerValue), remove: strings }, { name: 'HTTPHeaderFilter' });
const pathModifier = object({ type: string, replaceFullPath: string, replacePrefixMatch: string }, { name: 'HTTPPathModifier', required: ['type'] });
const localObjectRef = object({ group: string, kind: string, name: string }, { name: 'LocalObjectReference', required: ['group', 'kind', 'name'] });
const mirror = object(
  {
    backendRef: object(backendObjectRef, { name: 'BackendObjectReference', required: ['name'] }),
    percent: integer(0, 100),
    fraction: object({ numerator: integer(0), denominator: integer(1) }, { name: 'Fraction', required: ['numerator'] }),
  },
  { name: 'HTTPRequestMirrorFilter', required: ['backendRef'], oneOf: [['percent', 'fraction']] },
);
const cors = object(
  {
    allowOrigins: strings,
    allowCredentials: boolean,
    allowMethods: strings,
    allowHeaders: strings,
    exposeHeaders: strings,
    maxAge: integer(0),
  },
  { name: 'HTTPCORSFilter' },
);

const httpFilter = object(
  {
    type: string,
    requestHeaderModifier: headerModifier,
    responseHeaderModifier: headerModifier,
    requestMirror: mirror,
    requestRedirect: object(
      { scheme: string, hostname: string, path: pathModifier, port: portNumber, statusCode: integer() },
      { name: 'HTTPRequestRedirectFilter' },
    ),
    urlRewrite: object({ hostname: string, path: pathModifier }, { name: 'HTTPURLRewriteFilter' }),
    cors,
    extensionRef: localObjectRef,
    externalAuth: any,
  },
  { name: 'HTTPRouteFilter', required: ['type'] },
);

const grpcFilter = object(
  {
    type: string,
    requestHeaderModifier: headerModifier,
    responseHeaderModifier: headerModifier,
    requestMirror: mirror,
    extensionRef: localObjectRef,
  },
  { name: 'GRPCRouteFilter', required: ['type'] },
);

const valueMatch = object({ type: string, name: string, value: string }, { name: 'HTTPHeaderMatch', required: ['name', 'value'] });

const sessionPersistence: Schema = object(
  {
    sessionName: string,
    absoluteTimeout: duration,
    idleTimeout: duration,
    type: string,
    cookieConfig: object({ lifetimeType: string }, { name: 'CookieConfig' }),
    // The shape after v1.6.1: cookie {name, path, lifetimeType}, header {name}.
    cookie: object({ name: string, path: string, lifetimeType: string }, { name: 'CookieConfig' }),
    header: object({ name: string }, { name: 'HeaderConfig' }),
  },
  { name: 'SessionPersistence' },
);

const httpRouteRule = object(
  {
    name: string,
    matches: arrayOf(
      object(
        {
          path: object({ type: string, value: string }, { name: 'HTTPPathMatch' }),
          headers: arrayOf(valueMatch),
          queryParams: arrayOf(valueMatch),
          method: string,
        },
        { name: 'HTTPRouteMatch' },
      ),
    ),
    filters: arrayOf(httpFilter),
    backendRefs: arrayOf(object({ ...backendObjectRef, weight: integer(0, 1_000_000), filters: arrayOf(httpFilter) }, { name: 'HTTPBackendRef', required: ['name'] })),
    timeouts: object({ request: duration, backendRequest: duration }, { name: 'HTTPRouteTimeouts' }),
    retry: object({ codes: arrayOf(integer(400, 599)), attempts: integer(0), backoff: duration }, { name: 'HTTPRouteRetry' }),
    sessionPersistence,
  },
  { name: 'HTTPRouteRule' },
);

const grpcRouteRule = object(
  {
    name: string,
    matches: arrayOf(
      object(
        {
          method: object({ type: string, service: string, method: string }, { name: 'GRPCMethodMatch' }),
          headers: arrayOf(valueMatch),
        },
        { name: 'GRPCRouteMatch' },
      ),
    ),
    filters: arrayOf(grpcFilter),
    backendRefs: arrayOf(object({ ...backendObjectRef, weight: integer(0, 1_000_000), filters: arrayOf(grpcFilter) }, { name: 'GRPCBackendRef', required: ['name'] })),
    sessionPersistence,
  },
  { name: 'GRPCRouteRule' },
);

const l4RouteRule = object({ name: string, backendRefs: arrayOf(backendRef) }, { name: 'RouteRule' });

export const gatewayClass = gatewayKind(
  'GatewayClass',
  object(
    {
      controllerName: string,
      parametersRef: object({ group: string, kind: string, name: string, namespace: string }, { name: 'ParametersReference', required: ['group', 'kind', 'name'] }),
      description: string,
    },
    { name: 'GatewayClassSpec', required: ['controllerName'] },
  ),
);

const listener = object(
  {
    name: string,
    hostname: string,
    port: portNumber,
    protocol: string,
    tls: object(
      {
        mode: string,
        certificateRefs: arrayOf(object({ group: string, kind: string, name: string, namespace: string }, { name: 'SecretObjectReference', required: ['name'] })),
        frontendValidation: any,
        options: stringMap,
      },
      { name: 'GatewayTLSConfig' },
    ),
    allowedRoutes: object(
      {
        namespaces: object({ from: string, selector: labelSelector }, { name: 'RouteNamespaces' }),
        kinds: arrayOf(object({ group: string, kind: string }, { name: 'RouteGroupKind', required: ['kind'] })),
      },
      { name: 'AllowedRoutes' },
    ),
  },
  { name: 'Listener', required: ['name', 'port', 'protocol'] },
);

export const gateway = gatewayKind(
  'Gateway',
  object(
    {
      gatewayClassName: string,
      listeners: arrayOf(listener),
      addresses: arrayOf(object({ type: string, value: string }, { name: 'GatewaySpecAddress' })),
      infrastructure: object({ labels: stringMap, annotations: stringMap, parametersRef: any }, { name: 'GatewayInfrastructure' }),
      allowedListeners: any,
      tls: any,
      defaultScope: string,
    },
    { name: 'GatewaySpec', required: ['gatewayClassName', 'listeners'] },
  ),
);

const commonRouteSpec = { parentRefs: arrayOf(parentRef), useDefaultGateways: string };

export const httpRoute = gatewayKind('HTTPRoute', object({ ...commonRouteSpec, hostnames: strings, rules: arrayOf(httpRouteRule) }, { name: 'HTTPRouteSpec' }));
export const grpcRoute = gatewayKind('GRPCRoute', object({ ...commonRouteSpec, hostnames: strings, rules: arrayOf(grpcRouteRule) }, { name: 'GRPCRouteSpec' }));
export const tlsRoute = gatewayKind('TLSRoute', object({ ...commonRouteSpec, hostnames: strings, rules: arrayOf(l4RouteRule) }, { name: 'TLSRouteSpec' }));
export const tcpRoute = gatewayKind('TCPRoute', object({ ...commonRouteSpec, rules: arrayOf(l4RouteRule) }, { name: 'TCPRouteSpec' }));
export const udpRoute = gatewayKind('UDPRoute', object({ ...commonRouteSpec, rules: arrayOf(l4RouteRule) }, { name: 'UDPRouteSpec' }));

export const referenceGrant = gatewayKind(
  'ReferenceGrant',
  object(
    {
      from: arrayOf(object({ group: string, kind: string, namespace: string }, { name: 'ReferenceGrantFrom', required: ['kind', 'namespace'] })),
      to: arrayOf(object({ group: string, kind: string, name: string }, { name: 'ReferenceGrantTo', required: ['kind'] })),
    },
    { name: 'ReferenceGrantSpec', required: ['from', 'to'] },
  ),
);

export const backendTLSPolicy = gatewayKind(
  'BackendTLSPolicy',
  object(
    {
      targetRefs: arrayOf(object({ group: string, kind: string, name: string, sectionName: string }, { name: 'LocalPolicyTargetReferenceWithSectionName', required: ['kind', 'name'] })),
      validation: object(
        {
          caCertificateRefs: arrayOf(localObjectRef),
          wellKnownCACertificates: string,
          hostname: string,
          subjectAltNames: arrayOf(object({ type: string, hostname: string, uri: string }, { name: 'SubjectAltName' })),
        },
        { name: 'BackendTLSPolicyValidation', required: ['hostname'] },
      ),
      options: stringMap,
    },
    { name: 'BackendTLSPolicySpec', required: ['targetRefs', 'validation'] },
  ),
);

/** A Namespace: only its labels are read (allowedRoutes `from: Selector`). */
export const namespace: ObjectSchema = object({ apiVersion: string, kind: string, metadata: objectMeta(true), spec: any, status: any }, { name: 'Namespace', open: true });
