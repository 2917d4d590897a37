/**
 * The Adam/AdamW update as a small WebAssembly SIMD kernel, bit-identical to the JavaScript
 * loop it replaces (optimizer.ts, `adamUpdate`).
 *
 * The JavaScript loop computes every step in float64 and rounds to float32 on store. The kernel
 * does the same operations, in the same order, on two float64 lanes at a time (`f64x2`): IEEE
 * addition, multiplication, division and square root are correctly rounded, so each lane gives
 * exactly the bits the scalar loop gives. The global gradient norm is a sequential float64 sum
 * (one lane, the loop's order), so clipping decisions are identical too. Shipped training
 * commands therefore reproduce their weights bit for bit with either implementation.
 *
 * The same module has the update in float32 arithmetic (`adam32`, four entries per f32x4
 * step, each operation rounded to float32 like `adamUpdate32`'s Math.fround; the norm in four
 * float64 lanes). Float64 division and square root are the expensive part of the float64
 * update: for 787k parameters it takes about 4.5 ns per entry on this machine, the float32 one
 * a fraction of that (`benchmarks/matmul.ts`).
 *
 * The module keeps the optimiser's moments for good either in its own memory or, on the WASM
 * backend, in the backend's heap: there it updates each parameter in place where the backend
 * keeps it, and only the gradients (and the EMA) are staged with `TypedArray.set` (memcpy).
 * The bytes are assembled here with the encoder in src/util/wasmAsm.ts.
 */
import { Body, compileOrNull, F32, F64, I32, name, op, section, simd, sleb, uleb, V128, vec, wasmApi, type WasmMemory } from '../util/wasmAsm.js';

/*
 * adam(p, g, m, v, e, n, gScale, l2, beta1, beta2, stepSize, invBc2, eps, keep, a1, a2, d, a)
 *   byte offsets p, g, m, v, e (e = -1: no EMA), n entries; for each k:
 *   gk = g*gScale + l2*p;  mk = beta1*m + a1*gk;  vk = beta2*v + (a2*gk)*gk;
 *   m = mk; v = vk;  p = keep*p - (stepSize*mk) / (sqrt(vk*invBc2) + eps);
 *   e = d*e + a*p   (p as stored, float32)
 * sumsq(g, n) -> f64: sequential sum of g*g.
 */
const P = 0, G = 1, M = 2, V = 3, E = 4, N = 5;
const GS = 6, L2 = 7, B1 = 8, B2 = 9, SS = 10, IB = 11, EPS = 12, KEEP = 13, A1 = 14, A2 = 15, D = 16, A = 17;
const NPARAM = 18;

/**
 * Local indices shared by both update bodies: after the params, k (i32), end (i32), then the
 * scalars pk gk mk vk pn, then the vectors p g m v pn, then the splatted constants in the order
 * of the scalar params GS..A (`cOf`).
 */
function updateLocals() {
  const K = NPARAM, END = NPARAM + 1;
  const sP = NPARAM + 2;
  const vBase = sP + 5;
  return {
    K, END,
    sP, sG: sP + 1, sM: sP + 2, sV: sP + 3, sPn: sP + 4,
    vP: vBase, vG: vBase + 1, vM: vBase + 2, vV: vBase + 3, vPn: vBase + 4,
    cOf: (param: number): number => vBase + 5 + (param - GS),
  };
}

