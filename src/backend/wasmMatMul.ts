/**
 * Fast paths for matrix products on the tfjs WASM backend.
 *
 * The WASM backend (tfjs-backend-wasm 4.x) sends a matrix product to XNNPACK only when
 * neither operand is transposed and both have a single batch; every other product
 * (`transposeA`, `transposeB`, batched operands) runs a naive blocked triple loop that is
 * 5-25x slower. Gradients of dense layers are exactly such products
 * (`dA = dY Bᵀ`, `dB = Aᵀ dY`), so training with the stock kernel is ~20x slower than
 * inference. In addition, the fused product (`_FusedMatMul`, used by `tf.fused.matMul`)
 * indexes its bias wrongly on that slow path (it adds `bias[min(i*N+j, len-1)]` instead
 * of `bias[j]`), so a transposed or batched fused product with a bias is not just slow
 * but wrong.
 *
 * `installWasmMatMulFix` replaces the two kernels with wrappers that reshape every
 * product into calls the fast path accepts:
 *
 * 1. a transposed operand is materialised: by the SIMD transpose of wasmHeap.ts when its
 *    sides are multiples of 4, else by the backend's own Transpose kernel (a memory-bound
 *    O(size) copy, cheap next to the O(M·K·N) product);
 * 2. a batched left operand against a single right operand (`[B, M, K] x [K, N]`) is
 *    folded into one `[1, B·M, K] x [1, K, N]` product (no copy: same memory);
 * 3. a batched right operand is split into one fast product per batch entry, with
 *    broadcasting of the batch dimensions, when the matrices are large enough for
 *    XNNPACK to beat the loop (`MIN_SPLIT_MACS`); small batched plain products stay on
 *    the stock kernel, which is correct for them. Batch entries are paired exactly as
 *    tfjs's cpu and stock wasm kernels pair them (modulo the flattened batch sizes).
 *
 * It also wraps the Sum kernel so that float32 sums over leading axes (the bias gradient of
 * every dense layer sums over the batch) run as SIMD column sums instead of the stock
 * transpose-then-sum, with bit-identical results.
 *
 * All work happens at the backend level (TensorInfo + `backend.disposeData`), so no
 * engine tensors are created and every intermediate is released before the kernel
 * returns. Gradients are unaffected: tfjs-core's gradient functions call `matMul`,
 * which lands in the wrapped kernel again.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DataId, DataType, KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { heapKernels, type HeapKernels } from './wasmHeap.js';

/** The part of tfjs-backend-wasm's `BackendWasm` the wrappers use. */
export interface WasmBackendLike {
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: DataId, force?: boolean): boolean;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

type KernelArgs = Parameters<KernelFunc>[0];

/**
 * A batched product whose right operand has more than one batch entry is split into one
 * XNNPACK call per entry when a single entry has at least this many multiply-adds.
 * Below it the per-call overhead (copy of the operands, XNNPACK weight packing, a JS
 * kernel call) outweighs the gain and the stock loop is kept. Measured on this machine:
 * see `benchmarks/matmul.ts` (`batched` section).
 */
export const MIN_SPLIT_MACS = 8192;
let minSplitMacs = MIN_SPLIT_MACS;
let useSimdKernels = true;
let useOperandSwap = true;
let useOwnGemm = true;
let useTransposedPanels = true;

/**
 * Right operands whose values were rewritten in place since XNNPACK last saw them (the
 * optimiser's in-place update, `markWritten` in src/train/hostMemory.ts): the next plain
 * product with one of them would pack it again for a single use, so it runs in the
 * no-packing kernel instead, once; a product after that (inference) packs it and XNNPACK
 * keeps the packed copy as usual.
 */
const rewritten = new WeakSet<object>();

/**
 * Plain products with at least this many rows (all batch entries of the left operand) run in
 * the no-packing kernel even when XNNPACK holds the right operand packed: from 64 rows it was
 * ~20% faster than XNNPACK's packed kernel here, at 16 rows even, and at 1 row 2x slower (it
 * copies B panel by panel for every call). Measured by `benchmarks/heapKernels.ts` (`product X W`
 * rows).
 */
export const GEMM_MIN_ROWS = 64;

