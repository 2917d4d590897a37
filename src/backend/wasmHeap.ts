/**
 * WebAssembly SIMD kernels that work directly in the tfjs WASM backend's heap: a transpose and
 * a sum over leading axes (column sums).
 *
 * The matMul fix (wasmMatMul.ts) materialises transposed operands before handing products to
 * XNNPACK; a dense layer's gradients need two such transposes per layer and step. The
 * backend's own Transpose kernel is a generic n-d loop (1.5 ms for 512 x 512 here). This
 * kernel imports the backend's memory, so it reads and writes tensors where they already are,
 * and moves 4 x 4 blocks with four 128-bit loads, eight shuffles and four 128-bit stores,
 * walking the matrix in 64-column bands so the rows it writes stay in cache.
 *
 * The backend's Sum kernel reduces only innermost axes, so a sum over the batch (every bias
 * gradient) first transposes its input. `colSum` adds the rows into the output instead, four
 * columns per instruction; each output is still the float32 sum of its column in row order
 * starting from 0, the order of the backend's scalar loop, so the results are bit-identical.
 *
 * The single-threaded build exports its memory and the threaded build keeps its (shared) memory
 * on the module; the kernels import either (declared shared for the latter). They run on the
 * calling thread between the backend's kernels, never beside them. Where WebAssembly SIMD or
 * the memory is missing, `heapKernels` returns undefined and callers keep the backend's
 * kernels. Transposes of matrices whose sides are not multiples of 4 also stay with the kernel.
 */
import { Body, compileOrNull, I32, name, op, section, simd, sleb, uleb, vec, wasmApi, type WasmMemory } from '../util/wasmAsm.js';

/** `transpose(src, dst, rows, cols)`: byte offsets; rows and cols multiples of 4. */
type TransposeFn = (src: number, dst: number, rows: number, cols: number) => void;
/** `colSum(src, dst, rows, cols)`: dst[j] = sum over r of src[r][j] (byte offsets, any sizes). */
type ColSumFn = (src: number, dst: number, rows: number, cols: number) => void;

/**
 * `gemm(a, b, c, m, k, n, panel, bias?, relu?)`: C = A B for row-major float32 A [m, k],
 * B [k, n], C [m, n] (byte offsets); n a multiple of 8, k >= 1; `panel`: 32 k bytes of scratch,
 * 16-byte aligned. With `bias` (byte offset of n floats) each entry starts from bias[j]
 * instead of 0; `relu` clamps the result below at 0.
 */
type GemmFn = (a: number, b: number, c: number, m: number, k: number, n: number, panel: number, bias?: number, relu?: boolean, bTransposed?: boolean) => void;
type RawGemmFn = (a: number, b: number, c: number, m: number, k: number, n: number, bias: number, flags: number, panel: number) => void;

export interface HeapKernels {
  readonly transpose: TransposeFn;
  readonly colSum: ColSumFn;
  readonly gemm: GemmFn;
}

const BAND = 64;

/** Byte lanes selecting 32-bit lanes `a, b, c, d` (0-3 first operand, 4-7 second). */
function lanes(a: number, b: number, c: number, d: number): number[] {
  return [a, b, c, d].flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
}

/**
 * Emit the 4 x 4 transpose of the v128 locals r[0..3] (four float32 each) through the
 * temporaries t[0..3]; the returned `pushRow(k)` leaves row k of the transpose (lane k of
 * every r) on the stack.
 */
function transpose4x4(b: Body, r: readonly number[], t: readonly number[]): (k: number) => void {
  // t0 = a0 b0 a1 b1, t1 = a2 b2 a3 b3, t2 = c0 d0 c1 d1, t3 = c2 d2 c3 d3
  b.get(r[0]).get(r[1]).v(simd.i8x16Shuffle, ...lanes(0, 4, 1, 5)).set(t[0]);
  b.get(r[0]).get(r[1]).v(simd.i8x16Shuffle, ...lanes(2, 6, 3, 7)).set(t[1]);
  b.get(r[2]).get(r[3]).v(simd.i8x16Shuffle, ...lanes(0, 4, 1, 5)).set(t[2]);
  b.get(r[2]).get(r[3]).v(simd.i8x16Shuffle, ...lanes(2, 6, 3, 7)).set(t[3]);
  return (k) => {
    const sel = k % 2 === 0 ? lanes(0, 1, 4, 5) : lanes(2, 3, 6, 7);
    b.get(t[k >> 1]).get(t[(k >> 1) + 2]).v(simd.i8x16Shuffle, ...sel);
  };
}

