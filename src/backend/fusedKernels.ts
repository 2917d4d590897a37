/**
 * Group normalisation and FiLM as one kernel each, for inference on the WASM backend.
 *
 * A policy network evaluated at batch 1 is bound by the number of kernels it runs, not by their
 * arithmetic: the Push-T U-Net runs ~420 kernels per evaluation on a few thousand numbers, and
 * the unfused group norm (reshape, mean, sub, square, mean, add, rsqrt, mul, reshape, mul, add)
 * is 11 of them per layer. `ScoreflowGroupNorm` does the same work in one JavaScript loop over
 * the tensors where the backend keeps them, in the WASM heap.
 *
 * The result is bit-identical to the backend's unfused float32 ops: each step here is one
 * float32 operation (`Math.fround` after every double-precision step, which rounds exactly as a
 * float32 operation would for +, -, *, / and sqrt), and the sums run in the order of its Mean
 * kernel (positions, then the channels of the group; from 0, divided by the count), so every
 * model and every number measured before the kernel existed is reproduced exactly
 * (`test/core/fusedKernels.test.ts` checks every output bit against the unfused ops).
 *
 * Inputs { x: [B, ...spatial, C], gain: [C], bias: [C] } (float32), attributes { groups, eps }.
 *
 * `ScoreflowFilm` applies FiLM's predicted scale and shift, h * (scale + 1) + shift, with
 * { h: [B, ...spatial, C], ss: [B, 2C] } (scale in the first C columns): 1 kernel instead of 6
 * (reshape, two slices, add, mul, add), again one float32 operation per step, so bit-identical.
 * Other backends (the JavaScript CPU backend, whose ops round differently, tfjs-node, WebGL) have
 * no such kernel and keep the unfused ops.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from './wasmMatMul.js';

export const GROUP_NORM_KERNEL = 'ScoreflowGroupNorm';
export const FILM_KERNEL = 'ScoreflowFilm';

interface GroupNormAttrs {
  readonly groups: number;
  readonly eps: number;
}

const f = Math.fround;

/** out = gain * (x - mean) * rsqrt(var + eps) + bias per (batch, group), in float32 steps. */
export function groupNormInto(x: Float32Array, gain: Float32Array, bias: Float32Array, out: Float32Array, shape: readonly number[], groups: number, eps: number): void {
  const C = shape[shape.length - 1]!;
  const B = shape[0]!;
  let S = 1;
  for (let i = 1; i < shape.length - 1; i++) S *= shape[i]!;
  const cg = C / groups;
  const n = f(S * cg);
  const e = f(eps);
  for (let b = 0; b < B; b++) {
    const base = b * S * C;
    for (let g = 0; g < groups; g++) {
      const c0 = g * cg;
      let sum = 0;
      for (let s = 0; s < S; s++) {
        const row = base + s * C + c0;
        for (let j = 0; j < cg; j++) sum = f(sum + x[row + j]!);
      }
      const mean = f(sum / n);
      let sq = 0;
      for (let s = 0; s < S; s++) {
        const row = base + s * C + c0;
        for (let j = 0; j < cg; j++) {
          const d = f(x[row + j]! - mean);
          sq = f(sq + f(d * d));
        }
      }
      const rstd = f(1 / f(Math.sqrt(f(f(sq / n) + e))));
      for (let s = 0; s < S; s++) {
        const row = base + s * C + c0;
        for (let j = 0; j < cg; j++) {
          const y = f(f(x[row + j]! - mean) * rstd);
          out[row + j] = f(f(y * gain[c0 + j]!) + bias[c0 + j]!);
        }
      }
    }
  }
}