/** Does a plain (untransposed) product go to the no-packing kernel rather than XNNPACK? */
function plainToGemm(b: TensorInfo, p: Plan): boolean {
  return useOwnGemm && useSimdKernels && (rewritten.has(b.dataId) || p.batchA * p.m >= GEMM_MIN_ROWS);
}

/** Record that a tensor's values were rewritten in place (see `rewritten`). */
export function noteRewritten(dataId: object): void {
  rewritten.add(dataId);
}

/**
 * XNNPACK packs the right operand of every product into its own layout before multiplying,
 * and the WASM backend caches that only per tensor (weights used again and again). The
 * operands of a gradient product are fresh every time, so each is packed for a single use, at
 * 5-13 ns per element on this machine against 1.4-1.7 ns per element for the SIMD transpose
 * (3.6-7.8x; measured by `benchmarks/matmul.ts`, `packing` line). Packing costs this many
 * transposes of the same number of elements in the model that picks between `C = A B` and
 * `C = (Bᵀ Aᵀ)ᵀ` where the no-packing kernel does not apply.
 */
export const PACK_COST = 6;

/** Tuning knobs of the fix (benchmarks use them to map the split threshold). */
export interface WasmMatMulOptions {
  /** Split batched products into per-entry fast calls from this many multiply-adds per entry. */
  minSplitMacs?: number;
  /**
   * Use the SIMD kernels of wasmHeap.ts (default): transposes of float32 operands whose sides
   * are multiples of 4, and float32 sums over leading axes (bias gradients), instead of the
   * backend's Transpose kernel and its transpose-then-sum (kept for before/after benchmarks
   * and as the fallback). Results are bit-identical either way.
   */
  simdKernels?: boolean;
  /**
   * Compute a transposed single-batch product `C = op(A) op(B)` as `(op(B)ᵀ op(A)ᵀ)ᵀ` when that
   * packs fewer elements (default on; needs the SIMD kernels): for the input gradient of a
   * dense layer, `dX = dY Wᵀ` with batch < width, XNNPACK then packs `dYᵀ` instead of `Wᵀ`.
   * Every output entry is the same float32 dot product in the same order, so results are
   * bit-identical either way.
   */
  operandSwap?: boolean;
  /**
   * Run products in the no-packing SIMD kernel of wasmHeap.ts (default on; needs the SIMD
   * kernels and a multiple of 8 columns): those whose right operand XNNPACK would pack for a
   * single use (every transposed product, i.e. the gradients of dense layers, and the first
   * product with weights the optimiser just rewrote), and plain ones with at least
   * GEMM_MIN_ROWS rows. Bit-identical to XNNPACK's result.
   */
  ownGemm?: boolean;
  /**
   * In the no-packing kernel, read a transposed right operand in place (default on; k a
   * multiple of 4): the kernel transposes each 8-column panel as it copies it, instead of the
   * whole operand being transposed first. Bit-identical either way.
   */
  transposedPanels?: boolean;
}

/** Change the tuning knobs; returns the values now in force. */
export function setWasmMatMulOptions(opts: WasmMatMulOptions): Required<WasmMatMulOptions> {
  if (opts.minSplitMacs !== undefined) {
    if (!(opts.minSplitMacs >= 0)) {
      throw new Error(`setWasmMatMulOptions: minSplitMacs must be >= 0, got ${opts.minSplitMacs}`);
    }
    minSplitMacs = opts.minSplitMacs;
  }
  const flag = (name: 'simdKernels' | 'operandSwap' | 'ownGemm' | 'transposedPanels'): boolean | undefined => {
    const v = opts[name];
    if (v !== undefined && typeof v !== 'boolean') throw new Error(`setWasmMatMulOptions: ${name} must be a boolean, got ${String(v)}`);
    return v;
  };
  useSimdKernels = flag('simdKernels') ?? useSimdKernels;
  useOperandSwap = flag('operandSwap') ?? useOperandSwap;
  useOwnGemm = flag('ownGemm') ?? useOwnGemm;
  useTransposedPanels = flag('transposedPanels') ?? useTransposedPanels;
  return { minSplitMacs, simdKernels: useSimdKernels, operandSwap: useOperandSwap, ownGemm: useOwnGemm, transposedPanels: useTransposedPanels };
}

