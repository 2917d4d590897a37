/**
 * Conversions between typed arrays / tf.Tensors and scoreflow.v1.Tensor messages
 * (proto/tensor.proto: dtype, row-major shape, little-endian raw bytes).
 *
 * `toTensorProto` views the typed array's memory without copying on little-endian hosts (the
 * registry's `encode` copies it into the wire buffer), and `fromTensorProto` returns a typed
 * array viewing the message bytes when they are aligned for the element type, copying otherwise.
 * Views alias their source: copy (`{ copy: true }`) before the source buffer is reused.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DTypeName, TensorProto, TensorProtoInit } from './messages.js';

/** Element types of scoreflow.v1.Tensor, by their short names. */
export type TensorDType = 'float32' | 'float64' | 'int32' | 'uint8' | 'int64' | 'int8' | 'int16' | 'uint16' | 'uint32' | 'bool';

/** Typed arrays holding tensor elements; 'bool' uses Uint8Array (0 or 1). */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint8Array
  | BigInt64Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Uint32Array;

type DataViewKind = 'Float32' | 'Float64' | 'Int32' | 'Uint8' | 'BigInt64' | 'Int8' | 'Int16' | 'Uint16' | 'Uint32';

interface TypedArrayCtor {
  readonly BYTES_PER_ELEMENT: number;
  new (length: number): TensorData;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData;
}

interface DTypeInfo {
  readonly dtype: TensorDType;
  readonly enumName: DTypeName;
  /** Enum number in tensor.proto. */
  readonly code: number;
  readonly bytes: number;
  readonly ctor: TypedArrayCtor;
  readonly view: DataViewKind;
}

/** Mirrors enum DType in proto/tensor.proto (test/io/tensorProto.test.ts checks the numbers). */
const DTYPES: readonly DTypeInfo[] = [
  { dtype: 'float32', enumName: 'DTYPE_FLOAT32', code: 1, bytes: 4, ctor: Float32Array, view: 'Float32' },
  { dtype: 'float64', enumName: 'DTYPE_FLOAT64', code: 2, bytes: 8, ctor: Float64Array, view: 'Float64' },
  { dtype: 'int32', enumName: 'DTYPE_INT32', code: 3, bytes: 4, ctor: Int32Array, view: 'Int32' },
  { dtype: 'uint8', enumName: 'DTYPE_UINT8', code: 4, bytes: 1, ctor: Uint8Array, view: 'Uint8' },
  { dtype: 'int64', enumName: 'DTYPE_INT64', code: 5, bytes: 8, ctor: BigInt64Array as unknown as TypedArrayCtor, view: 'BigInt64' },
  { dtype: 'int8', enumName: 'DTYPE_INT8', code: 6, bytes: 1, ctor: Int8Array, view: 'Int8' },
  { dtype: 'int16', enumName: 'DTYPE_INT16', code: 7, bytes: 2, ctor: Int16Array, view: 'Int16' },
  { dtype: 'uint16', enumName: 'DTYPE_UINT16', code: 8, bytes: 2, ctor: Uint16Array, view: 'Uint16' },
  { dtype: 'uint32', enumName: 'DTYPE_UINT32', code: 9, bytes: 4, ctor: Uint32Array, view: 'Uint32' },
  { dtype: 'bool', enumName: 'DTYPE_BOOL', code: 10, bytes: 1, ctor: Uint8Array, view: 'Uint8' },
];

/** Every supported dtype with its proto enum name and number and its element size in bytes. */
export const TENSOR_DTYPES: readonly { dtype: TensorDType; enumName: DTypeName; code: number; bytes: number }[] = DTYPES.map(
  ({ dtype, enumName, code, bytes }) => ({ dtype, enumName, code, bytes }),
);

const BY_DTYPE = new Map(DTYPES.map((d) => [d.dtype, d]));
const BY_ENUM = new Map<string | number, DTypeInfo>(DTYPES.flatMap((d) => [[d.enumName, d] as const, [d.code, d] as const]));

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const MAX_DIM = 2 ** 32 - 1;

/** Thrown for invalid tensors or messages; the message says which check failed. */
export class TensorProtoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TensorProtoError';
  }
}

function fail(message: string): never {
  throw new TensorProtoError(message);
}

function fmtShape(shape: ArrayLike<unknown>): string {
  return `[${Array.from(shape, String).join(', ')}]`;
}

/** Validate dimensions (integers in [0, 2^32-1]) and return them with their product. */
function checkShape(where: string, shape: unknown): { dims: number[]; size: number } {
  const isList = Array.isArray(shape) || (ArrayBuffer.isView(shape) && !(shape instanceof DataView));
  if (!isList) fail(`${where}: shape must be an array of dimensions, received ${typeof shape}`);
  const list = shape as ArrayLike<unknown>;
  const dims: number[] = [];
  let size = 1;
  for (let i = 0; i < list.length; i++) {
    const d = list[i];
    if (typeof d !== 'number' || !Number.isInteger(d)) fail(`${where}: shape[${i}] = ${String(d)} is not an integer (shape ${fmtShape(list)})`);
    if (d < 0) fail(`${where}: shape[${i}] = ${d} is negative (shape ${fmtShape(list)})`);
    if (d > MAX_DIM) fail(`${where}: shape[${i}] = ${d} exceeds the uint32 limit ${MAX_DIM}`);
    dims.push(d);
    size *= d;
  }
  return { dims, size };
}

