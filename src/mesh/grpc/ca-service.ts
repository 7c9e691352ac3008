/**
 * `istio.v1.auth.IstioCertificateService/CreateCertificate` as istiod serves it
 * (security/pkg/server/ca/server.go): the caller is authenticated by `authorization: Bearer <token>`;
 * the certificate's identity is the caller's, never the CSR's; an `ImpersonatedIdentity` request is
 * refused (no trusted node accounts are configured). Errors: `UNAUTHENTICATED` ("request
 * authenticate failure"), `INVALID_ARGUMENT` for a bad CSR or TTL, `INTERNAL` for signing failures.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../lib/log.js';
import { CaError, MAX_WORKLOAD_CERT_TTL_S, type MeshCa } from '../ca/ca.js';
import { spiffeId, type ServiceAccount } from '../ca/token.js';
import type { IstioCertificateRequest, IstioCertificateResponse } from './istioca-proto.js';

/** Turns a bearer token into the caller's service account; throws (any error) to refuse. */
export interface Authenticator {
  authenticate(token: string): Promise<ServiceAccount>;
}

export interface CaServiceOptions {
  ca: () => MeshCa;
  authenticator: Authenticator;
  trustDomain: string;
  /** Lifetime of a certificate whose request has no positive validity, and the longest granted, in seconds. */
  certTtlSeconds: number;
  log: Logger;
  /** Called after each issued certificate (metrics, tests). */
  onIssued?: (identity: string, ttlSeconds: number) => void;
}

export function caServiceHandlers(opts: CaServiceOptions): grpc.UntypedServiceImplementation {
  const createCertificate = (call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>, callback: grpc.sendUnaryData<IstioCertificateResponse>): void => {
    void handle(opts, call).then(
      (res) => callback(null, res),
      (err: { code: grpc.status; details: string }) => callback({ code: err.code, details: err.details, metadata: new grpc.Metadata() } as grpc.ServiceError, null),
    );
  };
  return { CreateCertificate: createCertificate };
}

async function handle(opts: CaServiceOptions, call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>): Promise<IstioCertificateResponse> {
  const peer = call.getPeer();
  const header = call.metadata.get('authorization').map(String)[0] ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (m === null) {
    opts.log.warn('certificate request refused', { peer, reason: 'no bearer token' });
    throw { code: grpc.status.UNAUTHENTICATED, details: 'request authenticate failure' };
  }
  let sa: ServiceAccount;
  try {
    sa = await opts.authenticator.authenticate(m[1]);
  } catch (e) {
    opts.log.warn('certificate request refused', { peer, reason: (e as Error).message });
    throw { code: grpc.status.UNAUTHENTICATED, details: 'request authenticate failure' };
  }
  const req = call.request;
  const impersonated = req.metadata?.fields?.ImpersonatedIdentity?.stringValue ?? '';
  if (impersonated !== '') {
    opts.log.warn('certificate request refused', { peer, reason: 'impersonation not allowed (no trusted node accounts)', impersonated });
    throw { code: grpc.status.UNAUTHENTICATED, details: 'request impersonation authentication failure' };
  }
  const identity = spiffeId(opts.trustDomain, sa);
  const requested = Number(req.validity_duration ?? 0);
  // Istio: a non-positive request gets the default; meshgate also grants at most --cert-ttl.
  // Over Istio's maximum stays an error (the CA refuses it), as in Istio.
  const ttl = !(requested > 0) ? opts.certTtlSeconds : requested > MAX_WORKLOAD_CERT_TTL_S ? requested : Math.min(requested, opts.certTtlSeconds);
  try {
    const chain = await opts.ca().signCsr(req.csr, [identity], ttl);
    opts.log.info('certificate issued', { peer, identity, ttlSeconds: ttl });
    opts.onIssued?.(identity, ttl);
    return { cert_chain: chain };
  } catch (e) {
    if (e instanceof CaError) {
      opts.log.warn('certificate request failed', { peer, identity, reason: e.message });
      throw { code: e.code === 'MG_CA_SIGN_FAILED' ? grpc.status.INTERNAL : grpc.status.INVALID_ARGUMENT, details: `CSR signing error (${e.message})` };
    }
    throw { code: grpc.status.INTERNAL, details: `CSR signing error (${(e as Error).message})` };
  }
}