/**
 * The Sum kernel, wrapped: a float32 sum over leading axes (the batch axes of a bias gradient)
 * runs as column sums in the heap (wasmHeap.ts) instead of the stock transpose-then-sum;
 * every other sum goes to the stock kernel.
 */
function makeSum(original: KernelFunc): KernelFunc {
  const wrapper: KernelFunc = (args: KernelArgs) => {
    const x = args.inputs.x as TensorInfo;
    const backend = args.backend as unknown as WasmBackendLike;
    const kernels = useSimdKernels && x.dtype === 'float32' ? heapKernels(backend) : undefined;
    if (kernels) {
      const attrs = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      // Only axes listed in order: the stock kernel sums in the order the axes are listed.
      const axes = tf.util.parseAxisParam(attrs.axis, x.shape);
      const k = axes.length;
      if (k > 0 && k < x.shape.length && axes.every((a, i) => a === i)) {
        const rows = tf.util.sizeFromShape(x.shape.slice(0, k));
        const cols = tf.util.sizeFromShape(x.shape.slice(k));
        if (rows > 0 && cols > 0) {
          const out = backend.makeOutput(attrs.keepDims ? [...axes.map(() => 1), ...x.shape.slice(k)] : x.shape.slice(k), 'float32');
          // Offsets are taken after makeOutput: an allocation can grow (and replace) the heap.
          kernels.colSum(backend.typedArrayFromHeap(x).byteOffset, backend.typedArrayFromHeap(out).byteOffset, rows, cols);
          stats.simdSums++;
          return out;
        }
      }
    }
    return original(args);
  };
  return mark(wrapper, original);
}

/** Tag on a wrapper kernelFunc; its value is the stock kernelFunc it wraps. */
const MARK = Symbol.for('scoreflow.wasmMatMulFix');
type Marked = KernelFunc & { [MARK]?: KernelFunc };

/** How products were routed since the fix was installed (for tests and `doctor`). */
export interface WasmMatMulStats {
  /** Stock-kernel calls in the form it sends to XNNPACK (no transposes, batch 1). */
  fastCalls: number;
  /** Stock-kernel calls in a form that takes its naive loop (small batched products). */
  slowCalls: number;
  /** Operands transposed by the wrapper before the product. */
  transposes: number;
  /** Of those, transposed by the SIMD kernel (wasmHeap.ts) rather than the backend's. */
  simdTransposes: number;
  /** Sums over leading axes computed as column sums (wasmHeap.ts). */
  simdSums: number;
  /** Transposed products computed as the transpose of the swapped product. */
  swappedProducts: number;
  /** Products run in the no-packing SIMD kernel (wasmHeap.ts `gemm`). */
  gemmCalls: number;
  /** Of those, with a transposed right operand read in place (panels transposed by the kernel). */
  transposedPanels: number;
}
const stats: WasmMatMulStats = { fastCalls: 0, slowCalls: 0, transposes: 0, simdTransposes: 0, simdSums: 0, swappedProducts: 0, gemmCalls: 0, transposedPanels: 0 };

/** A copy of the routing counters. */
export function wasmMatMulStats(): WasmMatMulStats {
  return { ...stats };
}
/** Is the wasm BatchMatMul kernel currently the patched one? */
export function wasmMatMulFixInstalled(): boolean {
  const k = tf.getKernel('BatchMatMul', 'wasm');
  return k !== undefined && (k.kernelFunc as Marked)[MARK] !== undefined;
}

/**
 * Replace the WASM backend's `BatchMatMul` and `_FusedMatMul` kernels with the fast
 * wrappers described above. Returns true when the wrappers are in place (also when they
 * already were: a second call does nothing), false when the WASM backend's kernels are
 * not registered (the package was never imported). Safe to call before or after the
 * backend is initialised.
 */