function adamBody(): number[] {
  // f64 scalars, f64x2 vectors.
  const { K, END, sP, sG, sM, sV, sPn, vP, vG, vM, vV, vPn, cOf } = updateLocals();
  const b = new Body();
  for (let prm = GS; prm <= A; prm++) b.get(prm).v(simd.f64x2Splat).set(cOf(prm));
  // end = (n & ~1) * 4 (bytes of the paired part)
  b.get(N).emit(op.i32Const, ...sleb(-2), 0x71 /* i32.and */, op.i32Const, 2, op.i32Shl).set(END);
  b.emit(op.i32Const, 0).set(K);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(K).get(END).emit(op.i32GeU, op.brIf, 1);
  b.load2(P, K).set(vP);
  b.load2(G, K).get(cOf(GS)).v(simd.f64x2Mul).get(cOf(L2)).get(vP).v(simd.f64x2Mul).v(simd.f64x2Add).set(vG);
  b.get(cOf(B1)).load2(M, K).v(simd.f64x2Mul).get(cOf(A1)).get(vG).v(simd.f64x2Mul).v(simd.f64x2Add).set(vM);
  b.get(cOf(B2)).load2(V, K).v(simd.f64x2Mul).get(cOf(A2)).get(vG).v(simd.f64x2Mul).get(vG).v(simd.f64x2Mul).v(simd.f64x2Add).set(vV);
  b.store2(M, K, vM).store2(V, K, vV);
  b.get(cOf(KEEP)).get(vP).v(simd.f64x2Mul);
  b.get(cOf(SS)).get(vM).v(simd.f64x2Mul);
  b.get(vV).get(cOf(IB)).v(simd.f64x2Mul).v(simd.f64x2Sqrt).get(cOf(EPS)).v(simd.f64x2Add);
  b.v(simd.f64x2Div).v(simd.f64x2Sub).set(vPn);
  b.store2(P, K, vPn);
  // EMA when e >= 0: reads p back as stored (float32), like the scalar loop.
  b.get(E).emit(op.i32Const, 0, 0x4e /* i32.ge_s */, op.if, op.void);
  b.get(cOf(D)).load2(E, K).v(simd.f64x2Mul).get(cOf(A)).load2(P, K).v(simd.f64x2Mul).v(simd.f64x2Add).set(vPn);
  b.store2(E, K, vPn);
  b.emit(op.end);
  b.get(K).emit(op.i32Const, 8, op.i32Add).set(K);
  b.emit(op.br, 0, op.end, op.end);
  // Odd tail: one scalar entry at byte offset END.
  b.get(N).emit(op.i32Const, 1, 0x71 /* i32.and */, op.if, op.void);
  b.load1(P, END).set(sP);
  b.load1(G, END).get(GS).emit(op.f64Mul).get(L2).get(sP).emit(op.f64Mul, op.f64Add).set(sG);
  b.get(B1).load1(M, END).emit(op.f64Mul).get(A1).get(sG).emit(op.f64Mul, op.f64Add).set(sM);
  b.get(B2).load1(V, END).emit(op.f64Mul).get(A2).get(sG).emit(op.f64Mul).get(sG).emit(op.f64Mul, op.f64Add).set(sV);
  b.store1(M, END, sM).store1(V, END, sV);
  b.get(KEEP).get(sP).emit(op.f64Mul);
  b.get(SS).get(sM).emit(op.f64Mul);
  b.get(sV).get(IB).emit(op.f64Mul, op.f64Sqrt).get(EPS).emit(op.f64Add, op.f64Div, op.f64Sub).set(sPn);
  b.store1(P, END, sPn);
  b.get(E).emit(op.i32Const, 0, 0x4e, op.if, op.void);
  b.get(D).load1(E, END).emit(op.f64Mul).get(A).load1(P, END).emit(op.f64Mul, op.f64Add).set(sPn);
  b.store1(E, END, sPn);
  b.emit(op.end, op.end);
  b.emit(op.end);
  const locals = [
    [...uleb(2), I32],
    [...uleb(5), F64],
    [...uleb(5 + (A - GS + 1)), V128],
  ];
  const body = [...vec(locals), ...b.code];
  return [...uleb(body.length), ...body];
}

/** s += g[k]^2 in float64 for byte offsets k up to end, in order (k, end, s, x: locals). */
function squaresInOrder(b: Body, g: number, k: number, end: number, s: number, x: number): void {
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(k).get(end).emit(op.i32GeU, op.brIf, 1);
  b.load1(g, k).set(x);
  b.get(s).get(x).get(x).emit(op.f64Mul, op.f64Add).set(s);
  b.get(k).emit(op.i32Const, 4, op.i32Add).set(k);
  b.emit(op.br, 0, op.end, op.end);
}

