/**
 * The config push messages (proto.ts, package meshgate.mesh.v1) on the wire without protobufjs,
 * for the sidecar's client: PushRequest encoded and PushResponse decoded by hand (the h2-unary.ts
 * protobuf helpers), as istioca-wire.ts does for the certificate call. The control plane keeps its
 * grpc-js/protobufjs definition (proto.ts); test/mesh/push-wire.test.ts checks both agree.
 *
 *   message SidecarProxyMeta { string namespace = 1; string service_account = 2; string pod_name = 3;
 *                              repeated string pod_ips = 4; string trust_domain = 5; }
 *   message Hello { SidecarProxyMeta proxy = 1; string meshgate_version = 2; }
 *   message Ack  { string version = 1; string nonce = 2; }
 *   message Nack { string version = 1; string nonce = 2; string error_detail = 3; }
 *   message PushRequest  { oneof kind { Hello hello = 1; Ack ack = 2; Nack nack = 3; } }
 *   message PushResponse { string version = 1; string nonce = 2; bytes view = 3; }
 *
 * Proto3: empty strings are not written (the default); the oneof member is, even when empty.
 */
import { pbBytes, pbFields } from '../grpc/h2-unary.js';
import type { PushRequest, PushResponse, WireProxyMeta } from './proto.js';

export const CONFIG_PUSH_STREAM_PATH = '/meshgate.mesh.v1.ConfigPush/Stream';

function str(field: number, value: string | undefined | null): Buffer[] {
  return value === undefined || value === null || value === '' ? [] : [pbBytes(field, value)];
}

function proxyMeta(p: WireProxyMeta): Buffer {
  return Buffer.concat([...str(1, p.namespace), ...str(2, p.service_account), ...str(3, p.pod_name), ...(p.pod_ips ?? []).map((ip) => pbBytes(4, ip)), ...str(5, p.trust_domain)]);
}

/** A PushRequest: exactly one of `hello`, `ack`, `nack` must be set. */
export function encodePushRequest(req: PushRequest): Buffer {
  if (req.hello) {
    const h = req.hello;
    return pbBytes(1, Buffer.concat([...(h.proxy ? [pbBytes(1, proxyMeta(h.proxy))] : []), ...str(2, h.meshgate_version)]));
  }
  if (req.ack) return pbBytes(2, Buffer.concat([...str(1, req.ack.version), ...str(2, req.ack.nonce)]));
  if (req.nack) return pbBytes(3, Buffer.concat([...str(1, req.nack.version), ...str(2, req.nack.nonce), ...str(3, req.nack.error_detail)]));
  throw new Error('a PushRequest needs one of hello, ack, nack');
}

/**
 * A PushResponse. Unknown fields are skipped; a field repeated keeps its last value (proto3); a known
 * field with the wrong wire type, or a truncated message, throws. `view` shares `buf`'s memory.
 */
export function decodePushResponse(buf: Buffer): PushResponse {
  const out: PushResponse = { version: '', nonce: '', view: Buffer.alloc(0) };
  for (const f of pbFields(buf)) {
    if (f.field < 1 || f.field > 3) continue;
    if (f.wire !== 2 || typeof f.value === 'bigint') throw new Error(`PushResponse field ${f.field} has wire type ${f.wire}, not 2 (length-delimited)`);
    if (f.field === 1) out.version = f.value.toString('utf8');
    else if (f.field === 2) out.nonce = f.value.toString('utf8');
    else out.view = f.value;
  }
  return out;
}
