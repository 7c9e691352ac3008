/**
 * networking.k8s.io/v1 Ingress and IngressClass, every field of the spec.
 * Mirrors k8s.io/api/networking/v1/types.go (IngressSpec, IngressClassSpec).
 */

import { any, arrayOf, object, objectMeta, oneOfStrings, portNumber, string, strings } from '../schema.js';
import type { ObjectSchema } from '../schema.js';

const typedLocalObjectReference = object({ apiGroup: string, kind: string, name: string }, { name: 'TypedLocalObjectReference', required: ['kind', 'name'] });

const serviceBackendPort = object({ name: string, number: portNumber }, { name: 'ServiceBackendPort', oneOf: [['name', 'number']] });

const ingressBackend = object(
  {
    service: object({ name: string, port: serviceBackendPort }, { name: 'IngressServiceBackend', required: ['name'] }),
    resource: typedLocalObjectReference,
  },
  { name: 'IngressBackend', oneOf: [['service', 'resource']] },
);

/** Ingress v1 path types, for translators. */
export const ingressPathTypes = ['Exact', 'Prefix', 'ImplementationSpecific'] as const;

const httpIngressPath = object(
  {
    path: string,
    pathType: oneOfStrings(...ingressPathTypes),
    backend: ingressBackend,
  },
  { name: 'HTTPIngressPath', required: ['pathType', 'backend'] },
);

const ingressRule = object(
  {
    host: string,
    http: object({ paths: arrayOf(httpIngressPath) }, { name: 'HTTPIngressRuleValue', required: ['paths'] }),
  },
  { name: 'IngressRule' },
);

const ingressSpec = object(
  {
    ingressClassName: string,
    defaultBackend: ingressBackend,
    tls: arrayOf(object({ hosts: strings, secretName: string }, { name: 'IngressTLS' })),
    rules: arrayOf(ingressRule),
  },
  { name: 'IngressSpec' },
);

export const ingress: ObjectSchema = object(
  { apiVersion: string, kind: string, metadata: objectMeta(), spec: ingressSpec, status: any },
  { name: 'Ingress' },
);

export const ingressClass: ObjectSchema = object(
  {
    apiVersion: string,
    kind: string,
    metadata: objectMeta(),
    spec: object(
      {
        controller: string,
        parameters: object(
          { apiGroup: string, kind: string, name: string, scope: oneOfStrings('Cluster', 'Namespace'), namespace: string },
          { name: 'IngressClassParametersReference', required: ['kind', 'name'] },
        ),
      },
      { name: 'IngressClassSpec' },
    ),
    status: any,
  },
  { name: 'IngressClass' },
);
