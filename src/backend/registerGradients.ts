/**
 * Gradient definitions for every tfjs kernel. tfjs-core's Node bundle ships the kernels'
 * forward registry but not their gradients; the `@tensorflow/tfjs` union package registers them
 * (in tfjs's global registry, shared with tfjs-core) when it loads.
 */
import '@tensorflow/tfjs';