function sumsqBody(): number[] {
  // params g, n, s (f64: the sum so far, so pieces chain into one sequential sum);
  // locals k (i32), end (i32), x (f64)
  const g = 0, n = 1, s = 2, k = 3, end = 4, x = 5;
  const b = new Body();
  b.get(n).emit(op.i32Const, 2, op.i32Shl).set(end);
  squaresInOrder(b, g, k, end, s, x);
  b.get(s);
  b.emit(op.end);
  const body = [...vec([[...uleb(2), I32], [...uleb(1), F64]]), ...b.code];
  return [...uleb(body.length), ...body];
}

/*
 * adam32: the same update in float32 arithmetic, four entries per step (f32x4): every
 * operation rounds to float32, as `adamUpdate32` in optimizer.ts does with Math.fround.
 * Parameters as `adam`, the scalars as f32.
 */
function adam32Body(): number[] {
  // f32 scalars, f32x4 vectors.
  const { K, END, sP, sG, sM, sV, sPn, vP, vG, vM, vV, vPn, cOf } = updateLocals();
  const b = new Body();
  // Four entries at byte offset K + o of each array (o a constant in the instruction).
  const load4 = (base: number, o: number): Body => b.addr(base, K).v(simd.load, 2, ...uleb(o));
  const store4 = (base: number, val: number, o: number): Body => b.addr(base, K).get(val).v(simd.store, 2, ...uleb(o));
  const load1 = (base: number): Body => b.addr(base, K).emit(op.f32Load, 2, 0);
  const store1 = (base: number, val: number): Body => b.addr(base, K).get(val).emit(op.f32Store, 2, 0);
  const four = (o: number): void => {
    load4(P, o).set(vP);
    load4(G, o).get(cOf(GS)).v(simd.f32x4Mul).get(cOf(L2)).get(vP).v(simd.f32x4Mul).v(simd.f32x4Add).set(vG);
    b.get(cOf(B1));
    load4(M, o).v(simd.f32x4Mul).get(cOf(A1)).get(vG).v(simd.f32x4Mul).v(simd.f32x4Add).set(vM);
    b.get(cOf(B2));
    load4(V, o).v(simd.f32x4Mul).get(cOf(A2)).get(vG).v(simd.f32x4Mul).get(vG).v(simd.f32x4Mul).v(simd.f32x4Add).set(vV);
    store4(M, vM, o);
    store4(V, vV, o);
    b.get(cOf(KEEP)).get(vP).v(simd.f32x4Mul);
    b.get(cOf(SS)).get(vM).v(simd.f32x4Mul);
    b.get(vV).get(cOf(IB)).v(simd.f32x4Mul).v(simd.f32x4Sqrt).get(cOf(EPS)).v(simd.f32x4Add);
    b.v(simd.f32x4Div).v(simd.f32x4Sub).set(vPn);
    store4(P, vPn, o);
    b.get(E).emit(op.i32Const, 0, 0x4e /* i32.ge_s */, op.if, op.void);
    b.get(D).v(simd.f32x4Splat);
    load4(E, o).v(simd.f32x4Mul).get(A).v(simd.f32x4Splat).get(vPn).v(simd.f32x4Mul).v(simd.f32x4Add).set(vPn);
    store4(E, vPn, o);
    b.emit(op.end);
  };
  // D and A (the EMA's) are splatted where used: ten constants and five working vectors fit
  // the sixteen SIMD registers of x86-64 without spilling.
  for (let prm = GS; prm < D; prm++) b.get(prm).v(simd.f32x4Splat).set(cOf(prm));
  b.emit(op.i32Const, 0).set(K);
  // Eight entries per iteration while (n & ~7) * 4 bytes last, then four, then one at a time.
  b.get(N).emit(op.i32Const, ...sleb(-8), op.i32And, op.i32Const, 2, op.i32Shl).set(END);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(K).get(END).emit(op.i32GeU, op.brIf, 1);
  four(0);
  four(16);
  b.get(K).emit(op.i32Const, 32, op.i32Add).set(K);
  b.emit(op.br, 0, op.end, op.end);
  b.get(N).emit(op.i32Const, 4, op.i32And, op.if, op.void);
  four(0);
  b.get(K).emit(op.i32Const, 16, op.i32Add).set(K);
  b.emit(op.end);
  // The last n % 4 entries, one at a time.
  b.get(N).emit(op.i32Const, 2, op.i32Shl).set(END);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(K).get(END).emit(op.i32GeU, op.brIf, 1);
  load1(P).set(sP);
  load1(G).get(GS).emit(op.f32Mul).get(L2).get(sP).emit(op.f32Mul, op.f32Add).set(sG);
  b.get(B1);
  load1(M).emit(op.f32Mul).get(A1).get(sG).emit(op.f32Mul, op.f32Add).set(sM);
  b.get(B2);
  load1(V).emit(op.f32Mul).get(A2).get(sG).emit(op.f32Mul).get(sG).emit(op.f32Mul, op.f32Add).set(sV);
  store1(M, sM);
  store1(V, sV);
  b.get(KEEP).get(sP).emit(op.f32Mul);
  b.get(SS).get(sM).emit(op.f32Mul);
  b.get(sV).get(IB).emit(op.f32Mul, op.f32Sqrt).get(EPS).emit(op.f32Add, op.f32Div, op.f32Sub).set(sPn);
  store1(P, sPn);
  b.get(E).emit(op.i32Const, 0, 0x4e, op.if, op.void);
  b.get(D);
  load1(E).emit(op.f32Mul).get(A).get(sPn).emit(op.f32Mul, op.f32Add).set(sPn);
  store1(E, sPn);
  b.emit(op.end);
  b.get(K).emit(op.i32Const, 4, op.i32Add).set(K);
  b.emit(op.br, 0, op.end, op.end);
  b.emit(op.end);
  const locals = [
    [...uleb(2), I32],
    [...uleb(5), F32],
    [...uleb(5 + (D - GS)), V128],
  ];
  const body = [...vec(locals), ...b.code];
  return [...uleb(body.length), ...body];
}

