import type { ResourceSet } from '../../resources/resource-set.js';
import type { ListenerDraft, TranslateContext } from '../types.js';

/** Kubernetes Ingress -> listener drafts. (Being written.) */
export function translateIngresses(_ctx: TranslateContext, _resources: ResourceSet): ListenerDraft[] {
  return [];
}
