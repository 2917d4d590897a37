import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { decode, encode, protoRegistry } from '../../src/proto/registry.js';
import {
  fromTensorProto,
  TENSOR_DTYPES,
  TensorProtoError,
  tensorProtoToTf,
  toTensorProto,
  type TensorData,
  type TensorDType,
} from '../../src/proto/tensor.js';

/** Sample values per dtype, including the extremes of the type. */
function sample(dtype: TensorDType, n: number): TensorData {
  const pick = <T>(vals: T[]) => Array.from({ length: n }, (_, i) => vals[i % vals.length]!);
  switch (dtype) {
    case 'float32':
      return Float32Array.from(pick([0, -1.5, 3.25, 3.4e38, -Infinity, 1e-40]));
    case 'float64':
      return Float64Array.from(pick([0, -1.5, Math.PI, 1.7e308, Infinity, 5e-324]));
    case 'int32':
      return Int32Array.from(pick([0, -1, 2147483647, -2147483648, 7]));
    case 'uint8':
      return Uint8Array.from(pick([0, 1, 255, 128]));
    case 'int64':
      return BigInt64Array.from(pick([0n, -1n, 9223372036854775807n, -9223372036854775808n, 42n]));
    case 'int8':
      return Int8Array.from(pick([0, -128, 127, 5]));
    case 'int16':
      return Int16Array.from(pick([0, -32768, 32767, 9]));
    case 'uint16':
      return Uint16Array.from(pick([0, 65535, 1000]));
    case 'uint32':
      return Uint32Array.from(pick([0, 4294967295, 123456]));
    case 'bool':
      return Uint8Array.from(pick([0, 1, 1]));
  }
}

const SHAPES: number[][] = [[], [0], [5], [2, 3], [2, 0, 4], [1, 2, 1, 3]];

