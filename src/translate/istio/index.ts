import type { ResourceSet } from '../../resources/resource-set.js';
import type { ListenerDraft, TranslateContext } from '../types.js';

/** Istio Gateway + VirtualService + DestinationRule -> listener drafts. (Being written.) */
export function translateIstio(_ctx: TranslateContext, _resources: ResourceSet): ListenerDraft[] {
  return [];
}
