import { fail } from '../util/validate.js';
import { rectifiedFlow } from './flow.js';
import type { NoisePath, PathKind, PathSpec } from './types.js';
import { edm, ve } from './ve.js';
import { vpCosine, vpLinear } from './vp.js';

export * from './types.js';
export { vpLinear, vpCosine } from './vp.js';
export { ve, edm } from './ve.js';
export { rectifiedFlow } from './flow.js';

export const PATH_KINDS: readonly PathKind[] = ['vp-linear', 'vp-cosine', 've', 'edm', 'rectified-flow'];

/** Rebuild a path from its JSON spec (or just a kind name with default parameters). */
export function pathFromSpec(spec: PathSpec | PathKind): NoisePath {
  const s: PathSpec = typeof spec === 'string' ? ({ kind: spec } as PathSpec) : spec;
  switch (s?.kind) {
    case 'vp-linear':
      return vpLinear(s);
    case 'vp-cosine':
      return vpCosine(s);
    case 've':
      return ve(s);
    case 'edm':
      return edm(s);
    case 'rectified-flow':
      return rectifiedFlow(s);
    default:
      return fail(`path: unknown kind '${String((s as { kind?: unknown })?.kind ?? spec)}' (expected one of ${PATH_KINDS.join(', ')})`);
  }
}
