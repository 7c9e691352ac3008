/** How `meshgate run` reaches the control plane for its workload identity (`--control` and its flags). */
export interface MeshClientOptions {
  /** `--control HOST:PORT`. */
  address: string;
  rootCertFile: string;
  tokenFile: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  /** Requested certificate lifetime, s (`--workload-cert-ttl`, default 24h like istio-agent's SECRET_TTL). */
  ttlSeconds: number;
}
