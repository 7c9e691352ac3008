/**
 * The workload's certificate signing request (PKCS #10, RFC 2986) built with node:crypto and a few
 * lines of DER, as istio-agent sends it: an empty subject, the public key, and an extension request
 * with one critical subjectAltName, the SPIFFE ID as a URI; signed with the workload key (ECDSA
 * P-256 with SHA-256, or RSA PKCS #1 v1.5 with SHA-256). @peculiar/x509 would do the same but loads
 * about 200 modules (its ASN.1 schemas, tsyringe, reflect-metadata) into the sidecar's proxy for
 * one CSR per renewal: resident memory for the pod's whole life.
 */
import { createPublicKey, sign, type KeyObject } from 'node:crypto';

/** One DER TLV. */
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v >>>= 8) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

/** A DER OBJECT IDENTIFIER from its dotted form. */
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [a * 40 + b];
  for (const arc of rest) {
    const base128: number[] = [];
    let v = arc;
    do {
      base128.unshift((v & 0x7f) | (base128.length > 0 ? 0x80 : 0));
      v = Math.floor(v / 128);
    } while (v > 0);
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

const SEQUENCE = 0x30;
const SET = 0x31;
const OID = {
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
};

/** A PEM `CERTIFICATE REQUEST` for `privateKey` (EC or RSA) asking for the URI SAN `uri`. */
export function workloadCsrPem(privateKey: KeyObject, uri: string): string {
  const type = privateKey.asymmetricKeyType;
  if (type !== 'ec' && type !== 'rsa') throw new Error(`a workload CSR needs an EC or RSA key, not ${String(type)}`);
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  // GeneralNames: uniformResourceIdentifier [6] IA5String.
  const san = tlv(SEQUENCE, tlv(0x86, Buffer.from(uri, 'ascii')));
  const extension = tlv(SEQUENCE, oid(OID.subjectAltName), tlv(0x01, Buffer.from([0xff])), tlv(0x04, san));
  const attributes = tlv(0xa0, tlv(SEQUENCE, oid(OID.extensionRequest), tlv(SET, tlv(SEQUENCE, extension))));
  const info = tlv(SEQUENCE, tlv(0x02, Buffer.from([0])), tlv(SEQUENCE), spki, attributes);
  const algorithm = type === 'ec' ? tlv(SEQUENCE, oid(OID.ecdsaWithSha256)) : tlv(SEQUENCE, oid(OID.sha256WithRsa), tlv(0x05));
  // node:crypto signs ECDSA as a DER Ecdsa-Sig-Value, the form X.509 carries in the BIT STRING.
  const signature = sign('sha256', info, privateKey);
  const der = tlv(SEQUENCE, info, algorithm, tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}-----END CERTIFICATE REQUEST-----\n`;
}
