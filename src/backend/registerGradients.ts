/**
 * Gradient definitions for every tfjs kernel. tfjs-core's Node bundle ships the kernels'
 * forward registry but not their gradients; the `@tensorflow/tfjs` union package registers them
 * (in tfjs's global registry, shared with tfjs-core) when it loads.
 *
 * Two of them are then replaced by equivalents that give the same bits faster. tfjs's
 * gradients of `Sum` and `Mean` spread dy over the input's shape as `dy * ones(x.shape)`, and
 * `ones` fills a JavaScript array and uploads it: for the mean of a 256 x 512 loss that is
 * ~1 ms of a training step on WASM. Here the ones come from the backend's `OnesLike` kernel
 * (filled in the heap); the product is the same, so are the gradients. (`tf.broadcastTo` would
 * avoid the product, but the WASM backend's Tile kernel took 17 ms for the same 256 x 512.)
 */
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, Tensor } from '@tensorflow/tfjs-core';

/** dy reshaped to keep the reduced axes as size 1, broadcast over x's shape. */
function spread(dy: Tensor, x: Tensor, attrs: NamedAttrMap): { spread: Tensor; reduceSize: number } {
  const axes = tf.util.parseAxisParam(attrs['axis'] as number | number[], x.shape);
  const expanded = x.shape.slice();
  let reduceSize = 1;
  for (const a of axes) {
    expanded[a] = 1;
    reduceSize *= x.shape[a];
  }
  const e = tf.reshape(dy, expanded);
  // tfjs's `mul(dy, ones(x.shape, 'float32'))`, with the ones filled by the backend.
  const ones = x.dtype === 'float32' ? tf.onesLike(x) : tf.ones(x.shape, 'float32');
  return { spread: tf.mul(e, ones), reduceSize };
}

/** The two replacement gradient configurations, as registered. */
export const spreadGradients: { Sum: tf.GradConfig; Mean: tf.GradConfig } = {
  Sum: {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const derX = spread(dy as Tensor, x, attrs).spread;
      return { x: () => derX };
    },
  },
  Mean: {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      return {
        x: () => {
          const { spread: s, reduceSize } = spread(dy as Tensor, x, attrs);
          return tf.div(s, reduceSize);
        },
      };
    },
  },
};
tf.registerGradient(spreadGradients.Sum);
tf.registerGradient(spreadGradients.Mean);