function transposeBody(): number[] {
  // params: src 0, dst 1, rows 2, cols 3
  // locals (i32): i 4, j 5, jb 6, jEnd 7, sRow 8 (byte offset of src row i), rowBytes 9, colBytes 10
  // locals (v128): r0..r3 11-14, t0..t3 15-18
  const SRC = 0, DST = 1, ROWS = 2, COLS = 3;
  const I = 4, J = 5, JB = 6, JEND = 7, SROW = 8, RB = 9, CB = 10;
  const R = [11, 12, 13, 14];
  const T = [15, 16, 17, 18];
  const b = new Body();
  // rowBytes = cols * 4 (a source row), colBytes = rows * 4 (a destination row)
  b.get(COLS).emit(op.i32Const, 2, op.i32Shl).set(RB);
  b.get(ROWS).emit(op.i32Const, 2, op.i32Shl).set(CB);
  // for (jb = 0; jb < cols; jb += BAND)
  b.emit(op.i32Const, 0).set(JB);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(JB).get(COLS).emit(op.i32GeU, op.brIf, 1);
  //   jEnd = min(jb + BAND, cols)
  b.get(JB).emit(op.i32Const, ...uleb(BAND), op.i32Add).set(JEND);
  b.get(JEND).get(COLS).emit(0x4b /* i32.gt_u */, op.if, op.void).get(COLS).set(JEND).emit(op.end);
  //   for (i = 0; i < rows; i += 4)
  b.emit(op.i32Const, 0).set(I);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(I).get(ROWS).emit(op.i32GeU, op.brIf, 1);
  //     sRow = src + i * rowBytes
  b.get(SRC).get(I).get(RB).emit(op.i32Mul, op.i32Add).set(SROW);
  //     for (j = jb; j < jEnd; j += 4)
  b.get(JB).set(J);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(J).get(JEND).emit(op.i32GeU, op.brIf, 1);
  //       r_k = src row i+k, columns j..j+3
  for (let k = 0; k < 4; k++) {
    b.get(SROW).get(J).emit(op.i32Const, 2, op.i32Shl, op.i32Add);
    if (k > 0) b.get(RB).emit(op.i32Const, k, op.i32Mul, op.i32Add);
    b.v(simd.load, 2, 0).set(R[k]);
  }
  const row = transpose4x4(b, R, T);
  for (let k = 0; k < 4; k++) {
    // destination row j+k, columns i..i+3: column k of the block, at dst + (j + k) * colBytes + i * 4
    b.get(DST).get(J);
    if (k > 0) b.emit(op.i32Const, k, op.i32Add);
    b.get(CB).emit(op.i32Mul, op.i32Add).get(I).emit(op.i32Const, 2, op.i32Shl, op.i32Add);
    row(k);
    b.v(simd.store, 2, 0);
  }
  b.get(J).emit(op.i32Const, 4, op.i32Add).set(J);
  b.emit(op.br, 0, op.end, op.end);
  b.get(I).emit(op.i32Const, 4, op.i32Add).set(I);
  b.emit(op.br, 0, op.end, op.end);
  b.get(JEND).set(JB);
  b.emit(op.br, 0, op.end, op.end);
  b.emit(op.end);
  const body = [...vec([[...uleb(7), I32], [...uleb(8), 0x7b /* v128 */]]), ...b.code];
  return [...uleb(body.length), ...body];
}