/*
 * sumsq4(g, n) -> f64: the float64 sum of g*g in four lanes (entry k in lane k % 4) over the
 * first n - n % 4 entries, lanes combined as (l0 + l1) + (l2 + l3), then the last n % 4
 * entries added in order. `sumSq4` in optimizer.ts is the same sum in JavaScript.
 */
function sumsq4Body(): number[] {
  const g = 0, n = 1, k = 2, end = 3, s = 4, x = 5, accA = 6, accB = 7, X = 8;
  const b = new Body();
  b.get(n).emit(op.i32Const, ...sleb(-4), op.i32And, op.i32Const, 2, op.i32Shl).set(end);
  b.emit(op.block, op.void, op.loop, op.void);
  b.get(k).get(end).emit(op.i32GeU, op.brIf, 1);
  b.addr(g, k).v(simd.load, 2, 0).set(X);
  b.get(accA).get(X).v(simd.f64x2PromoteLowF32x4).get(X).v(simd.f64x2PromoteLowF32x4).v(simd.f64x2Mul).v(simd.f64x2Add).set(accA);
  b.get(X).get(X).v(simd.i8x16Shuffle, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7).v(simd.f64x2PromoteLowF32x4).set(X);
  b.get(accB).get(X).get(X).v(simd.f64x2Mul).v(simd.f64x2Add).set(accB);
  b.get(k).emit(op.i32Const, 16, op.i32Add).set(k);
  b.emit(op.br, 0, op.end, op.end);
  b.get(accA).v(simd.f64x2ExtractLane, 0).get(accA).v(simd.f64x2ExtractLane, 1).emit(op.f64Add);
  b.get(accB).v(simd.f64x2ExtractLane, 0).get(accB).v(simd.f64x2ExtractLane, 1).emit(op.f64Add);
  b.emit(op.f64Add).set(s);
  b.get(n).emit(op.i32Const, 2, op.i32Shl).set(end);
  squaresInOrder(b, g, k, end, s, x);
  b.get(s);
  b.emit(op.end);
  const body = [...vec([[...uleb(2), I32], [...uleb(2), F64], [...uleb(3), V128]]), ...b.code];
  return [...uleb(body.length), ...body];
}