function infoOfArray(data: unknown): DTypeInfo | undefined {
  if (data instanceof Float32Array) return BY_DTYPE.get('float32');
  if (data instanceof Float64Array) return BY_DTYPE.get('float64');
  if (data instanceof Int32Array) return BY_DTYPE.get('int32');
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return BY_DTYPE.get('uint8');
  if (data instanceof BigInt64Array) return BY_DTYPE.get('int64');
  if (data instanceof Int8Array) return BY_DTYPE.get('int8');
  if (data instanceof Int16Array) return BY_DTYPE.get('int16');
  if (data instanceof Uint16Array) return BY_DTYPE.get('uint16');
  if (data instanceof Uint32Array) return BY_DTYPE.get('uint32');
  return undefined;
}

function checkBoolBytes(where: string, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 1) fail(`${where}: bool element ${i} is ${bytes[i]}, expected 0 or 1`);
  }
}

/** Little-endian bytes of `data`: a view on little-endian hosts, a byte-swapped copy otherwise. */
function littleEndianBytes(data: TensorData, info: DTypeInfo): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN || info.bytes === 1) return view;
  const out = new Uint8Array(data.byteLength);
  const dv = new DataView(out.buffer);
  const set = `set${info.view}` as const;
  for (let i = 0; i < data.length; i++) {
    (dv[set] as (o: number, v: number | bigint, le: boolean) => void).call(dv, i * info.bytes, data[i]!, true);
  }
  return out;
}

export interface ToTensorProtoOptions {
  /** Stored in Tensor.name. */
  name?: string;
  /**
   * Element type; inferred from the array type when omitted. The only conversion allowed is
   * 'bool' for a Uint8Array of 0/1 values.
   */
  dtype?: TensorDType;
}

/**
 * A scoreflow.v1.Tensor for a typed array (with `shape`, default `[length]`) or a tf.Tensor
 * (float32, int32 or bool; `shape` defaults to the tensor's and may only reshape it).
 *
 * For typed arrays `data` views the array's memory (no copy) on little-endian hosts: encode the
 * message before mutating the array. tf.Tensor data is always copied.
 */
export function toTensorProto(input: TensorData | tf.Tensor, shape?: ArrayLike<number>, opts: ToTensorProtoOptions = {}): TensorProto {
  const where = 'toTensorProto';
  let data: TensorData;
  let info: DTypeInfo | undefined;
  let defaultShape: number[];
  if (input instanceof tf.Tensor) {
    if (input.isDisposed) fail(`${where}: the tf.Tensor is disposed`);
    if (input.dtype === 'float32') data = (input.dataSync() as Float32Array).slice();
    else if (input.dtype === 'int32') data = (input.dataSync() as Int32Array).slice();
    else if (input.dtype === 'bool') data = Uint8Array.from(input.dataSync() as Uint8Array);
    else fail(`${where}: tf.Tensor dtype '${input.dtype}' is not supported (float32, int32, bool)`);
    info = BY_DTYPE.get(input.dtype === 'bool' ? 'bool' : input.dtype);
    defaultShape = input.shape;
    if (opts.dtype !== undefined && opts.dtype !== info!.dtype) {
      fail(`${where}: dtype '${opts.dtype}' does not match the tf.Tensor's dtype '${input.dtype}'`);
    }
  } else {
    info = infoOfArray(input);
    if (!info) {
      const got = input === null || typeof input !== 'object' ? String(input) : (input as object).constructor?.name;
      fail(`${where}: expected a tf.Tensor or a typed array (${DTYPES.map((d) => d.ctor.name).filter((n, i, a) => a.indexOf(n) === i).join(', ')}), received ${got}`);
    }
    const raw: unknown = input;
    data = raw instanceof Uint8ClampedArray ? new Uint8Array(raw.buffer, raw.byteOffset, raw.length) : input;
    defaultShape = [data.length];
    if (opts.dtype !== undefined && opts.dtype !== info.dtype) {
      if (opts.dtype === 'bool' && info.dtype === 'uint8') {
        info = BY_DTYPE.get('bool')!;
        checkBoolBytes(where, data as Uint8Array);
      } else {
        fail(`${where}: dtype '${opts.dtype}' does not match a ${input.constructor.name} (expected '${info.dtype}'; only uint8 -> bool is converted)`);
      }
    }
  }
  const { dims, size } = checkShape(where, shape ?? defaultShape);
  if (size !== data.length) fail(`${where}: shape ${fmtShape(dims)} has ${size} elements but the data has ${data.length}`);
  if (opts.name !== undefined && typeof opts.name !== 'string') fail(`${where}: name must be a string`);
  return { dtype: info!.enumName, shape: dims, data: littleEndianBytes(data, info!), name: opts.name ?? '' };
}

