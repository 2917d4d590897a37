/**
 * A minimal WebAssembly binary encoder for the few hand-written kernels in the core
 * (src/train/wasmAdam.ts, src/backend/wasmTranspose.ts): LEB128 numbers, sections, the
 * opcodes those kernels use (WebAssembly 2.0 with fixed-width SIMD) and a body builder.
 * No toolchain or binary blob is involved: each kernel's bytes are assembled at run time from
 * its source here and checked with `WebAssembly.validate` before use.
 */

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

export function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

export function name(s: string): number[] {
  const b = [...Buffer.from(s, 'utf8')];
  return [...uleb(b.length), ...b];
}

export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;

// Core opcodes.
export const op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  f32Load: 0x2a,
  f32Const: 0x43,
  f32Store: 0x38,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Sub: 0x6b,
  i32And: 0x71,
  f32Add: 0x92,
  f32Sub: 0x93,
  f32Mul: 0x94,
  f32Div: 0x95,
  f32Sqrt: 0x91,
  i32LtU: 0x49,
  i32Mul: 0x6c,
  i32Add: 0x6a,
  i32Shl: 0x74,
  f64Add: 0xa0,
  f64Sub: 0xa1,
  f64Mul: 0xa2,
  f64Div: 0xa3,
  f64Sqrt: 0x9f,
  f32DemoteF64: 0xb6,
  f64PromoteF32: 0xbb,
  void: 0x40,
} as const;

// SIMD opcodes (prefix 0xfd, then the opcode as a LEB128 u32).
export const simd = {
  load: 0x00,
  store: 0x0b,
  i8x16Shuffle: 0x0d,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Div: 0xe7,
  f32x4Sqrt: 0xe3,
  f32x4Splat: 0x13,
  f64x2ExtractLane: 0x21,
  f32x4Mul: 0xe6,
  f32x4Pmax: 0xeb,
  v128Const: 0x0c,
  load32Splat: 0x09,
  load64Zero: 0x5d,
  store64Lane: 0x5b,
  f64x2Splat: 0x14,
  f64x2Add: 0xf0,
  f64x2Sub: 0xf1,
  f64x2Mul: 0xf2,
  f64x2Div: 0xf3,
  f64x2Sqrt: 0xef,
  f32x4DemoteF64x2Zero: 0x5e,
  f64x2PromoteLowF32x4: 0x5f,
} as const;

/** Emits a function body: `get(i)`, `set(i)`, SIMD and memory helpers. */
export class Body {
  readonly code: number[] = [];
  emit(...b: number[]): this {
    this.code.push(...b);
    return this;
  }
  get(i: number): this {
    return this.emit(op.localGet, ...uleb(i));
  }
  set(i: number): this {
    return this.emit(op.localSet, ...uleb(i));
  }
  v(o: number, ...imm: number[]): this {
    return this.emit(0xfd, ...uleb(o), ...imm);
  }
  /** Address `base + k` on the stack. */
  addr(base: number, k: number): this {
    return this.get(base).get(k).emit(op.i32Add);
  }
  /** Two float32 at `base + k`, promoted to f64x2. */
  load2(base: number, k: number): this {
    // memarg: align 2^2 (no alignment promise beyond float32), offset 0.
    return this.addr(base, k).v(simd.load64Zero, 2, 0).v(simd.f64x2PromoteLowF32x4);
  }
  /** Store the f64x2 in local `val` as two float32 at `base + k`. */
  store2(base: number, k: number, val: number): this {
    return this.addr(base, k).get(val).v(simd.f32x4DemoteF64x2Zero).v(simd.store64Lane, 2, 0, 0);
  }
  /** One float32 at `base + k`, promoted to f64. */
  load1(base: number, k: number): this {
    return this.addr(base, k).emit(op.f32Load, 2, 0, op.f64PromoteF32);
  }
  /** Store the f64 in local `val` as one float32 at `base + k`. */
  store1(base: number, k: number, val: number): this {
    return this.addr(base, k).get(val).emit(op.f32DemoteF64, op.f32Store, 2, 0);
  }
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}


// `WebAssembly` is a Node global but not in the ES2022 lib this project compiles against.
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
export interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (mod: object, imports: object) => { exports: unknown };
  Memory: new (desc: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
}
export const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/** Compile `bytes`, or null when this runtime rejects them (no WebAssembly, no SIMD). */
export function compileOrNull(bytes: Uint8Array): object | null {
  try {
    return wasmApi && wasmApi.validate(bytes) ? new wasmApi.Module(bytes) : null;
  } catch {
    return null;
  }
}
