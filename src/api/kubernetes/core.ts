/**
 * Core v1 kinds meshgate reads: Service, Endpoints, Pod, Secret, ConfigMap. Only the fields meshgate reads are
 * typed; every object is `open` because clusters add many fields we never look at.
 * Mirrors k8s.io/api/core/v1/types.go (ServiceSpec, ServicePort, EndpointSubset, PodStatus, Secret).
 */

import { any, arrayOf, base64, boolean, integer, intOrString, mapOf, object, objectMeta, oneOfStrings, portNumber, string, stringMap, strings } from '../schema.js';
import type { ObjectSchema } from '../schema.js';

const protocol = oneOfStrings('TCP', 'UDP', 'SCTP');

const servicePort = object(
  { name: string, port: portNumber, targetPort: intOrString, protocol, appProtocol: string, nodePort: integer(0, 65535) },
  { name: 'ServicePort', required: ['port'], open: true },
);

export const service: ObjectSchema = object(
  {
    metadata: objectMeta(true),
    spec: object(
      {
        ports: arrayOf(servicePort),
        selector: stringMap,
        type: oneOfStrings('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'),
        clusterIP: string,
        clusterIPs: strings,
        externalName: string,
      },
      { name: 'ServiceSpec', open: true },
    ),
    status: any,
  },
  { name: 'Service', open: true },
);

const endpointAddress = object(
  { ip: string, hostname: string, nodeName: string, targetRef: object({}, { open: true }) },
  { name: 'EndpointAddress', required: ['ip'], open: true },
);

const endpointPort = object(
  { name: string, port: portNumber, protocol, appProtocol: string },
  { name: 'EndpointPort', required: ['port'], open: true },
);

export const endpoints: ObjectSchema = object(
  {
    metadata: objectMeta(true),
    subsets: arrayOf(
      object(
        { addresses: arrayOf(endpointAddress), notReadyAddresses: arrayOf(endpointAddress), ports: arrayOf(endpointPort) },
        { name: 'EndpointSubset', open: true },
      ),
    ),
  },
  { name: 'Endpoints', open: true },
);

export const pod: ObjectSchema = object(
  {
    metadata: objectMeta(true),
    spec: any,
    status: object(
      {
        podIP: string,
        podIPs: arrayOf(object({ ip: string }, { name: 'PodIP', open: true })),
        phase: oneOfStrings('Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'),
      },
      { name: 'PodStatus', open: true },
    ),
  },
  { name: 'Pod', open: true },
);

export const secret: ObjectSchema = object(
  { metadata: objectMeta(true), type: string, data: mapOf(base64), stringData: stringMap, immutable: boolean },
  { name: 'Secret', open: true },
);

/** ConfigMap: `data` is a map of strings (meshgate reads Istio's MeshConfig ConfigMap only). */
export const configMap: ObjectSchema = object(
  { metadata: objectMeta(true), data: stringMap, binaryData: mapOf(base64), immutable: boolean },
  { name: 'ConfigMap', open: true },
);
