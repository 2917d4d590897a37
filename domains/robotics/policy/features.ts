/**
 * Observation feature maps per environment: what the policy conditions on, computed from the
 * environment's observation vector. Push-T's block angle becomes (sin, cos) so the feature is
 * continuous across the +-pi wrap; other environments use the observation as is.
 */
import { checkFiniteArray, fail } from '../../../src/util/validate.js';

export interface FeatureMap {
  readonly inputDim: number;
  readonly outputDim: number;
  (obs: ArrayLike<number>): Float32Array;
}

function make(inputDim: number, outputDim: number, f: (o: ArrayLike<number>, out: Float32Array) => void): FeatureMap {
  const fn = ((obs: ArrayLike<number>) => {
    if (!obs || obs.length !== inputDim) fail(`observation: expected ${inputDim} numbers, received ${obs?.length}`);
    checkFiniteArray('observation', obs);
    const out = new Float32Array(outputDim);
    f(obs, out);
    return out;
  }) as FeatureMap;
  Object.defineProperty(fn, 'inputDim', { value: inputDim });
  Object.defineProperty(fn, 'outputDim', { value: outputDim });
  return fn;
}

export function pushtFeatures(): FeatureMap {
  return make(5, 6, (o, out) => {
    out[0] = o[0];
    out[1] = o[1];
    out[2] = o[2];
    out[3] = o[3];
    out[4] = Math.sin(o[4]);
    out[5] = Math.cos(o[4]);
  });
}

export function identityFeatures(dim: number): FeatureMap {
  return make(dim, dim, (o, out) => {
    for (let i = 0; i < dim; i++) out[i] = o[i];
  });
}

export function featuresFor(env: string, obsDim: number): FeatureMap {
  if (env === 'pusht') return pushtFeatures();
  return identityFeatures(obsDim);
}