function colSumBody(): number[] {
  // params: src 0, dst 1, rows 2, cols 3; locals (i32): r 4, j 5 (bytes), row 6 (byte offset
  // of row r), c4 7 (bytes of the columns handled four at a time), cb 8 (bytes of a row)
  const SRC = 0, DST = 1, ROWS = 2, COLS = 3;
  const R = 4, J = 5, ROW = 6, C4 = 7, CB = 8;
  const b = new Body();
  b.get(COLS).emit(op.i32Const, 2, op.i32Shl).set(CB);
  b.get(COLS).emit(op.i32Const, 0x7c /* -4 */, op.i32And, op.i32Const, 2, op.i32Shl).set(C4);
  // dst = 0
  b.emit(op.i32Const, 0).set(J);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(J).get(CB).emit(op.i32GeU, op.brIf, 1);
  b.get(DST).get(J).emit(op.i32Add, op.f32Const, 0, 0, 0, 0, op.f32Store, 2, 0);
  b.get(J).emit(op.i32Const, 4, op.i32Add).set(J);
  b.emit(op.br, 0, op.end, op.end);
  // for each row: dst += row (four columns at a time, then the rest one by one)
  b.emit(op.i32Const, 0).set(R);
  b.get(SRC).set(ROW);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(R).get(ROWS).emit(op.i32GeU, op.brIf, 1);
  b.emit(op.i32Const, 0).set(J);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(J).get(C4).emit(op.i32GeU, op.brIf, 1);
  b.get(DST).get(J).emit(op.i32Add);
  b.get(DST).get(J).emit(op.i32Add).v(simd.load, 2, 0);
  b.get(ROW).get(J).emit(op.i32Add).v(simd.load, 2, 0);
  b.v(simd.f32x4Add).v(simd.store, 2, 0);
  b.get(J).emit(op.i32Const, 16, op.i32Add).set(J);
  b.emit(op.br, 0, op.end, op.end);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(J).get(CB).emit(op.i32GeU, op.brIf, 1);
  b.get(DST).get(J).emit(op.i32Add);
  b.get(DST).get(J).emit(op.i32Add, op.f32Load, 2, 0);
  b.get(ROW).get(J).emit(op.i32Add, op.f32Load, 2, 0);
  b.emit(op.f32Add, op.f32Store, 2, 0);
  b.get(J).emit(op.i32Const, 4, op.i32Add).set(J);
  b.emit(op.br, 0, op.end, op.end);
  b.get(ROW).get(CB).emit(op.i32Add).set(ROW);
  b.get(R).emit(op.i32Const, 1, op.i32Add).set(R);
  b.emit(op.br, 0, op.end, op.end);
  b.emit(op.end);
  const body = [...vec([[...uleb(5), I32]]), ...b.code];
  return [...uleb(body.length), ...body];
}

/**
 * C = A B on blocks of `mr` rows of A and 8 columns of B: 2·mr f32x4 accumulators start at
 * zero (or at the bias) and take `acc += a[i][k] * b[k][j..j+3]` for k = 0, 1, ..., k-1 in
 * turn (splatted A entry, separate multiply and add), then the optional ReLU as
 * `pmax(0, acc)`: the same float32 operations in the same order as XNNPACK's kernels, so each
 * entry has the bits the backend's product gives. B is read in place, row k of the 8-column
 * panel at a time, so no packing is needed: the panel (k x 32 bytes) stays in cache while the
 * row blocks of A stream past it.
 * params: a 0, b 1, c 2, m 3 (a multiple of mr), k 4, n 5 (a multiple of 8), bias 6, flags 7
 * (1: add the bias, 2: ReLU, 4: b holds Bᵀ as [n][k], k a multiple of 4: the panel is built by
 * 4 x 4 SIMD transposes of eight of its rows, so no transpose of the whole operand is
 * materialised), panel 8; byte offsets.
 */