export function installWasmMatMulFix(): boolean {
  const bmm = tf.getKernel('BatchMatMul', 'wasm');
  const transposeKernel = tf.getKernel('Transpose', 'wasm');
  if (bmm === undefined || transposeKernel === undefined) return false;
  if ((bmm.kernelFunc as Marked)[MARK] === undefined) {
    replaceKernel(bmm, makeBatchMatMul(bmm.kernelFunc, transposeKernel.kernelFunc));
  }
  const fused = tf.getKernel('_FusedMatMul', 'wasm');
  if (fused !== undefined && (fused.kernelFunc as Marked)[MARK] === undefined) {
    replaceKernel(fused, makeFusedMatMul(fused.kernelFunc, transposeKernel.kernelFunc));
  }
  const sum = tf.getKernel('Sum', 'wasm');
  if (sum !== undefined && (sum.kernelFunc as Marked)[MARK] === undefined) {
    replaceKernel(sum, makeSum(sum.kernelFunc));
  }
  return true;
}

/**
 * Put the stock kernels back (for benchmarks that compare before/after). Returns true if
 * something was restored.
 */
export function uninstallWasmMatMulFix(): boolean {
  return restoreKernels(['BatchMatMul', '_FusedMatMul', 'Sum'], MARK);
}

/**
 * Re-register, for each named WASM kernel whose function carries the original under `mark`,
 * that original (wasmShare.ts uses it too). Returns true if something was restored.
 */
export function restoreKernels(names: readonly string[], mark: symbol): boolean {
  let restored = false;
  for (const name of names) {
    const k = tf.getKernel(name, 'wasm');
    const original = k === undefined ? undefined : (k.kernelFunc as KernelFunc & Record<symbol, KernelFunc | undefined>)[mark];
    if (k !== undefined && original !== undefined) {
      replaceKernel(k, original);
      restored = true;
    }
  }
  return restored;
}

/** Register `kernelFunc` in place of the kernel `config` describes (wasmShare.ts uses it too). */
export function replaceKernel(config: KernelConfig, kernelFunc: KernelFunc): void {
  tf.unregisterKernel(config.kernelName, config.backendName);
  // Keep the stock setupFunc: it binds the C++ entry point the stock kernelFunc (called
  // from the wrapper) uses, and runs again if the backend is ever re-initialised.
  tf.registerKernel({ ...config, kernelFunc });
}

function mark(wrapper: KernelFunc, original: KernelFunc): KernelFunc {
  (wrapper as Marked)[MARK] = original;
  return wrapper;
}

// ---------------------------------------------------------------------------------------
// Shapes

interface Plan {
  /** Flattened batch sizes of a and b. */
  batchA: number;
  batchB: number;
  /** Batch shapes of a, b and the (broadcast) output. */
  batchShapeOut: number[];
  m: number;
  k: number;
  n: number;
  /** Full output shape (broadcast batch dims + [m, n]). */
  outShape: number[];
}

