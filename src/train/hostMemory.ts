/**
 * Direct access to the float32 storage of tensors whose backend keeps them in memory that
 * JavaScript can address: the WASM heap (tfjs-backend-wasm) or a typed array (tfjs-backend-cpu).
 * The optimiser uses it to update parameters in place in one pass, instead of ~20 tensor
 * kernels over the whole parameter vector plus a copy out and a copy back.
 *
 * A view of the WASM heap is invalidated when the heap grows (any tensor allocation can grow
 * it): take a view, use it, and take a new one after allocating.
 */
import * as tf from '@tensorflow/tfjs-core';
import { noteRewritten } from '../backend/wasmMatMul.js';
import { memoryOf } from '../backend/wasmHeap.js';
import type { WasmMemory } from '../util/wasmAsm.js';

interface WasmLike {
  dataIdMap: { get(id: object): { id: number; memoryOffset: number | null; refCount: number } | undefined };
  wasm: {
    HEAPU8: Uint8Array;
    tfjs?: { disposeData(id: number): void; registerTensor(id: number, size: number, offset: number): void };
    _malloc?: (bytes: number) => number;
    _free?: (ptr: number) => void;
  };
}
interface CpuLike {
  data: { get(id: object): { values?: unknown; refCount: number } | undefined };
}

function backendOf(t: tf.Tensor): unknown {
  const info = (tf.engine().state as unknown as { tensorInfo: { get(id: object): { backend: unknown } | undefined } }).tensorInfo.get(t.dataId);
  return info?.backend;
}

function isWasm(b: unknown): b is WasmLike {
  return typeof b === 'object' && b !== null && 'dataIdMap' in b && 'wasm' in b;
}

function isCpu(b: unknown): b is CpuLike {
  return typeof b === 'object' && b !== null && 'data' in b && !('dataIdMap' in b) && typeof (b as CpuLike).data?.get === 'function';
}

/**
 * The tensor's float32 values as a live view, or undefined when the backend keeps them
 * elsewhere (GPU, libtensorflow) or the tensor is not float32.
 */
export function hostView(t: tf.Tensor): Float32Array | undefined {
  if (t.isDisposed || t.dtype !== 'float32') return undefined;
  const b = backendOf(t);
  if (isWasm(b)) {
    const d = b.dataIdMap.get(t.dataId);
    if (!d || d.memoryOffset === null) return undefined;
    return new Float32Array(b.wasm.HEAPU8.buffer, d.memoryOffset, t.size);
  }
  if (isCpu(b)) {
    const v = b.data.get(t.dataId)?.values;
    return v instanceof Float32Array && v.length === t.size ? v : undefined;
  }
  return undefined;
}

/**
 * The heap of the WASM backend that holds `t` (its memory, malloc and free), or undefined on
 * other backends: where the optimiser keeps its moments so that it updates parameters in place.
 */
export function wasmHeapOf(t: tf.Tensor): { memory: WasmMemory; malloc(bytes: number): number; free(ptr: number): void } | undefined {
  const b = backendOf(t);
  if (!isWasm(b)) return undefined;
  const memory = memoryOf(b);
  const { _malloc: malloc, _free: free } = b.wasm;
  if (!memory || typeof malloc !== 'function' || typeof free !== 'function') return undefined;
  return { memory, malloc: (bytes) => malloc.call(b.wasm, bytes), free: (ptr) => free.call(b.wasm, ptr) };
}

/**
 * A live view that may be written: only when this tensor is the sole owner of its storage
 * (no reshape, clone or other variable shares it), so an in-place write changes nothing else.
 */
export function writableHostView(t: tf.Tensor): Float32Array | undefined {
  const b = backendOf(t);
  const refs = isWasm(b) ? b.dataIdMap.get(t.dataId)?.refCount : isCpu(b) ? b.data.get(t.dataId)?.refCount : undefined;
  return refs === 1 ? hostView(t) : undefined;
}

/**
 * Call after writing through a writable view. The WASM backend caches XNNPACK operators with
 * weights packed from a tensor's memory, keyed by its id (matMul, conv); re-registering the id
 * drops those caches so the next kernel repacks the new values. The memory is not freed.
 */
export function markWritten(t: tf.Tensor): void {
  const b = backendOf(t);
  if (!isWasm(b)) return;
  const d = b.dataIdMap.get(t.dataId);
  if (!d || d.memoryOffset === null || !b.wasm.tfjs) return;
  b.wasm.tfjs.disposeData(d.id);
  b.wasm.tfjs.registerTensor(d.id, t.size, d.memoryOffset);
  // Its next product need not pack it for XNNPACK only to use it once (wasmMatMul.ts).
  noteRewritten(t.dataId);
}

/**
 * Set a variable's values: in place when it owns its storage in addressable memory (and the
 * backend's caches of it are dropped), else through `assign`.
 */
export function writeVariable(v: tf.Variable, values: Float32Array): void {
  const view = writableHostView(v);
  if (view) {
    view.set(values);
    markWritten(v);
  } else {
    const t = tf.tensor(values, v.shape, 'float32');
    v.assign(t);
    t.dispose();
  }
}

/** The tensor's values: a live view when possible, else a copy. */
export function readValues(t: tf.Tensor): Float32Array {
  return hostView(t) ?? (t.dataSync() as Float32Array);
}