describe('scoreflow.v1.Tensor', () => {
  it('dtype table matches enum DType in tensor.proto', () => {
    const values = protoRegistry().root.lookupEnum('scoreflow.v1.DType').values;
    const named = Object.entries(values).filter(([name]) => name !== 'DTYPE_UNSPECIFIED');
    expect(Object.fromEntries(named)).toEqual(Object.fromEntries(TENSOR_DTYPES.map((d) => [d.enumName, d.code])));
  });

  for (const { dtype, bytes } of TENSOR_DTYPES) {
    it(`round-trips ${dtype} through the wire for every shape`, () => {
      for (const shape of SHAPES) {
        const n = shape.reduce((a, b) => a * b, 1);
        const data = sample(dtype, n);
        const msg = toTensorProto(data, shape, { dtype, name: `t${shape.length}` });
        expect(msg.data.byteLength).toBe(n * bytes);
        const back = fromTensorProto(decode('scoreflow.v1.Tensor', encode('scoreflow.v1.Tensor', msg)));
        expect(back.dtype).toBe(dtype);
        expect(back.shape).toEqual(shape);
        expect(back.name).toBe(`t${shape.length}`);
        expect(back.data.constructor).toBe(data.constructor);
        expect(Array.from(back.data as ArrayLike<number | bigint>)).toEqual(Array.from(data as ArrayLike<number | bigint>));
      }
    });
  }

  it('defaults the shape to [length] and infers the dtype', () => {
    const msg = toTensorProto(new Uint16Array([1, 2, 3]));
    expect(msg.dtype).toBe('DTYPE_UINT16');
    expect(msg.shape).toEqual([3]);
    expect(Array.from(msg.data)).toEqual([1, 0, 2, 0, 3, 0]); // little-endian
  });

  it('views aligned bytes without copying and copies misaligned ones', () => {
    const values = new Float64Array([1.5, -2, 3]);
    const raw = new Uint8Array(values.buffer);
    const aligned = fromTensorProto({ dtype: 'DTYPE_FLOAT64', shape: [3], data: raw });
    expect(aligned.data.buffer).toBe(raw.buffer);
    const shifted = new Uint8Array(raw.length + 1);
    shifted.set(raw, 1);
    const misaligned = fromTensorProto({ dtype: 'DTYPE_FLOAT64', shape: [3], data: shifted.subarray(1) });
    expect(misaligned.data.buffer).not.toBe(shifted.buffer);
    expect(Array.from(misaligned.data as Float64Array)).toEqual([1.5, -2, 3]);
    const copied = fromTensorProto({ dtype: 'DTYPE_FLOAT64', shape: [3], data: raw }, { copy: true });
    expect(copied.data.buffer).not.toBe(raw.buffer);
  });

  it('converts tf.Tensors both ways', () => {
    const f = tf.tensor([[1, 2.5], [-3, 4]], [2, 2], 'float32');
    const i = tf.tensor([7, -8, 9], [3], 'int32');
    const b = tf.tensor([true, false, true], [3], 'bool');
    for (const t of [f, i, b]) {
      const back = tensorProtoToTf(decode('scoreflow.v1.Tensor', encode('scoreflow.v1.Tensor', toTensorProto(t))));
      expect(back.dtype).toBe(t.dtype);
      expect(back.shape).toEqual(t.shape);
      expect(Array.from(back.dataSync())).toEqual(Array.from(t.dataSync()));
      back.dispose();
    }
    expect(toTensorProto(b).dtype).toBe('DTYPE_BOOL');
    // Reshape a tf.Tensor on the way out.
    expect(toTensorProto(f, [4]).shape).toEqual([4]);
    f.dispose();
    i.dispose();
    b.dispose();
    // Non-tfjs dtypes widen or narrow.
    const f64 = tensorProtoToTf(toTensorProto(new Float64Array([0.1, 2]), [2]));
    expect(f64.dtype).toBe('float32');
    expect(f64.dataSync()[0]).toBeCloseTo(0.1, 6);
    const u16 = tensorProtoToTf(toTensorProto(new Uint16Array([65535, 1]), [1, 2]));
    expect(u16.dtype).toBe('int32');
    expect(Array.from(u16.dataSync())).toEqual([65535, 1]);
    const i64 = tensorProtoToTf(toTensorProto(new BigInt64Array([-5n, 6n]), [2]));
    expect(Array.from(i64.dataSync())).toEqual([-5, 6]);
    tf.dispose([f64, u16, i64]);
    expect(() => tensorProtoToTf(toTensorProto(new BigInt64Array([2n ** 40n])))).toThrow(/does not fit tfjs int32/);
    expect(() => tensorProtoToTf(toTensorProto(new Uint32Array([2 ** 31])))).toThrow(/does not fit tfjs int32/);
  });

  it('rejects invalid tensors with clear errors', () => {
    const f = new Float32Array(6);
    expect(() => toTensorProto(f, [2, 2])).toThrow(/shape \[2, 2\] has 4 elements but the data has 6/);
    expect(() => toTensorProto(f, [-2, -3])).toThrow(/shape\[0\] = -2 is negative/);
    expect(() => toTensorProto(f, [2, 1.5])).toThrow(/shape\[1\] = 1.5 is not an integer/);
    expect(() => toTensorProto(f, [6], { dtype: 'int32' })).toThrow(/does not match a Float32Array/);
    expect(() => toTensorProto(new BigUint64Array(2) as unknown as TensorData)).toThrow(TensorProtoError);
    expect(() => toTensorProto([1, 2] as unknown as TensorData)).toThrow(/expected a tf.Tensor or a typed array/);
    expect(() => toTensorProto(new Uint8Array([0, 2]), [2], { dtype: 'bool' })).toThrow(/bool element 1 is 2/);
    const disposed = tf.scalar(1);
    disposed.dispose();
    expect(() => toTensorProto(disposed)).toThrow(/disposed/);

    const data = new Uint8Array(24);
    expect(() => fromTensorProto({ dtype: 'DTYPE_FLOAT32', shape: [2, 2], data })).toThrow(/needs 16 bytes \(4 x 4\), data has 24/);
    expect(() => fromTensorProto({ dtype: 'DTYPE_FLOAT32', shape: [2, -3], data })).toThrow(/shape\[1\] = -3 is negative/);
    expect(() => fromTensorProto({ dtype: 42, shape: [6], data })).toThrow(/unknown dtype 42/);
    expect(() => fromTensorProto({ dtype: 'DTYPE_UNSPECIFIED', shape: [6], data })).toThrow(/DTYPE_UNSPECIFIED/);
    expect(() => fromTensorProto({ shape: [6], data })).toThrow(/dtype is not set/);
    expect(() => fromTensorProto({ dtype: 'DTYPE_BOOL', shape: [2], data: new Uint8Array([1, 7]) })).toThrow(/expected 0 or 1/);
    // A shape whose product overflows any buffer is a size mismatch, not a crash.
    expect(() => fromTensorProto({ dtype: 'DTYPE_UINT8', shape: [4294967295, 4294967295], data })).toThrow(/needs .* bytes/);
    // An unknown dtype number survives decoding (open enum) and is rejected by fromTensorProto.
    const wire = encode('scoreflow.v1.Tensor', { dtype: 99, shape: [1], data: new Uint8Array(4) });
    expect(decode('scoreflow.v1.Tensor', wire).dtype).toBe(99);
    expect(() => fromTensorProto(decode('scoreflow.v1.Tensor', wire))).toThrow(/unknown dtype 99/);
  });
});
