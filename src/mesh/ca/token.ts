/**
 * Directory-mode service-account tokens (reference/mesh.md §1.4): JWTs signed by the CA's signing
 * key, shaped like the projected Kubernetes tokens istiod reviews: `sub`
 * `system:serviceaccount:<ns>:<sa>`, `aud` `istio-ca`, `exp`. `meshgate token` issues them and the
 * control plane verifies them; the identity in the certificate comes from here, never from the CSR.
 */
import type { KeyObject } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { SignJWT, errors, jwtVerify } from 'jose';
import { checkServiceAccount, serviceAccountOfUsername, type ServiceAccount } from '../identity/names.js';

export { checkServiceAccount, serviceAccountOfUsername, type ServiceAccount } from '../identity/names.js';

/** The audience istio-agent requests for its token (TOKEN_AUDIENCES) and istiod's TokenReview asks for. */
export const ISTIO_CA_AUDIENCE = 'istio-ca';
/** Issuer of meshgate's directory-mode tokens. */
export const TOKEN_ISSUER = 'istio-ca';


/** The JWS algorithm for a CA key. */
function jwsAlgorithm(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'prime256v1') return 'ES256';
  if (curve === 'secp384r1') return 'ES384';
  if (curve === 'secp521r1') return 'ES512';
  throw new Error(`the CA key (${key.asymmetricKeyType ?? 'unknown'} ${curve ?? ''}) cannot sign tokens`);
}

/** Kubernetes names: DNS-1123 labels (namespace) and subdomains (service account). */


export async function issueToken(signingKey: KeyObject, sa: ServiceAccount, ttlSeconds: number, audience = ISTIO_CA_AUDIENCE): Promise<string> {
  const bad = checkServiceAccount(sa);
  if (bad !== null) throw new Error(bad);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ 'kubernetes.io': { namespace: sa.namespace, serviceaccount: { name: sa.serviceAccount } } })
    .setProtectedHeader({ alg: jwsAlgorithm(signingKey), typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(audience)
    .setSubject(`system:serviceaccount:${sa.namespace}:${sa.serviceAccount}`)
    .setIssuedAt(now)
    .setNotBefore(now - 60)
    .setExpirationTime(now + ttlSeconds)
    .sign(signingKey);
}

/** Why a token was refused (stable, logged; the caller only ever sees `Unauthenticated`). */
export class TokenError extends Error {}

/**
 * The service account of a Kubernetes username `system:serviceaccount:<ns>:<sa>` (exactly four
 * colon-separated parts, as istiod requires), else null.
 */

export class TokenVerifier {
  readonly #key: KeyObject;
  readonly #alg: string;
  readonly #audiences: string[];

  /** `audiences`: the token's `aud` must contain one of them (default `istio-ca`). */
  constructor(signingKey: KeyObject, audiences: readonly string[] = [ISTIO_CA_AUDIENCE]) {
    this.#key = createPublicKey(signingKey);
    this.#alg = jwsAlgorithm(signingKey);
    this.#audiences = audiences.length > 0 ? [...audiences] : [ISTIO_CA_AUDIENCE];
  }

  async verify(token: string): Promise<ServiceAccount> {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#key, { algorithms: [this.#alg], issuer: TOKEN_ISSUER, audience: this.#audiences, requiredClaims: ['exp', 'sub'] }));
    } catch (e) {
      if (e instanceof errors.JWTExpired) throw new TokenError('token expired');
      if (e instanceof errors.JWSSignatureVerificationFailed) throw new TokenError('token signature does not verify');
      throw new TokenError(`token refused: ${(e as Error).message}`);
    }
    const sa = serviceAccountOfUsername(String(payload.sub));
    if (sa === null) throw new TokenError(`token subject "${String(payload.sub)}" is not system:serviceaccount:<ns>:<sa>`);
    return sa;
  }
}

export { spiffeId } from '../identity/names.js';
