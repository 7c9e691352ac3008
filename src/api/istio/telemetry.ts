/**
 * telemetry.istio.io Telemetry (served as v1 and v1alpha1, same shape): every spec field of istio/api
 * telemetry/v1alpha1/telemetry.proto and type/v1beta1/selector.proto, as the CRD accepts them
 * (lowerCamelCase JSON names).
 */

import { any, arrayOf, boolean, duration, mapOf, number, object, objectMeta, oneOfStrings, string, stringMap } from '../schema.js';
import type { ObjectSchema } from '../schema.js';

const workloadSelector = object({ matchLabels: stringMap }, { name: 'WorkloadSelector' });
const policyTargetReference = object({ group: string, kind: string, name: string, namespace: string }, { name: 'PolicyTargetReference', required: ['kind', 'name'] });

const providerRef = object({ name: string }, { name: 'ProviderRef', required: ['name'] });
const workloadMode = oneOfStrings('CLIENT_AND_SERVER', 'CLIENT', 'SERVER');

const customTag = object(
  {
    literal: object({ value: string }, { name: 'Literal', required: ['value'] }),
    environment: object({ name: string, defaultValue: string }, { name: 'Environment', required: ['name'] }),
    header: object({ name: string, defaultValue: string }, { name: 'RequestHeader', required: ['name'] }),
    formatter: object({ value: string }, { name: 'Formatter', required: ['value'] }),
  },
  { name: 'CustomTag', oneOf: [['literal', 'environment', 'header', 'formatter']] },
);

const tracing = object(
  {
    match: object({ mode: workloadMode }, { name: 'TracingSelector' }),
    providers: arrayOf(providerRef),
    randomSamplingPercentage: number(0, 100),
    disableSpanReporting: boolean,
    customTags: mapOf(customTag),
    useRequestIdForTraceSampling: boolean,
    enableIstioTags: boolean,
    disableContextPropagation: boolean,
  },
  { name: 'Tracing' },
);

const metricSelector = object(
  {
    metric: oneOfStrings(
      'ALL_METRICS',
      'REQUEST_COUNT',
      'REQUEST_DURATION',
      'REQUEST_SIZE',
      'RESPONSE_SIZE',
      'TCP_OPENED_CONNECTIONS',
      'TCP_CLOSED_CONNECTIONS',
      'TCP_SENT_BYTES',
      'TCP_RECEIVED_BYTES',
      'GRPC_REQUEST_MESSAGES',
      'GRPC_RESPONSE_MESSAGES',
    ),
    customMetric: string,
    mode: workloadMode,
  },
  { name: 'MetricSelector', oneOf: [['metric', 'customMetric']] },
);

const metrics = object(
  {
    providers: arrayOf(providerRef),
    overrides: arrayOf(
      object(
        {
          match: metricSelector,
          disabled: boolean,
          tagOverrides: mapOf(object({ operation: oneOfStrings('UPSERT', 'REMOVE'), value: string }, { name: 'TagOverride' })),
        },
        { name: 'MetricsOverrides' },
      ),
    ),
    reportingInterval: duration,
  },
  { name: 'Metrics' },
);

const accessLogging = object(
  {
    match: object({ mode: workloadMode }, { name: 'LogSelector' }),
    providers: arrayOf(providerRef),
    disabled: boolean,
    filter: object({ expression: string }, { name: 'Filter' }),
  },
  { name: 'AccessLogging' },
);

export const telemetry: ObjectSchema = object(
  {
    apiVersion: string,
    kind: string,
    metadata: objectMeta(),
    spec: object(
      { selector: workloadSelector, targetRef: policyTargetReference, targetRefs: arrayOf(policyTargetReference), tracing: arrayOf(tracing), metrics: arrayOf(metrics), accessLogging: arrayOf(accessLogging) },
      { name: 'Telemetry', oneOf: [['selector', 'targetRef', 'targetRefs']] },
    ),
    status: any,
  },
  { name: 'Telemetry' },
);
