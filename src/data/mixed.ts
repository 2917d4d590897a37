/**
 * Mixed continuous + categorical features diffused jointly (as EDM does for atom types and
 * charges, Hoogeboom et al. 2022): each categorical feature becomes a scaled one-hot block
 * appended to the continuous features, the whole vector is diffused by any path, and samples are
 * decoded by argmax over each block. A smaller `scale` makes the categories resolve later in the
 * reverse process (EDM uses 0.25 for atom types).
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkNumber, fail } from '../util/validate.js';

export interface MixedSpec {
  /** Number of continuous features (first in the vector). */
  readonly continuous: number;
  /** Number of classes of each categorical feature, in order. */
  readonly categories: readonly number[];
  /** Multiplier of the one-hot blocks (default 1). */
  readonly scale?: number;
}

export function mixedDim(spec: MixedSpec): number {
  return spec.continuous + spec.categories.reduce((a, b) => a + b, 0);
}

function check(spec: MixedSpec): void {
  if (!spec || typeof spec !== 'object') fail('mixed spec: expected { continuous, categories, scale? }');
  checkNumber('spec.continuous', spec.continuous, { integer: true, min: 0 });
  if (!Array.isArray(spec.categories)) fail('spec.categories: expected an array of class counts');
  spec.categories.forEach((k, i) => checkNumber(`spec.categories[${i}]`, k, { integer: true, min: 2 }));
  if (spec.scale !== undefined) checkNumber('spec.scale', spec.scale, { min: 1e-6 });
}

/** [N, continuous] values and [N, categories.length] integer labels -> [N, mixedDim] joint vector. */
export function encodeMixed(spec: MixedSpec, continuous: tf.Tensor2D, labels: tf.Tensor2D): tf.Tensor2D {
  check(spec);
  const n = continuous.shape[0];
  if (continuous.shape[1] !== spec.continuous) fail(`continuous: expected shape [*, ${spec.continuous}], received [${continuous.shape.join(', ')}]`);
  if (labels.shape[0] !== n || labels.shape[1] !== spec.categories.length) {
    fail(`labels: expected shape [${n}, ${spec.categories.length}], received [${labels.shape.join(', ')}]`);
  }
  const lab = labels.dataSync();
  for (let i = 0; i < lab.length; i++) {
    const k = spec.categories[i % spec.categories.length];
    if (!Number.isInteger(lab[i]) || lab[i] < 0 || lab[i] >= k) fail(`labels: entry ${i} is ${lab[i]}, expected an integer in [0, ${k})`);
  }
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [continuous];
    spec.categories.forEach((k, j) => {
      const col = tf.reshape(tf.slice(tf.cast(labels, 'int32'), [0, j], [n, 1]), [n]);
      parts.push(tf.mul(tf.oneHot(col as tf.Tensor1D, k), spec.scale ?? 1));
    });
    return tf.concat(parts, 1) as tf.Tensor2D;
  });
}

/** Joint vectors [N, mixedDim] -> continuous part and argmax labels per categorical block. */
export function decodeMixed(spec: MixedSpec, x: tf.Tensor2D): { continuous: tf.Tensor2D; labels: tf.Tensor2D } {
  check(spec);
  if (x.rank !== 2 || x.shape[1] !== mixedDim(spec)) fail(`x: expected shape [*, ${mixedDim(spec)}], received [${x.shape.join(', ')}]`);
  return tf.tidy(() => {
    const n = x.shape[0];
    const continuous = tf.slice(x, [0, 0], [n, spec.continuous]) as tf.Tensor2D;
    let offset = spec.continuous;
    const cols = spec.categories.map((k) => {
      const block = tf.slice(x, [0, offset], [n, k]);
      offset += k;
      return tf.reshape(tf.argMax(block, 1), [n, 1]);
    });
    const labels = (cols.length ? tf.concat(cols, 1) : tf.zeros([n, 0], 'int32')) as tf.Tensor2D;
    return { continuous, labels };
  });
}