function checkArgs(inputs: Record<string, TensorInfo | undefined>, attrs: NamedAttrMap | undefined): { x: TensorInfo; gain: TensorInfo; bias: TensorInfo; groups: number; eps: number } {
  const { x, gain, bias } = inputs;
  if (!x || !gain || !bias) throw new Error(`${GROUP_NORM_KERNEL}: expected inputs x, gain and bias`);
  if (x.dtype !== 'float32' || gain.dtype !== 'float32' || bias.dtype !== 'float32') throw new Error(`${GROUP_NORM_KERNEL}: expected float32 inputs`);
  const a = attrs as unknown as GroupNormAttrs;
  const C = x.shape[x.shape.length - 1]!;
  if (x.shape.length < 2 || !Number.isInteger(a.groups) || a.groups < 1 || C % a.groups !== 0) throw new Error(`${GROUP_NORM_KERNEL}: channels ${C} of x [${x.shape}] not divisible into ${a.groups} groups`);
  if (gain.shape.length !== 1 || gain.shape[0] !== C || bias.shape.length !== 1 || bias.shape[0] !== C) throw new Error(`${GROUP_NORM_KERNEL}: gain and bias must have shape [${C}]`);
  if (!(a.eps >= 0)) throw new Error(`${GROUP_NORM_KERNEL}: eps must be >= 0`);
  return { x, gain, bias, groups: a.groups, eps: a.eps };
}

const wasmKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, gain, bias, groups, eps } = checkArgs(inputs as Record<string, TensorInfo>, attrs);
  const be = backend as unknown as WasmBackendLike;
  const out = be.makeOutput([...x.shape], 'float32');
  // Views are taken after makeOutput: an allocation can grow (and replace) the heap.
  groupNormInto(be.typedArrayFromHeap(x) as Float32Array, be.typedArrayFromHeap(gain) as Float32Array, be.typedArrayFromHeap(bias) as Float32Array, be.typedArrayFromHeap(out) as Float32Array, x.shape, groups, eps);
  return out;
};

/** out[b, s, c] = h[b, s, c] * (ss[b, c] + 1) + ss[b, C + c], in float32 steps. */
export function filmInto(h: Float32Array, ss: Float32Array, out: Float32Array, shape: readonly number[]): void {
  const C = shape[shape.length - 1]!;
  const B = shape[0]!;
  const S = h.length / (B * C);
  for (let b = 0; b < B; b++) {
    const sb = b * 2 * C;
    for (let s = 0; s < S; s++) {
      const row = (b * S + s) * C;
      for (let c = 0; c < C; c++) out[row + c] = f(f(h[row + c]! * f(ss[sb + c]! + 1)) + ss[sb + C + c]!);
    }
  }
}

const filmWasmKernel: KernelFunc = ({ inputs, backend }) => {
  const { h, ss } = inputs as Record<string, TensorInfo | undefined>;
  if (!h || !ss) throw new Error(`${FILM_KERNEL}: expected inputs h and ss`);
  if (h.dtype !== 'float32' || ss.dtype !== 'float32') throw new Error(`${FILM_KERNEL}: expected float32 inputs`);
  const C = h.shape[h.shape.length - 1]!;
  if (h.shape.length < 2 || ss.shape.length !== 2 || ss.shape[0] !== h.shape[0] || ss.shape[1] !== 2 * C) {
    throw new Error(`${FILM_KERNEL}: ss must have shape [${h.shape[0]}, ${2 * C}] for h [${h.shape}], received [${ss.shape}]`);
  }
  const be = backend as unknown as WasmBackendLike;
  const out = be.makeOutput([...h.shape], 'float32');
  // Views are taken after makeOutput: an allocation can grow (and replace) the heap.
  filmInto(be.typedArrayFromHeap(h) as Float32Array, be.typedArrayFromHeap(ss) as Float32Array, be.typedArrayFromHeap(out) as Float32Array, h.shape);
  return out;
};

if (!tf.getKernel(GROUP_NORM_KERNEL, 'wasm')) tf.registerKernel({ kernelName: GROUP_NORM_KERNEL, backendName: 'wasm', kernelFunc: wasmKernel });
if (!tf.getKernel(FILM_KERNEL, 'wasm')) tf.registerKernel({ kernelName: FILM_KERNEL, backendName: 'wasm', kernelFunc: filmWasmKernel });

let enabled = process.env.SCOREFLOW_FUSED !== '0';

/** Turn the fused kernels on or off (tests compare both; `SCOREFLOW_FUSED=0` starts with them off). */
export function setFusedKernels(on: boolean): void {
  enabled = on;
}

/** Are the fused kernels on, and registered for the active backend? */
export function fusedKernelsAvailable(): boolean {
  return enabled && tf.getKernel(GROUP_NORM_KERNEL, tf.getBackend()) !== undefined;
}
