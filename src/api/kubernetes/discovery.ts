/**
 * discovery.k8s.io/v1 EndpointSlice: the fields meshgate reads; unknown fields allowed.
 * Mirrors k8s.io/api/discovery/v1/types.go (EndpointSlice, Endpoint, EndpointConditions, EndpointPort).
 */

import { arrayOf, boolean, integer, object, objectMeta, oneOfStrings, string, strings } from '../schema.js';
import type { ObjectSchema } from '../schema.js';

const endpoint = object(
  {
    addresses: strings,
    conditions: object({ ready: boolean, serving: boolean, terminating: boolean }, { name: 'EndpointConditions', open: true }),
    targetRef: object({ kind: string, namespace: string, name: string, uid: string }, { name: 'ObjectReference', open: true }),
    nodeName: string,
    zone: string,
    hostname: string,
  },
  { name: 'Endpoint', required: ['addresses'], open: true },
);

export const endpointSlice: ObjectSchema = object(
  {
    metadata: objectMeta(true),
    addressType: oneOfStrings('IPv4', 'IPv6', 'FQDN'),
    endpoints: arrayOf(endpoint),
    ports: arrayOf(
      object(
        { name: string, port: integer(0, 65535), protocol: oneOfStrings('TCP', 'UDP', 'SCTP'), appProtocol: string },
        { name: 'EndpointPort', open: true },
      ),
    ),
  },
  { name: 'EndpointSlice', required: ['addressType'], open: true },
);