/** A tensor decoded from a scoreflow.v1.Tensor. */
export interface DecodedTensor {
  dtype: TensorDType;
  shape: number[];
  /** Elements, row-major; may view the message bytes (see fromTensorProto). */
  data: TensorData;
  name: string;
}

export interface FromTensorProtoOptions {
  /** Always copy the elements instead of viewing the message bytes (default false). */
  copy?: boolean;
}

/** The dtype of a Tensor message; throws for DTYPE_UNSPECIFIED and values this build doesn't know. */
export function tensorProtoDType(dtype: unknown): TensorDType {
  const info = BY_ENUM.get(dtype as string | number);
  if (info) return info.dtype;
  if (dtype === 'DTYPE_UNSPECIFIED' || dtype === 0 || dtype === undefined) fail('fromTensorProto: dtype is not set (DTYPE_UNSPECIFIED)');
  fail(`fromTensorProto: unknown dtype ${JSON.stringify(dtype)} (known: ${DTYPES.map((d) => d.enumName).join(', ')})`);
}

/**
 * Validate a Tensor message and return its elements as a typed array. The array views the
 * message's bytes when they are aligned for the element type (and the host is little-endian);
 * otherwise, or with `{ copy: true }`, it is a copy.
 */
export function fromTensorProto(msg: TensorProto | TensorProtoInit, opts: FromTensorProtoOptions = {}): DecodedTensor {
  const where = 'fromTensorProto';
  if (typeof msg !== 'object' || msg === null) fail(`${where}: expected a Tensor message object, received ${String(msg)}`);
  const dtype = tensorProtoDType(msg.dtype);
  const info = BY_DTYPE.get(dtype)!;
  const { dims, size } = checkShape(where, msg.shape ?? []);
  const bytes = msg.data ?? new Uint8Array(0);
  if (!(bytes instanceof Uint8Array)) fail(`${where}: data must be a Uint8Array`);
  const expected = size * info.bytes;
  if (expected !== bytes.byteLength) {
    fail(`${where}: shape ${fmtShape(dims)} of ${dtype} needs ${expected} bytes (${size} x ${info.bytes}), data has ${bytes.byteLength}`);
  }
  if (dtype === 'bool') checkBoolBytes(where, bytes);
  let data: TensorData;
  if (!opts.copy && LITTLE_ENDIAN && bytes.byteOffset % info.bytes === 0) {
    data = new info.ctor(bytes.buffer, bytes.byteOffset, size);
  } else if (LITTLE_ENDIAN || info.bytes === 1) {
    data = new info.ctor(size);
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(bytes);
  } else {
    data = new info.ctor(size);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const get = `get${info.view}` as const;
    for (let i = 0; i < size; i++) {
      data[i] = (dv[get] as (o: number, le: boolean) => number & bigint).call(dv, i * info.bytes, true);
    }
  }
  const name = msg.name ?? '';
  if (typeof name !== 'string') fail(`${where}: name must be a string`);
  return { dtype, shape: dims, data, name };
}

/**
 * A tf.Tensor holding a Tensor message's values (always a copy). tfjs has float32, int32 and bool:
 * float64 is rounded to float32; int8/int16/uint8/uint16 widen to int32; int64 and uint32 become
 * int32 when every value fits, and otherwise throw.
 */
export function tensorProtoToTf(msg: TensorProto | TensorProtoInit): tf.Tensor {
  const { dtype, shape, data } = fromTensorProto(msg);
  switch (dtype) {
    case 'float32':
      return tf.tensor(Float32Array.from(data as Float32Array), shape, 'float32');
    case 'float64':
      return tf.tensor(Float32Array.from(data as Float64Array), shape, 'float32');
    case 'bool':
      return tf.tensor(Uint8Array.from(data as Uint8Array), shape, 'bool');
    case 'int64': {
      const src = data as BigInt64Array;
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (v < -2147483648n || v > 2147483647n) fail(`tensorProtoToTf: int64 value ${v} at flat index ${i} does not fit tfjs int32`);
        out[i] = Number(v);
      }
      return tf.tensor(out, shape, 'int32');
    }
    case 'uint32': {
      const src = data as Uint32Array;
      for (let i = 0; i < src.length; i++) {
        if (src[i]! > 2147483647) fail(`tensorProtoToTf: uint32 value ${src[i]} at flat index ${i} does not fit tfjs int32`);
      }
      return tf.tensor(Int32Array.from(src), shape, 'int32');
    }
    default:
      return tf.tensor(Int32Array.from(data as Int32Array), shape, 'int32');
  }
}
