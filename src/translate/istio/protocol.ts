/**
 * DestinationRule `connectionPool.http.h2UpgradePolicy` for one Service port and subset, resolved
 * with the same layering as the rest of the traffic policy: the rule's top level, its entry for the
 * port in `portLevelSettings` (wholesale: an entry without connectionPool resets it), then the
 * subset's policy the same way.
 */

import { arr, isObj, num, obj, str, type Obj } from '../../lib/unknown.js';
import type { H2UpgradePolicy } from '../protocol.js';
import type { MergedDestinationRule, Subset } from './destination-rules.js';

export function h2UpgradePolicyOf(dr: MergedDestinationRule | null, subset: Subset | null, port: number): H2UpgradePolicy {
  let pool: Obj | null = null;
  if (dr?.trafficPolicy) pool = layer(pool, dr.trafficPolicy, port);
  if (subset?.trafficPolicy) pool = layer(pool, subset.trafficPolicy, port);
  const v = pool === null ? undefined : str(obj(pool.http).h2UpgradePolicy);
  return v === 'UPGRADE' || v === 'DO_NOT_UPGRADE' ? v : 'DEFAULT';
}

function layer(current: Obj | null, policy: Obj, port: number): Obj | null {
  for (const s of arr(policy.portLevelSettings)) {
    const o = obj(s);
    if (num(obj(o.port).number) === port) return isObj(o.connectionPool) ? (o.connectionPool as Obj) : null;
  }
  return isObj(policy.connectionPool) ? (policy.connectionPool as Obj) : current;
}