function gemmBody(mr: number): number[] {
  const A = 0, B = 1, C = 2, M = 3, K = 4, N = 5, BIAS = 6, FLAGS = 7, PANEL = 8;
  let l = 9;
  const JB = l++, IB = l++, KK = l++, PB = l++, NB = l++, KB = l++, PC = l++;
  const PA = Array.from({ length: mr }, () => l++);
  const ROWS = Array.from({ length: 8 }, () => l++);
  const KO = l++;
  const nI32 = l - 9;
  const ACC = Array.from({ length: 2 * mr }, () => l++);
  const B0 = l++, B1 = l++, AV = l++, Z0 = l++, Z1 = l++;
  const EXTRA = Array.from({ length: Math.max(0, 8 - 2 * mr) }, () => l++);
  // Panel transposition scratch: eight rows and four temporaries (registers free at that point).
  const TR = [...ACC, ...EXTRA].slice(0, 8);
  const TT = [B0, B1, AV, Z0];
  const nV128 = l - 9 - nI32;
  const b = new Body();
  b.get(N).emit(op.i32Const, 2, op.i32Shl).set(NB);
  b.get(K).emit(op.i32Const, 2, op.i32Shl).set(KB);
  // for (jb = 0; jb < n; jb += 8)
  b.emit(op.i32Const, 0).set(JB);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(JB).get(N).emit(op.i32GeU, op.brIf, 1);
  //   panel[kk] = b[kk][jb .. jb + 8] for every row kk; with flag 4, b holds Bᵀ ([n][k]) and
  //   the panel is rows jb .. jb + 8 of it transposed, four kk at a time (k a multiple of 4)
  b.get(PANEL).set(PC);
  b.get(FLAGS).emit(op.i32Const, 4, op.i32And, op.if, op.void);
  for (let c = 0; c < 8; c++) b.get(B).get(JB).emit(op.i32Const, c, op.i32Add).get(KB).emit(op.i32Mul, op.i32Add).set(ROWS[c]);
  b.emit(op.i32Const, 0).set(KO);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(KO).get(KB).emit(op.i32GeU, op.brIf, 1);
  // The accumulators are not live yet: they hold the loaded rows and the shuffle temporaries.
  for (let c = 0; c < 8; c++) b.get(ROWS[c]).get(KO).emit(op.i32Add).v(simd.load, 2, 0).set(TR[c]);
  for (const half of [0, 1]) {
    const row = transpose4x4(b, TR.slice(4 * half, 4 * half + 4), TT);
    for (let t = 0; t < 4; t++) {
      b.get(PC);
      row(t);
      b.v(simd.store, 4, ...uleb(32 * t + 16 * half));
    }
  }
  b.get(PC).emit(op.i32Const, ...sleb(128), op.i32Add).set(PC);
  b.get(KO).emit(op.i32Const, 16, op.i32Add).set(KO);
  b.emit(op.br, 0, op.end, op.end);
  b.emit(0x05 /* else */);
  b.get(B).get(JB).emit(op.i32Const, 2, op.i32Shl, op.i32Add).set(PB);
  b.get(K).set(KK);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(PC).get(PB).v(simd.load, 2, 0).v(simd.store, 4, 0);
  b.get(PC).get(PB).v(simd.load, 2, 16).v(simd.store, 4, 16);
  b.get(PB).get(NB).emit(op.i32Add).set(PB);
  b.get(PC).emit(op.i32Const, 32, op.i32Add).set(PC);
  b.get(KK).emit(op.i32Const, 1, op.i32Sub).set(KK);
  b.get(KK).emit(op.brIf, 0, op.end, op.end);
  b.emit(op.end);
  //   for (ib = 0; ib < m; ib += mr)
  b.emit(op.i32Const, 0).set(IB);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(IB).get(M).emit(op.i32GeU, op.brIf, 1);
  for (let r = 0; r < mr; r++) {
    b.get(A).get(IB);
    if (r > 0) b.emit(op.i32Const, r, op.i32Add);
    b.get(KB).emit(op.i32Mul, op.i32Add).set(PA[r]);
  }
  b.get(PANEL).set(PB);
  // Starting values of the 8 columns: bias[jb .. jb + 8] or zeros.
  b.get(FLAGS).emit(op.i32Const, 1, op.i32And, op.if, op.void);
  b.get(BIAS).get(JB).emit(op.i32Const, 2, op.i32Shl, op.i32Add).v(simd.load, 2, 0).set(Z0);
  b.get(BIAS).get(JB).emit(op.i32Const, 2, op.i32Shl, op.i32Add).v(simd.load, 2, 16).set(Z1);
  b.emit(0x05 /* else */);
  b.v(simd.v128Const, ...Array(16).fill(0)).set(Z0);
  b.v(simd.v128Const, ...Array(16).fill(0)).set(Z1);
  b.emit(op.end);
  ACC.forEach((acc, i) => b.get(i % 2 === 0 ? Z0 : Z1).set(acc));
  //     for (kk = k; kk > 0; kk--)
  b.get(K).set(KK);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(PB).v(simd.load, 4, 0).set(B0);
  b.get(PB).v(simd.load, 4, 16).set(B1);
  for (let r = 0; r < mr; r++) {
    b.get(PA[r]).v(simd.load32Splat, 2, 0).set(AV);
    b.get(ACC[2 * r]).get(AV).get(B0).v(simd.f32x4Mul).v(simd.f32x4Add).set(ACC[2 * r]);
    b.get(ACC[2 * r + 1]).get(AV).get(B1).v(simd.f32x4Mul).v(simd.f32x4Add).set(ACC[2 * r + 1]);
    b.get(PA[r]).emit(op.i32Const, 4, op.i32Add).set(PA[r]);
  }
  b.get(PB).emit(op.i32Const, 32, op.i32Add).set(PB);
  b.get(KK).emit(op.i32Const, 1, op.i32Sub).set(KK);
  b.get(KK).emit(op.brIf, 0, op.end, op.end);
  //     ReLU: acc = pmax(0, acc)
  b.get(FLAGS).emit(op.i32Const, 2, op.i32And, op.if, op.void);
  for (const acc of ACC) b.v(simd.v128Const, ...Array(16).fill(0)).get(acc).v(simd.f32x4Pmax).set(acc);
  b.emit(op.end);
  //     c[ib + r][jb .. jb + 8] = acc
  for (let r = 0; r < mr; r++) {
    b.get(C).get(IB);
    if (r > 0) b.emit(op.i32Const, r, op.i32Add);
    b.get(NB).emit(op.i32Mul, op.i32Add).get(JB).emit(op.i32Const, 2, op.i32Shl, op.i32Add).set(PC);
    b.get(PC).get(ACC[2 * r]).v(simd.store, 2, 0);
    b.get(PC).get(ACC[2 * r + 1]).v(simd.store, 2, 16);
  }
  b.get(IB).emit(op.i32Const, mr, op.i32Add).set(IB);
  b.emit(op.br, 0, op.end, op.end);
  b.get(JB).emit(op.i32Const, 8, op.i32Add).set(JB);
  b.emit(op.br, 0, op.end, op.end);
  b.emit(op.end);
  const body = [...vec([[...uleb(nI32), I32], [...uleb(nV128), 0x7b /* v128 */]]), ...b.code];
  return [...uleb(body.length), ...body];
}

