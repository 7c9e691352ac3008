/**
 * Istio's certificate API (istio/api security/v1alpha1/ca.proto, package `istio.v1.auth`), written
 * as a protobufjs JSON descriptor so it ships inside dist/ with no .proto file to copy:
 *
 *   service IstioCertificateService {
 *     rpc CreateCertificate(IstioCertificateRequest) returns (IstioCertificateResponse);
 *   }
 *   message IstioCertificateRequest { string csr = 1; int64 validity_duration = 3; google.protobuf.Struct metadata = 4; }
 *   message IstioCertificateResponse { repeated string cert_chain = 1; }
 *
 * google.protobuf.Struct is declared here too (the well-known type, same field numbers).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const DESCRIPTOR = {
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Struct: { fields: { fields: { keyType: 'string', type: 'Value', id: 1 } } },
            Value: {
              oneofs: { kind: { oneof: ['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'] } },
              fields: {
                nullValue: { type: 'NullValue', id: 1 },
                numberValue: { type: 'double', id: 2 },
                stringValue: { type: 'string', id: 3 },
                boolValue: { type: 'bool', id: 4 },
                structValue: { type: 'Struct', id: 5 },
                listValue: { type: 'ListValue', id: 6 },
              },
            },
            NullValue: { values: { NULL_VALUE: 0 } },
            ListValue: { fields: { values: { rule: 'repeated', type: 'Value', id: 1 } } },
          },
        },
      },
    },
    istio: {
      nested: {
        v1: {
          nested: {
            auth: {
              nested: {
                IstioCertificateRequest: {
                  fields: {
                    csr: { type: 'string', id: 1 },
                    validity_duration: { type: 'int64', id: 3 },
                    metadata: { type: 'google.protobuf.Struct', id: 4 },
                  },
                },
                IstioCertificateResponse: { fields: { cert_chain: { rule: 'repeated', type: 'string', id: 1 } } },
                IstioCertificateService: {
                  methods: { CreateCertificate: { requestType: 'IstioCertificateRequest', responseType: 'IstioCertificateResponse' } },
                },
              },
            },
          },
        },
      },
    },
  },
};

/** Field names as in the .proto (snake_case), int64 as strings, defaults filled. */
const LOAD_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, defaults: true, oneofs: true };

export interface IstioCertificateRequest {
  csr: string;
  /** Seconds; int64, carried as a decimal string. */
  validity_duration: string | number;
  metadata?: { fields?: Record<string, { stringValue?: string; kind?: string }> } | null;
}

export interface IstioCertificateResponse {
  cert_chain: string[];
}

export { CREATE_CERTIFICATE_PATH } from './istioca-wire.js';

/** The service definition for `grpc.Server.addService` and `makeGenericClientConstructor`. */
export function istioCertificateService(): grpc.ServiceDefinition {
  const pkg = grpc.loadPackageDefinition(protoLoader.fromJSON(DESCRIPTOR as Parameters<typeof protoLoader.fromJSON>[0], LOAD_OPTIONS)) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
  };
  return pkg.istio.v1.auth.IstioCertificateService.service;
}

/** A client class for the service (`new Client(address, credentials, options)`). */
export function istioCertificateClient(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(istioCertificateService(), 'IstioCertificateService');
}