function moduleBytes(shared: boolean): Uint8Array {
  const adamType = [0x60, ...vec([...Array(6).fill([I32]), ...Array(NPARAM - 6).fill([F64])]), ...vec([])];
  const sumsqType = [0x60, ...vec([[I32], [I32], [F64]]), ...vec([[F64]])];
  const sumsq4Type = [0x60, ...vec([[I32], [I32]]), ...vec([[F64]])];
  const adam32Type = [0x60, ...vec([...Array(6).fill([I32]), ...Array(NPARAM - 6).fill([F32])]), ...vec([])];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([adamType, sumsqType, adam32Type, sumsq4Type])),
    // import env.memory: min 0 pages; a shared memory (threaded WASM backend) needs a maximum
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, ...(shared ? [0x03, 0x00, ...uleb(65536)] : [0x00, 0x00])]])),
    ...section(3, vec([[0], [1], [2], [3]])),
    ...section(7, vec([[...name('adam'), 0x00, 0], [...name('sumsq'), 0x00, 1], [...name('adam32'), 0x00, 2], [...name('sumsq4'), 0x00, 3]])),
    ...section(10, vec([adamBody(), sumsqBody(), adam32Body(), sumsq4Body()])),
  ];
  return Uint8Array.from(bytes);
}

interface Exports {
  adam(p: number, g: number, m: number, v: number, e: number, n: number, gScale: number, l2: number, beta1: number, beta2: number, stepSize: number, invBc2: number, eps: number, keep: number, a1: number, a2: number, d: number, a: number): void;
  sumsq(g: number, n: number, s0: number): number;
  adam32(p: number, g: number, m: number, v: number, e: number, n: number, gScale: number, l2: number, beta1: number, beta2: number, stepSize: number, invBc2: number, eps: number, keep: number, a1: number, a2: number, d: number, a: number): void;
  sumsq4(g: number, n: number): number;
}

const compiled = new Map<boolean, object | null>();

/** The compiled module, or null when this runtime has no WebAssembly SIMD. */
function compiledModule(shared = false): object | null {
  let mod = compiled.get(shared);
  if (mod === undefined) {
    mod = compileOrNull(moduleBytes(shared));
    compiled.set(shared, mod);
  }
  return mod;
}

/** Is the SIMD kernel usable here? */
export function wasmAdamAvailable(): boolean {
  return compiledModule() !== null;
}

/**
 * The arithmetic of the update: 'float64' rounds only on store (the JavaScript loop's
 * arithmetic, and what the shipped policies were trained with); 'float32' rounds every
 * operation, as float32 Adam implementations do, and runs four entries per SIMD step.
 */
export type AdamPrecision = 'float32' | 'float64';

export interface AdamStepArgs {
  readonly gScale: number;
  readonly l2: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly stepSize: number;
  readonly bc2: number;
  readonly eps: number;
  readonly decoupled: number;
  /** EMA decay; undefined: no EMA. */
  readonly emaDecay?: number;
}

/**
 * A WebAssembly memory the kernel may allocate in: the tfjs WASM backend's heap, so that the
 * update reads gradients and writes parameters where the backend keeps them.
 */
export interface AdamHeap {
  readonly memory: WasmMemory;
  malloc(bytes: number): number;
  free(ptr: number): void;
}

/**
 * Moments and staging buffers for `size` parameters in one WebAssembly memory: the kernel's
 * own, or a WASM backend's heap (`heap`). `p`, `g` and `e` are staging areas the caller fills
 * before `step` and reads after it; `m` and `v` are the optimiser's moments and stay here. In a
 * backend's heap, `stepRange` can update a parameter in place where the backend keeps it. The
 * views are fresh on every access: a backend's heap can grow, which detaches older views.
 */
export class WasmAdamKernel {
  private readonly fn: Exports;
  private readonly memory: WasmMemory;
  private readonly off: { p: number; g: number; m: number; v: number; e: number };
  private allocation: number | undefined;