/** Rows per block of the main product kernel (4 x 8 block: 8 accumulators in registers). */
const GEMM_MR = 4;

function moduleBytes(shared: boolean): Uint8Array {
  const type = [0x60, ...vec([[I32], [I32], [I32], [I32]]), ...vec([])];
  const type6 = [0x60, ...vec(Array.from({ length: 9 }, () => [I32])), ...vec([])];
  // Memory import: unshared, min 0 pages; shared needs a maximum (the largest possible).
  const limits = shared ? [0x03, 0x00, ...uleb(65536)] : [0x00, 0x00];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([type, type6])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, ...limits]])),
    ...section(3, vec([[0], [0], [1], [1]])),
    ...section(7, vec([[...name('transpose'), 0x00, 0], [...name('colSum'), 0x00, 1], [...name('gemmBlock'), 0x00, 2], [...name('gemmRow'), 0x00, 3]])),
    ...section(10, vec([transposeBody(), colSumBody(), gemmBody(GEMM_MR), gemmBody(1)])),
  ]);
}

const cache = new WeakMap<object, HeapKernels | null>();

/** The backend's WebAssembly.Memory: exported by the single-threaded build, kept on the module by the threaded one. */
export function memoryOf(backend: object): WasmMemory | undefined {
  const wasm = (backend as { wasm?: { asm?: { memory?: unknown }; wasmMemory?: unknown } }).wasm;
  const mem = wasm?.asm?.memory ?? wasm?.wasmMemory;
  return mem && typeof mem === 'object' && 'buffer' in mem ? (mem as WasmMemory) : undefined;
}

/**
 * The SIMD kernels bound to this WASM backend's heap, or undefined when the backend does not
 * export its memory or the runtime lacks WebAssembly SIMD.
 */
export function heapKernels(backend: object): HeapKernels | undefined {
  let fn = cache.get(backend);
  if (fn === undefined) {
    fn = null;
    const memory = memoryOf(backend);
    if (memory && wasmApi) {
      const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
      const mod = compileOrNull(moduleBytes(shared));
      if (mod) {
        try {
          const inst = new wasmApi.Instance(mod, { env: { memory } });
          const ex = inst.exports as Omit<HeapKernels, 'gemm'> & { gemmBlock: RawGemmFn; gemmRow: RawGemmFn };
          const gemm: GemmFn = (a, b, c, m, k, n, panel, bias, relu, bTransposed) => {
            if (bTransposed && k % 4 !== 0) throw new Error(`gemm: a transposed right operand needs k a multiple of 4, received ${k}`);
            const flags = (bias === undefined ? 0 : 1) | (relu ? 2 : 0) | (bTransposed ? 4 : 0);
            // Blocks of GEMM_MR rows, then the remaining rows one at a time.
            const m4 = m - (m % GEMM_MR);
            if (m4 > 0) ex.gemmBlock(a, b, c, m4, k, n, bias ?? 0, flags, panel);
            if (m4 < m) ex.gemmRow(a + m4 * k * 4, b, c + m4 * n * 4, m - m4, k, n, bias ?? 0, flags, panel);
          };
          fn = { transpose: ex.transpose, colSum: ex.colSum, gemm };
        } catch {
          fn = null;
        }
      }
    }
    cache.set(backend, fn);
  }
  return fn ?? undefined;
}