function plan(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): Plan {
  const ra = aShape.length;
  const rb = bShape.length;
  const m = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const kA = transposeA ? aShape[ra - 2] : aShape[ra - 1];
  const kB = transposeB ? bShape[rb - 1] : bShape[rb - 2];
  const n = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  if (kA !== kB) {
    throw new Error(
      `Error in matMul: inner shapes (${kA}) and (${kB}) of Tensors with shapes ${aShape} and ` +
        `${bShape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const batchShapeA = aShape.slice(0, -2);
  const batchShapeB = bShape.slice(0, -2);
  const batchShapeOut = tf.broadcast_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
  return {
    batchA: tf.util.sizeFromShape(batchShapeA),
    batchB: tf.util.sizeFromShape(batchShapeB),
    batchShapeOut,
    m,
    k: kA,
    n,
    outShape: [...batchShapeOut, m, n],
  };
}

// ---------------------------------------------------------------------------------------
// Backend-level helpers

/** Temporaries owned by one kernel call; `release()` frees them all. */
class Scratch {
  private readonly owned: TensorInfo[] = [];
  constructor(
    readonly backend: WasmBackendLike,
    private readonly transposeFunc: KernelFunc,
  ) {}

  own(t: TensorInfo): TensorInfo {
    this.owned.push(t);
    return t;
  }

  /** Free one temporary early (it must have come from `own`). */
  drop(t: TensorInfo): void {
    const i = this.owned.indexOf(t);
    if (i >= 0) {
      this.owned.splice(i, 1);
      this.backend.disposeData(t.dataId);
    }
  }

  release(): void {
    for (const t of this.owned) this.backend.disposeData(t.dataId);
    this.owned.length = 0;
  }

  /**
   * Swap the two innermost axes of `x`, returning a new tensor: owned (freed by `release`)
   * unless `keep`, when the caller takes it (a kernel's output).
   */
  transposeInner(x: TensorInfo, keep = false): TensorInfo {
    const r = x.shape.length;
    const rows = x.shape[r - 2];
    const cols = x.shape[r - 1];
    const fast = useSimdKernels && x.dtype === 'float32' && rows % 4 === 0 && cols % 4 === 0 ? heapKernels(this.backend)?.transpose : undefined;
    if (fast) {
      const made = this.backend.makeOutput([...x.shape.slice(0, -2), cols, rows], 'float32');
      const out = keep ? made : this.own(made);
      // Offsets are taken after makeOutput: an allocation can grow (and replace) the heap.
      const src = this.backend.typedArrayFromHeap(x).byteOffset;
      const dst = this.backend.typedArrayFromHeap(out).byteOffset;
      const bytes = rows * cols * 4;
      const batch = tf.util.sizeFromShape(x.shape.slice(0, -2));
      for (let k = 0; k < batch; k++) fast(src + k * bytes, dst + k * bytes, rows, cols);
      stats.transposes++;
      stats.simdTransposes++;
      return out;
    }
    const perm = [...Array(r - 2).keys(), r - 1, r - 2];
    const out = this.transposeFunc({
      inputs: { x },
      backend: this.backend,
      attrs: { perm } as unknown as NamedAttrMap,
    }) as TensorInfo;
    stats.transposes++;
    return keep ? out : this.own(out);
  }

  /** Copy batch entry `index` of a `[B, rows, cols]` operand into a new `[1, rows, cols]`. */
  batchEntry(x: TensorInfo, index: number, rows: number, cols: number): TensorInfo {
    const size = rows * cols;
    const out = this.own(this.backend.makeOutput([1, rows, cols], x.dtype));
    // Views are taken after makeOutput: an allocation can grow (and replace) the heap.
    const src = this.backend.typedArrayFromHeap(x) as Float32Array;
    const dst = this.backend.typedArrayFromHeap(out) as Float32Array;
    dst.set(src.subarray(index * size, (index + 1) * size));
    return out;
  }
}

/** Same memory, another shape (no refcount change; never dispose a view). */
function view(x: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

function readFlag(attrs: NamedAttrMap | undefined, name: string): boolean {
  return attrs !== undefined && attrs[name] === true;
}

/**
 * Bring `a` to `[batchA, m, k]` and `b` to `[batchB, k, n]` (row-major, no transposes),
 * transposing where needed.
 */
function canonicalOperands(
  scratch: Scratch,
  a: TensorInfo,
  b: TensorInfo,
  p: Plan,
  transposeA: boolean,
  transposeB: boolean,
): [TensorInfo, TensorInfo] {
  const a3 = view(transposeA ? scratch.transposeInner(a) : a, [p.batchA, p.m, p.k]);
  const b3 = view(transposeB ? scratch.transposeInner(b) : b, [p.batchB, p.k, p.n]);
  return [a3, b3];
}

/**
 * The product of canonical operands through the fast path only. `call(x, y)` runs the
 * stock kernel on `[1, rows, k] x [1, k, n]` operands without transposes.
 */
function productCanonical(
  scratch: Scratch,
  a3: TensorInfo,
  b3: TensorInfo,
  p: Plan,
  call: (x: TensorInfo, y: TensorInfo) => TensorInfo,
): TensorInfo {
  const { batchA, batchB, m, k, n } = p;
  if (batchB === 1) {
    // [B, m, k] x [k, n] == [1, B*m, k] x [1, k, n]: rows of all batch entries at once.
    const out = call(view(a3, [1, batchA * m, k]), b3);
    return { ...out, shape: p.outShape };
  }
  const nOut = tf.util.sizeFromShape(p.batchShapeOut);
  const backend = scratch.backend;
  const out = backend.makeOutput([nOut, m, n], 'float32');
  try {
    for (let i = 0; i < nOut; i++) {
      // Batch entries are paired the way tfjs's own kernels (cpu, stock wasm) pair them:
      // modulo the flattened batch size. That is numpy broadcasting whenever the batch
      // shapes are equal or one side has a single entry; for partial broadcasts such as
      // [2,1] x [1,3] tfjs itself differs from numpy, and we stay identical to tfjs.
      const ia = i % batchA;
      const ib = i % batchB;
      const ai = batchA === 1 ? view(a3, [1, m, k]) : scratch.batchEntry(a3, ia, m, k);
      // A fresh tensor per entry: XNNPACK caches packed weights by the right operand's id.
      const bi = scratch.batchEntry(b3, ib, k, n);
      const r = call(ai, bi);
      const dst = backend.typedArrayFromHeap(out) as Float32Array;
      const src = backend.typedArrayFromHeap({ ...r, shape: [m * n] }) as Float32Array;
      dst.set(src, i * m * n);
      backend.disposeData(r.dataId);
      scratch.drop(bi);
      if (ai.dataId !== a3.dataId) scratch.drop(ai);
    }
  } catch (err) {
    backend.disposeData(out.dataId);
    throw err;
  }
  return { ...out, shape: p.outShape };
}

/**
 * Should the single-batch product `op(A) op(B)` (at least one operand transposed) be computed
 * as `(op(B)ᵀ op(A)ᵀ)ᵀ`? Costs in elements moved, packing weighted by PACK_COST: directly,
 * each transposed operand is materialised and `op(B)` [k, n] is packed; swapped, the operands
 * that are *not* transposed are materialised, `op(A)ᵀ` [k, m] is packed, and the [n, m] result
 * is transposed back. Only when every transpose involved runs as the SIMD kernel.
 */
function swapPays(p: Plan, transposeA: boolean, transposeB: boolean): boolean {
  if (!useOperandSwap || !useSimdKernels || p.batchA !== 1 || p.batchB !== 1 || (!transposeA && !transposeB)) return false;
  const { m, k, n } = p;
  if (m % 4 !== 0 || k % 4 !== 0 || n % 4 !== 0) return false;
  const direct = (transposeA ? m * k : 0) + (transposeB ? n * k : 0) + PACK_COST * k * n;
  const swapped = (transposeA ? 0 : m * k) + (transposeB ? 0 : n * k) + PACK_COST * k * m + m * n;
  return swapped < direct;
}

/** `(op(B)ᵀ op(A)ᵀ)ᵀ` through the fast path: the caller's output, [m, n] in `p.outShape`. */
function swappedProduct(
  scratch: Scratch,
  a: TensorInfo,
  b: TensorInfo,
  p: Plan,
  transposeA: boolean,
  transposeB: boolean,
  call: (x: TensorInfo, y: TensorInfo) => TensorInfo,
): TensorInfo {
  const { m, k, n } = p;
  // op(B)ᵀ is B as stored when transposeB ([n, k]); else B [k, n] transposed. Likewise op(A)ᵀ.
  const x = view(transposeB ? b : scratch.transposeInner(view(b, [1, k, n])), [1, n, k]);
  const y = view(transposeA ? a : scratch.transposeInner(view(a, [1, m, k])), [1, k, m]);
  const r = scratch.own(call(x, y));
  const out = scratch.transposeInner(view(r, [1, n, m]), true);
  stats.swappedProducts++;
  return { ...out, shape: p.outShape };
}

/** The no-packing product kernel, when enabled and available for this backend. */
function ownGemm(backend: WasmBackendLike): HeapKernels['gemm'] | undefined {
  return useOwnGemm && useSimdKernels ? heapKernels(backend)?.gemm : undefined;
}

/**
 * `[rows, k] x [k, n]` (row-major, batch 1) in the no-packing kernel, optionally with a bias per
 * column and ReLU; the result belongs to the caller.
 */
function gemmProduct(scratch: Scratch, gemm: HeapKernels['gemm'], x: TensorInfo, y: TensorInfo, rows: number, k: number, n: number, fused: Fused = {}, yTransposed = false): TensorInfo {
  const backend = scratch.backend;
  const out = backend.makeOutput([1, rows, n], 'float32');
  // The kernel's copy of one 8-column panel of y (k rows of 8 floats).
  const panel = scratch.own(backend.makeOutput([k * 8], 'float32'));
  // Offsets are taken after makeOutput: an allocation can grow (and replace) the heap.
  const ao = backend.typedArrayFromHeap(view(x, [rows * k])).byteOffset;
  const bo = backend.typedArrayFromHeap(view(y, [k * n])).byteOffset;
  const co = backend.typedArrayFromHeap(view(out, [rows * n])).byteOffset;
  const biasOffset = fused.bias === undefined ? undefined : backend.typedArrayFromHeap(view(fused.bias, [n])).byteOffset;
  const po = backend.typedArrayFromHeap(panel).byteOffset;
  gemm(ao, bo, co, rows, k, n, po, biasOffset, fused.relu ?? false, yTransposed);
  stats.gemmCalls++;
  if (yTransposed) stats.transposedPanels++;
  return out;
}

/** What a fused product adds to the plain one in the no-packing kernel. */
interface Fused {
  /** One value per output column. */
  readonly bias?: TensorInfo;
  readonly relu?: boolean;
}

/**
 * A single-right-operand product in the no-packing kernel, when it applies: every transposed
 * product, and a plain one whose right operand was just rewritten or that has GEMM_MIN_ROWS
 * rows. Without packing, only the transposes count: directly, the transposed operands are
 * materialised; swapped (a batch-1 left operand, no bias or activation), `(op(B)ᵀ op(A)ᵀ)ᵀ`
 * materialises the operands that are *not* transposed and the result. The kernel needs a
 * multiple of 8 columns in what it computes. Undefined: not taken.
 */
function gemmRoute(scratch: Scratch, a: TensorInfo, b: TensorInfo, p: Plan, transposeA: boolean, transposeB: boolean, fused: Fused = {}): TensorInfo | undefined {
  const gemm = ownGemm(scratch.backend);
  if (!gemm || p.batchB !== 1 || p.m * p.k * p.n === 0) return undefined;
  const { batchA, m, k, n } = p;
  if (!transposeA && !transposeB && !plainToGemm(b, p)) return undefined;
  const plain = fused.bias === undefined && !fused.relu;
  // A transposed B (k a multiple of 4) is read in place: the kernel transposes each panel.
  const bInPlace = useTransposedPanels && transposeB && k % 4 === 0;
  const direct = n % 8 === 0 ? (transposeA ? batchA * m * k : 0) + (transposeB && !bInPlace ? n * k : 0) : Infinity;
  const swapped = plain && batchA === 1 && m % 8 === 0 ? (transposeA ? 0 : m * k) + (transposeB ? 0 : n * k) + m * n : Infinity;
  if (direct === Infinity && swapped === Infinity) return undefined;
  rewritten.delete(b.dataId);
  if (direct <= swapped) {
    if (bInPlace) {
      const a3 = view(transposeA ? scratch.transposeInner(a) : a, [batchA, m, k]);
      return { ...gemmProduct(scratch, gemm, a3, b, batchA * m, k, n, fused, true), shape: p.outShape };
    }
    const [a3, b3] = canonicalOperands(scratch, a, b, p, transposeA, transposeB);
    return { ...gemmProduct(scratch, gemm, a3, b3, batchA * m, k, n, fused), shape: p.outShape };
  }
  return swappedProduct(scratch, a, b, p, transposeA, transposeB, (x, y) => gemmProduct(scratch, gemm, x, y, n, k, m));
}

// ---------------------------------------------------------------------------------------
// Kernels

function makeBatchMatMul(original: KernelFunc, transposeFunc: KernelFunc): KernelFunc {
  const wrapper: KernelFunc = (args: KernelArgs) => {
    const a = args.inputs['a'] as TensorInfo;
    const b = args.inputs['b'] as TensorInfo;
    const transposeA = readFlag(args.attrs, 'transposeA');
    const transposeB = readFlag(args.attrs, 'transposeB');
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    const p = plan(a.shape, b.shape, transposeA, transposeB);
    const fastAlready = !transposeA && !transposeB && p.batchA === 1 && p.batchB === 1;
    const tooSmallToSplit = p.batchB > 1 && p.m * p.k * p.n < minSplitMacs;
    const backend = args.backend as WasmBackendLike;
    const toGemm = !transposeA && !transposeB && plainToGemm(b, p);
    if ((fastAlready && !toGemm) || tooSmallToSplit || p.m * p.k * p.n === 0) {
      if (fastAlready) stats.fastCalls++;
      else stats.slowCalls++;
      return original(args);
    }

    const scratch = new Scratch(backend, transposeFunc);
    const plainAttrs = { transposeA: false, transposeB: false } as NamedAttrMap;
    const call = (x: TensorInfo, y: TensorInfo): TensorInfo => {
      stats.fastCalls++;
      return original({ inputs: { a: x, b: y }, backend, attrs: plainAttrs }) as TensorInfo;
    };
    try {
      const viaGemm = gemmRoute(scratch, a, b, p, transposeA, transposeB);
      if (viaGemm) return viaGemm;
      if (fastAlready) return call(a, b);
      if (swapPays(p, transposeA, transposeB)) return swappedProduct(scratch, a, b, p, transposeA, transposeB, call);
      const [a3, b3] = canonicalOperands(scratch, a, b, p, transposeA, transposeB);
      return productCanonical(scratch, a3, b3, p, call);
    } finally {
      scratch.release();
    }
  };
  return mark(wrapper, original);
}

function makeFusedMatMul(original: KernelFunc, transposeFunc: KernelFunc): KernelFunc {
  const wrapper: KernelFunc = (args: KernelArgs) => {
    const a = args.inputs['a'] as TensorInfo;
    const b = args.inputs['b'] as TensorInfo;
    const bias = args.inputs['bias'] as TensorInfo | undefined | null;
    const prelu = args.inputs['preluActivationWeights'] as TensorInfo | undefined | null;
    const transposeA = readFlag(args.attrs, 'transposeA');
    const transposeB = readFlag(args.attrs, 'transposeB');
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length !== 3 || b.shape.length !== 3) {
      return original(args);
    }
    const p = plan(a.shape, b.shape, transposeA, transposeB);
    const fastAlready = !transposeA && !transposeB && p.batchA === 1 && p.batchB === 1;
    if ((fastAlready && !plainToGemm(b, p)) || p.m * p.k * p.n === 0) {
      stats.fastCalls++;
      return original(args);
    }
    // The activation's PReLU weights are applied as alpha[j % C] over the flat output; a
    // per-entry split keeps that only when C divides one entry's size.
    const preluSize = prelu == null ? 0 : tf.util.sizeFromShape(prelu.shape);
    if (p.batchB > 1 && preluSize > 0 && (p.m * p.n) % preluSize !== 0) {
      stats.slowCalls++;
      return original(args);
    }

    const backend = args.backend as WasmBackendLike;
    const scratch = new Scratch(backend, transposeFunc);
    // The no-packing kernel, for a bias per output column and a linear or ReLU activation
    // (the fused products of training: gradients, and freshly updated weights).
    const activation = args.attrs?.['activation'];
    if (
      (activation === 'linear' || activation === 'relu') &&
      prelu == null &&
      (bias == null || (bias.dtype === 'float32' && tf.util.sizeFromShape(bias.shape) === p.n))
    ) {
      try {
        const viaGemm = gemmRoute(scratch, a, b, p, transposeA, transposeB, { bias: bias ?? undefined, relu: activation === 'relu' });
        if (viaGemm) return viaGemm;
      } finally {
        scratch.release();
      }
    }
    const attrs = { ...(args.attrs ?? {}), transposeA: false, transposeB: false } as NamedAttrMap;
    const extra: Record<string, TensorInfo> = {};
    if (bias != null) extra['bias'] = bias;
    if (prelu != null) extra['preluActivationWeights'] = prelu;
    try {
      const [a3, b3] = canonicalOperands(scratch, a, b, p, transposeA, transposeB);
      return productCanonical(scratch, a3, b3, p, (x, y) => {
        stats.fastCalls++;
        return original({ inputs: { a: x, b: y, ...extra }, backend, attrs }) as TensorInfo;
      });
    } finally {
      scratch.release();
    }
  };
  return mark(wrapper, original);
}
