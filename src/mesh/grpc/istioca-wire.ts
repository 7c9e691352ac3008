/**
 * Istio's `IstioCertificateService.CreateCertificate` on the wire (istio/api security/v1alpha1/ca.proto)
 * without protobufjs: the request and response encoded by hand (h2-unary.ts helpers), for the
 * sidecar's certificate client. The server side keeps its grpc-js definition (istioca-proto.ts).
 */
import { pbBytes, pbFields, pbVarint } from './h2-unary.js';

export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

/** IstioCertificateRequest { string csr = 1; int64 validity_duration = 3; Struct metadata = 4 } (no metadata sent). */
export function encodeCertificateRequest(csr: string, validitySeconds: number): Buffer {
  return Buffer.concat([pbBytes(1, csr), ...(validitySeconds !== 0 ? [pbVarint(3, BigInt(Math.trunc(validitySeconds)))] : [])]);
}

/** IstioCertificateResponse { repeated string cert_chain = 1 }. */
export function decodeCertificateResponse(buf: Buffer): { cert_chain: string[] } {
  return { cert_chain: pbFields(buf).filter((f) => f.field === 1 && f.wire === 2).map((f) => (f.value as Buffer).toString('utf8')) };
}
