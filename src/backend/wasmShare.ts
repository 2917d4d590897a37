/**
 * Copy-free `Identity` and same-dtype `Cast` on the tfjs WASM backend.
 *
 * tfjs-core clones every tensor a gradient function saves for the backward pass
 * (`engine.clone` runs the `Identity` kernel), and the clone's gradient is a `Cast` to the
 * same dtype. The WASM backend implements both as a fresh allocation plus a copy of the whole
 * buffer; its own `Reshape`, and the cpu backend's `Identity`, instead share the input's
 * storage and count the reference. A dense layer's training step saves its input, its weights
 * and its output, so a 3-layer 512-wide MLP copied 21 tensors (about 2.5% of its forward +
 * backward time) for nothing.
 *
 * The wrappers here share storage the same way `Reshape` does (`backend.incRef`). Every
 * in-place writer in this library (the optimiser through hostMemory.ts) writes only when the
 * tensor is the sole owner of its storage (refCount 1), so a shared clone is never written
 * under another tensor. String tensors and casts that change the dtype keep the stock kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DataId, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { replaceKernel, restoreKernels } from './wasmMatMul.js';

const MARK = Symbol('scoreflow.wasmShare.original');
type Marked = KernelFunc & { [MARK]?: KernelFunc };

interface SharingBackend {
  incRef(dataId: DataId): void;
}

function share(x: TensorInfo, backend: unknown): TensorInfo {
  (backend as SharingBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

function makeIdentity(original: KernelFunc): KernelFunc {
  const f: Marked = (args) => {
    const x = (args.inputs as { x?: TensorInfo }).x;
    if (x === undefined || x.dtype === 'string') return original(args);
    return share(x, args.backend);
  };
  f[MARK] = original;
  return f;
}

function makeCast(original: KernelFunc): KernelFunc {
  const f: Marked = (args) => {
    const x = (args.inputs as { x?: TensorInfo }).x;
    const dtype = (args.attrs as { dtype?: string } | undefined)?.dtype;
    if (x === undefined || x.dtype === 'string' || dtype !== x.dtype) return original(args);
    return share(x, args.backend);
  };
  f[MARK] = original;
  return f;
}

/**
 * Install the sharing `Identity` and same-dtype `Cast` for the WASM backend. Returns false when
 * the WASM kernels are not registered; a second call does nothing.
 */
export function installWasmShare(): boolean {
  const makers: [string, (k: KernelFunc) => KernelFunc][] = [['Identity', makeIdentity], ['Cast', makeCast]];
  let found = false;
  for (const [name, make] of makers) {
    const k = tf.getKernel(name, 'wasm');
    if (k === undefined) continue;
    found = true;
    if ((k.kernelFunc as Marked)[MARK] === undefined) replaceKernel(k, make(k.kernelFunc));
  }
  return found;
}

/** Put the stock copying kernels back (benchmarks). Returns true if something was restored. */
export function uninstallWasmShare(): boolean {
  return restoreKernels(['Identity', 'Cast'], MARK);
}

/** Are the sharing kernels installed? */
export function wasmShareInstalled(): boolean {
  const k = tf.getKernel('Identity', 'wasm');
  return k !== undefined && (k.kernelFunc as Marked)[MARK] !== undefined;
}