  constructor(readonly size: number, private readonly heap?: AdamHeap) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`WasmAdamKernel: size must be a positive integer, received ${size}`);
    const shared = heap !== undefined && typeof SharedArrayBuffer !== 'undefined' && heap.memory.buffer instanceof SharedArrayBuffer;
    const mod = compiledModule(shared);
    if (!mod) throw new Error('WasmAdamKernel: this runtime has no WebAssembly SIMD');
    // Five float32 arrays, each starting on a 16-byte boundary.
    const stride = Math.ceil((size * 4) / 16) * 16;
    const bytes = 5 * stride;
    let base = 0;
    if (heap) {
      this.allocation = heap.malloc(bytes + 16) >>> 0;
      if (this.allocation === 0) throw new Error(`WasmAdamKernel: the backend could not allocate ${bytes} bytes`);
      base = Math.ceil(this.allocation / 16) * 16;
      this.memory = heap.memory;
    } else {
      const pages = Math.ceil(bytes / 65536) || 1;
      if (pages > 65536) throw new Error(`WasmAdamKernel: ${size} parameters do not fit in one WebAssembly memory`);
      this.memory = new wasmApi!.Memory({ initial: pages });
    }
    const inst = new wasmApi!.Instance(mod, { env: { memory: this.memory } });
    this.fn = inst.exports as unknown as Exports;
    this.off = { p: base, g: base + stride, m: base + 2 * stride, v: base + 3 * stride, e: base + 4 * stride };
    if (heap) {
      // malloc does not clear: the moments start at zero.
      this.m.fill(0);
      this.v.fill(0);
    }
  }

  /** Does the kernel live in a backend's heap? */
  get inBackendHeap(): boolean {
    return this.heap !== undefined;
  }

  private view(offset: number): Float32Array {
    if (this.heap && this.allocation === undefined) throw new Error('WasmAdamKernel: used after dispose');
    return new Float32Array(this.memory.buffer, offset, this.size);
  }
  get p(): Float32Array {
    return this.view(this.off.p);
  }
  get g(): Float32Array {
    return this.view(this.off.g);
  }
  get m(): Float32Array {
    return this.view(this.off.m);
  }
  get v(): Float32Array {
    return this.view(this.off.v);
  }
  get e(): Float32Array {
    return this.view(this.off.e);
  }

  /**
   * The byte offset of `values` in the kernel's memory when they live there (a parameter in
   * the backend's heap the kernel shares), else undefined.
   */
  offsetIn(values: Float32Array): number | undefined {
    return this.heap !== undefined && values.buffer === this.memory.buffer ? values.byteOffset : undefined;
  }

  /**
   * The sum of squares of `count` gradient entries at byte offset `gOffset` (from `offsetIn`;
   * default: the staging area from entry `start`) in float64, added to `sum` (the pieces
   * before): in index order for the float64 update (so the pieces chain into one sequential
   * sum); for the float32 one the piece's own sum in four interleaved lanes, then added.
   */
  gradSumSqRange(precision: AdamPrecision, start: number, count: number, sum: number, gOffset?: number): number {
    this.checkRange(start, count);
    const at = gOffset ?? this.off.g + 4 * start;
    return precision === 'float64' ? this.fn.sumsq(at, count, sum) : sum + this.fn.sumsq4(at, count);
  }

  private checkRange(start: number, count: number): void {
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > this.size) {
      throw new Error(`WasmAdamKernel: range [${start}, ${start + count}) is outside the ${this.size} entries`);
    }
    if (this.heap && this.allocation === undefined) throw new Error('WasmAdamKernel: used after dispose');
  }

  /**
   * The update of entries [start, start + count) of the flat state: the parameters at byte
   * offset `pOffset` and the gradient at `gOffset` of the kernel's memory (from `offsetIn`), or
   * in the staging areas.
   */
  stepRange(s: AdamStepArgs, precision: AdamPrecision, start: number, count: number, pOffset?: number, gOffset?: number): void {
    this.checkRange(start, count);
    const d = s.emaDecay ?? 0;
    const f = precision === 'float64' ? this.fn.adam : this.fn.adam32;
    const at = 4 * start;
    f(pOffset ?? this.off.p + at, gOffset ?? this.off.g + at, this.off.m + at, this.off.v + at, s.emaDecay === undefined ? -1 : this.off.e + at, count, s.gScale, s.l2, s.beta1, s.beta2, s.stepSize, 1 / s.bc2, s.eps, 1 - s.decoupled, 1 - s.beta1, 1 - s.beta2, d, 1 - d);
  }

  /** Give the memory back to the backend's heap (a kernel in its own memory needs nothing). */
  dispose(): void {
    if (this.heap && this.allocation !== undefined) {
      this.heap.free(this.allocation);
      this.allocation = undefined;
    }
  }
}
