/**
 * meshgate's config push service on the control plane's gRPC port (15012), as a protobufjs JSON
 * descriptor (no .proto file to ship), modelled on xDS's ADS stream with full-state views:
 *
 *   package meshgate.mesh.v1;
 *   service ConfigPush { rpc Stream(stream PushRequest) returns (stream PushResponse); }
 *   message SidecarProxyMeta { string namespace = 1; string service_account = 2; string pod_name = 3;
 *                              repeated string pod_ips = 4; string trust_domain = 5; }
 *   message Hello { SidecarProxyMeta proxy = 1; string meshgate_version = 2; }
 *   message Ack  { string version = 1; string nonce = 2; }
 *   message Nack { string version = 1; string nonce = 2; string error_detail = 3; }
 *   message PushRequest  { oneof kind { Hello hello = 1; Ack ack = 2; Nack nack = 3; } }
 *   message PushResponse { string version = 1; string nonce = 2; bytes view = 3; }
 *
 * The sidecar opens the stream with `authorization: Bearer <token>` and sends one Hello first.
 * Every PushResponse carries a whole view (an IRSnapshot as UTF-8 JSON) and its version; the
 * sidecar answers each with an Ack or a Nack naming that version and nonce (xDS `version_info`,
 * `response_nonce`, `error_detail`).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const DESCRIPTOR = {
  nested: {
    meshgate: {
      nested: {
        mesh: {
          nested: {
            v1: {
              nested: {
                SidecarProxyMeta: {
                  fields: {
                    namespace: { type: 'string', id: 1 },
                    service_account: { type: 'string', id: 2 },
                    pod_name: { type: 'string', id: 3 },
                    pod_ips: { rule: 'repeated', type: 'string', id: 4 },
                    trust_domain: { type: 'string', id: 5 },
                  },
                },
                Hello: { fields: { proxy: { type: 'SidecarProxyMeta', id: 1 }, meshgate_version: { type: 'string', id: 2 } } },
                Ack: { fields: { version: { type: 'string', id: 1 }, nonce: { type: 'string', id: 2 } } },
                Nack: { fields: { version: { type: 'string', id: 1 }, nonce: { type: 'string', id: 2 }, error_detail: { type: 'string', id: 3 } } },
                PushRequest: {
                  oneofs: { kind: { oneof: ['hello', 'ack', 'nack'] } },
                  fields: { hello: { type: 'Hello', id: 1 }, ack: { type: 'Ack', id: 2 }, nack: { type: 'Nack', id: 3 } },
                },
                PushResponse: { fields: { version: { type: 'string', id: 1 }, nonce: { type: 'string', id: 2 }, view: { type: 'bytes', id: 3 } } },
                ConfigPush: {
                  methods: { Stream: { requestType: 'PushRequest', requestStream: true, responseType: 'PushResponse', responseStream: true } },
                },
              },
            },
          },
        },
      },
    },
  },
};

/** Field names as in the .proto (snake_case); `kind` names the oneof member set; unset messages stay null. */
const LOAD_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, defaults: true, oneofs: true };

export interface WireProxyMeta {
  namespace: string;
  service_account: string;
  pod_name: string;
  pod_ips: string[];
  trust_domain: string;
}

export interface PushRequest {
  kind?: 'hello' | 'ack' | 'nack';
  hello?: { proxy?: WireProxyMeta | null; meshgate_version?: string } | null;
  ack?: { version: string; nonce: string } | null;
  nack?: { version: string; nonce: string; error_detail: string } | null;
}

export interface PushResponse {
  version: string;
  nonce: string;
  /** The view: an IRSnapshot as UTF-8 JSON. */
  view: Buffer;
}

export { CONFIG_PUSH_STREAM_PATH } from './wire.js';

function load(): grpc.ServiceClientConstructor {
  const pkg = grpc.loadPackageDefinition(protoLoader.fromJSON(DESCRIPTOR as Parameters<typeof protoLoader.fromJSON>[0], LOAD_OPTIONS)) as unknown as {
    meshgate: { mesh: { v1: { ConfigPush: grpc.ServiceClientConstructor } } };
  };
  return pkg.meshgate.mesh.v1.ConfigPush;
}

/** The service definition for `grpc.Server.addService`. */
export function configPushService(): grpc.ServiceDefinition {
  return load().service;
}

/** A client class for the service (`new Client(address, credentials, options)`; method `Stream(metadata, options)`). */
export function configPushClient(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(configPushService(), 'ConfigPush');
}
