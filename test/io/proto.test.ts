import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as nodePath from 'node:path';
import protobuf from 'protobufjs';
import descriptorExt from 'protobufjs/ext/descriptor.js';
import { describe, expect, it } from 'vitest';
import type {
  ActionChunkProtoInit,
  ActionProtoInit,
  ArraySpecProtoInit,
  EpisodeProtoInit,
  ObservationProtoInit,
  PolicyInfoProtoInit,
  ProtoTypeName,
  TensorProtoInit,
} from '../../src/proto/messages.js';
import { decode, defaultProtoDir, encode, fileDescriptorSet, messageType, ProtoError, ProtoRegistry, protoRegistry } from '../../src/proto/registry.js';

const tensor: Required<TensorProtoInit> = { dtype: 'DTYPE_FLOAT32', shape: [2], data: new Uint8Array(8), name: 'x' };
const observation: Required<ObservationProtoInit> = {
  timestampNs: 2n ** 64n - 1n,
  seq: 3,
  state: new Float64Array([0.5, -1]),
  tensors: { image: { dtype: 'DTYPE_UINT8', shape: [1, 2, 3], data: new Uint8Array([1, 2, 3, 4, 5, 6]) } },
  sessionId: 'robot-1',
  historyOnly: true,
  resetHistory: false,
  pinnedActions: [0.25, -3],
  pinnedFirstRow: -1,
};
const chunk: Required<ActionChunkProtoInit> = {
  startTimestampNs: 1_000_000_123n,
  dt: 0.05,
  actions: tensor,
  obsSeq: '17',
  policyId: 'pusht@v3',
  inferenceLatencyMs: 12.5,
  sessionId: 'robot-1',
  errorCode: 'INVALID_ARGUMENT',
  errorMessage: 'state[2] is NaN',
};
const action: Required<ActionProtoInit> = { timestampNs: 5, values: [1, 2] };
const episode: Required<EpisodeProtoInit> = {
  env: 'pusht',
  index: 4,
  observations: [observation],
  actions: [action],
  rewards: [0.25],
  success: false,
  metadata: { seed: '7' },
};
const arraySpec: Required<ArraySpecProtoInit> = {
  name: 'state',
  shape: [5],
  dtype: 'DTYPE_FLOAT64',
  low: [0, 0, 0, 0, 0],
  high: [512, 512, 512, 512, 6.3],
  elementNames: ['agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle'],
};
const policyInfo: Required<PolicyInfoProtoInit> = {
  policyId: 'pusht',
  modelVersion: 'abc123',
  env: 'pusht',
  observation: arraySpec,
  action: { ...arraySpec, name: 'actions', shape: [16, 2] },
  obsHorizon: 2,
  predHorizon: 16,
  actionHorizon: 8,
  controlRateHz: 10,
  currentRow: 1,
  sampler: 'ddim',
  samplingSteps: 10,
  maxMessageBytes: 1 << 20,
  maxSessions: 64,
  guidance: '{"spec":"region:1","mode":"projection"}',
  samplingTemperature: 0.8,
  replanClearance: 0.02,
};
const FULL: Record<ProtoTypeName, object> = {
  'scoreflow.v1.StreamError': { code: 'INVALID_ARGUMENT', message: 'state has 3 values, expected 5' },
  // oneof envelopes: every member listed here for the coverage check (a message carries one).
  'scoreflow.v1.BridgeRequest': { observation, info: {}, reset: { sessionId: 'robot-1' } },
  'scoreflow.v1.BridgeReply': { chunk, info: policyInfo, reset: { clearedObservations: 1 }, error: { code: 'INTERNAL', message: 'x' } },
  'scoreflow.v1.ControlLoopMetrics': {
    timestampNs: 123n,
    windowS: 1,
    targetRateHz: 50,
    achievedRateHz: 49.9,
    jitterP50Ms: 0.4,
    jitterP99Ms: 2.5,
    jitterMaxMs: 3,
    deadlineMisses: 1,
    safeStops: 0,
    inferenceP50Ms: 40,
    inferenceP99Ms: 60,
    overlapErrorMax: 0.5,
    chunksRequested: 10,
    chunksReceived: 9,
    observationsDropped: 2,
  },
  'scoreflow.v1.InfoRequest': {},
  'scoreflow.v1.ArraySpec': arraySpec,
  'scoreflow.v1.PolicyInfo': policyInfo,
  'scoreflow.v1.ResetRequest': { sessionId: 'robot-1' },
  'scoreflow.v1.ResetResponse': { clearedObservations: 2 },
  'scoreflow.v1.Tensor': tensor,
  'scoreflow.v1.Observation': observation,
  'scoreflow.v1.ActionChunk': chunk,
  'scoreflow.v1.Action': action,
  'scoreflow.v1.Episode': episode,
};

describe('proto registry', () => {
  it('loads every message type from the repository proto/ directory', () => {
    expect(defaultProtoDir()).toBe(nodePath.resolve(import.meta.dirname, '../../proto'));
    expect(protoRegistry().files).toEqual(['robot.proto', 'service.proto', 'tensor.proto']);
    expect(protoRegistry().messageTypeNames()).toEqual(Object.keys(FULL).sort());
    expect(messageType('.scoreflow.v1.Episode')).toBe(messageType('scoreflow.v1.Episode'));
  });

  it('TypeScript message shapes cover exactly the proto fields', () => {
    for (const [name, obj] of Object.entries(FULL)) {
      expect(Object.keys(obj).sort(), name).toEqual(messageType(name).fieldsArray.map((f) => f.name).sort());
    }
  });

  it('round-trips every field, with 64-bit integers as bigint', () => {
    const ep = decode('scoreflow.v1.Episode', encode('scoreflow.v1.Episode', episode));
    expect(ep.env).toBe('pusht');
    expect(ep.success).toBe(false);
    expect(ep.metadata).toEqual({ seed: '7' });
    expect(ep.rewards).toEqual([0.25]);
    expect(ep.actions).toEqual([{ timestampNs: 5n, values: [1, 2] }]);
    const obs = ep.observations[0]!;
    expect(obs.timestampNs).toBe(2n ** 64n - 1n);
    expect(obs.seq).toBe(3n);
    expect(obs.state).toEqual([0.5, -1]);
    expect(obs.sessionId).toBe('robot-1');
    const img = obs.tensors['image']!;
    expect(img.dtype).toBe('DTYPE_UINT8');
    expect(img.shape).toEqual([1, 2, 3]);
    expect(Object.getPrototypeOf(img.data)).toBe(Uint8Array.prototype);
    expect(Array.from(img.data)).toEqual([1, 2, 3, 4, 5, 6]);

    const c = decode('scoreflow.v1.ActionChunk', encode('scoreflow.v1.ActionChunk', chunk));
    expect(c.startTimestampNs).toBe(1_000_000_123n);
    expect(c.obsSeq).toBe(17n);
    expect(c.actions?.shape).toEqual([2]);
    expect(c.policyId).toBe('pusht@v3');
    expect(c.inferenceLatencyMs).toBe(12.5);
  });

  it('fills defaults and leaves unset optional fields absent', () => {
    const ep = decode('scoreflow.v1.Episode', encode('scoreflow.v1.Episode', {}));
    expect(ep).toEqual({ env: '', index: 0, observations: [], actions: [], rewards: [], metadata: {} });
    expect('success' in ep).toBe(false);
    expect(decode('scoreflow.v1.ActionChunk', new Uint8Array(0)).actions).toBeNull();
  });

  it('rejects malformed objects naming the field', () => {
    const bad = (obj: object, re: RegExp) => {
      expect(() => encode('scoreflow.v1.Episode', obj as EpisodeProtoInit)).toThrow(ProtoError);
      expect(() => encode('scoreflow.v1.Episode', obj as EpisodeProtoInit)).toThrow(re);
    };
    bad({ env: 3 }, /Episode\.env: expected a string, received number 3/);
    bad({ nope: 1 }, /unknown field 'nope' for scoreflow\.v1\.Episode/);
    bad({ observations: [{ timestamp_ns: 1 }] }, /observations\[0\]: unknown field 'timestamp_ns'.*did you mean 'timestampNs'/);
    bad({ observations: [{ seq: -1 }] }, /observations\[0\]\.seq: -1 is out of range for uint64/);
    bad({ observations: [{ seq: 2n ** 64n }] }, /out of range for uint64/);
    bad({ observations: [{ seq: 1.5 }] }, /expected an integer for uint64/);
    bad({ observations: [{ seq: 2 ** 60 }] }, /safe-integer/);
    bad({ observations: [{ tensors: { a: { dtype: 'FLOAT32' } } }] }, /tensors\["a"\]\.dtype: unknown scoreflow\.v1\.DType value "FLOAT32"/);
    bad({ observations: [{ tensors: { a: { data: [1, 2] } } }] }, /\.data: expected a Uint8Array/);
    bad({ observations: [{ tensors: { a: null } }] }, /map values can't be null/);
    bad({ index: -1 }, /index: -1 is out of range for uint32/);
    bad({ index: 2 ** 32 }, /out of range for uint32/);
    bad({ rewards: [1, 2n] }, /rewards\[1\]: expected a number for double, received bigint 2/);
    bad({ rewards: 5 }, /rewards: expected an array/);
    bad({ success: 'yes' }, /success: expected a boolean/);
    bad({ metadata: { a: 1 } }, /metadata\["a"\]: expected a string/);
    bad({ observations: {} }, /observations: expected an array/);
    bad([] as unknown as object, /expected a plain object for scoreflow\.v1\.Episode, received an array/);
    expect(() => encode('scoreflow.v1.Nope', {})).toThrow(/unknown message type 'scoreflow\.v1\.Nope'; known types: scoreflow\.v1\.Action/);
  });

  it('rejects malformed wire bytes with ProtoError', () => {
    const wire = encode('scoreflow.v1.Episode', episode);
    for (const cut of [1, 5, wire.length - 1]) {
      expect(() => decode('scoreflow.v1.Episode', wire.subarray(0, cut))).toThrow(/decode scoreflow\.v1\.Episode: malformed or truncated/);
    }
    expect(() => decode('scoreflow.v1.Episode', new Uint8Array([0x0f, 0xff, 0xff]))).toThrow(ProtoError);
    expect(() => decode('scoreflow.v1.Episode', 'abc' as unknown as Uint8Array)).toThrow(/expected a Uint8Array/);
  });

  it('builds a protoc-shaped FileDescriptorSet that other decoders accept', () => {
    const fds = descriptorExt.FileDescriptorSet.toObject(descriptorExt.FileDescriptorSet.decode(fileDescriptorSet('scoreflow.v1.Episode')), {
      enums: String,
    }) as { file: { name: string; package: string; dependency?: string[]; messageType: { name: string; field: { name: string; typeName?: string; jsonName: string; proto3Optional?: boolean }[]; nestedType?: { name: string; options?: { mapEntry?: boolean } }[] }[] }[] };
    expect(fds.file.map((f) => f.name)).toEqual(['tensor.proto', 'robot.proto']); // dependencies first
    const robot = fds.file[1]!;
    expect(robot.package).toBe('scoreflow.v1');
    expect(robot.dependency).toEqual(['tensor.proto']);
    const ep = robot.messageType.find((m) => m.name === 'Episode')!;
    expect(ep.nestedType?.map((n) => [n.name, n.options?.mapEntry])).toEqual([['MetadataEntry', true]]);
    expect(ep.field.find((f) => f.name === 'metadata')?.typeName).toBe('.scoreflow.v1.Episode.MetadataEntry');
    expect(ep.field.find((f) => f.name === 'success')?.proto3Optional).toBe(true);
    const obs = robot.messageType.find((m) => m.name === 'Observation')!;
    expect(obs.field.find((f) => f.name === 'timestamp_ns')?.jsonName).toBe('timestampNs');
    // The Tensor file alone when only Tensor is asked for.
    const tensorOnly = descriptorExt.FileDescriptorSet.decode(fileDescriptorSet('scoreflow.v1.Tensor')) as unknown as { file: { name: string }[] };
    expect(tensorOnly.file.map((f) => f.name)).toEqual(['tensor.proto']);

    // A decoder built from the descriptor alone (as Foxglove does) reads our bytes.
    const foreign = protobuf.Root.fromDescriptor(fileDescriptorSet('scoreflow.v1.Episode'));
    const T = foreign.lookupType('scoreflow.v1.Episode');
    const obj = T.toObject(T.decode(encode('scoreflow.v1.Episode', episode)), { longs: String }) as Record<string, unknown>;
    expect(obj['env']).toBe('pusht');
    expect(obj['success']).toBe(false);
    expect((obj['observations'] as { timestampNs: string }[])[0]!.timestampNs).toBe('18446744073709551615');
    // And the full set covers every file.
    const all = descriptorExt.FileDescriptorSet.decode(fileDescriptorSet()) as unknown as { file: { name: string }[] };
    expect(all.file.map((f) => f.name)).toEqual(['tensor.proto', 'robot.proto', 'service.proto']);
  });

  it('loads other proto directories: subdirectories, well-known imports, 64-bit and map keys, services', () => {
    const dir = mkdtempSync(nodePath.join(tmpdir(), 'scoreflow-proto-'));
    try {
      mkdirSync(nodePath.join(dir, 'sub'));
      writeFileSync(
        nodePath.join(dir, 'sub', 'extra.proto'),
        `syntax = "proto3";
package demo;
import "google/protobuf/timestamp.proto";
message Big {
  int64 a = 1;
  sint64 b = 2;
  fixed64 c = 3;
  map<int32, string> names = 4;
  google.protobuf.Timestamp at = 5;
  oneof pick { string s = 6; double d = 7; }
  enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; }
  Kind kind = 8;
  reserved 10 to 12, 15;
  reserved "old";
}
service Echo { rpc Stream(stream Big) returns (stream Big); }
`,
      );
      writeFileSync(nodePath.join(dir, 'use.proto'), 'syntax = "proto3";\npackage demo;\nimport "sub/extra.proto";\nmessage Wrap { Big big = 1; }\n');
      const reg = ProtoRegistry.load(dir);
      expect(reg.files).toEqual(['sub/extra.proto', 'use.proto']);
      const wire = reg.encode('demo.Wrap', { big: { a: -5n, b: -(2n ** 63n), c: 2n ** 64n - 1n, names: { '-3': 'x' }, at: { seconds: 10, nanos: 5 }, s: 'hi', kind: 'KIND_A' } });
      expect(reg.decode('demo.Wrap', wire)).toMatchObject({
        big: { a: -5n, b: -(2n ** 63n), c: 2n ** 64n - 1n, names: { '-3': 'x' }, at: { seconds: 10n, nanos: 5 }, s: 'hi', kind: 'KIND_A' },
      });
      expect(() => reg.encode('demo.Big', { names: { x: 'y' } })).toThrow(/map key "x" is not an integer for key type int32/);
      expect(() => reg.encode('demo.Big', { a: 2n ** 63n })).toThrow(/out of range for int64/);

      const fdsBytes = reg.fileDescriptorSet('demo.Wrap');
      const fds = descriptorExt.FileDescriptorSet.toObject(descriptorExt.FileDescriptorSet.decode(fdsBytes), { enums: String }) as {
        file: { name: string; dependency?: string[]; service?: { method: { inputType: string; clientStreaming: boolean }[] }[]; messageType?: { name: string; reservedRange?: { start: number; end: number }[]; oneofDecl?: { name: string }[] }[] }[];
      };
      expect(fds.file.map((f) => f.name)).toEqual(['google/protobuf/timestamp.proto', 'sub/extra.proto', 'use.proto']);
      const extra = fds.file[1]!;
      expect(extra.dependency).toEqual(['google/protobuf/timestamp.proto']);
      expect(extra.service?.[0]?.method[0]).toMatchObject({ inputType: '.demo.Big', clientStreaming: true });
      const big = extra.messageType!.find((m) => m.name === 'Big')!;
      expect(big.reservedRange).toEqual([{ start: 10, end: 13 }, { start: 15, end: 16 }]);
      expect(big.oneofDecl).toEqual([{ name: 'pick' }]);
      const foreign = protobuf.Root.fromDescriptor(fdsBytes).lookupType('demo.Wrap');
      expect(foreign.toObject(foreign.decode(wire), { longs: String })).toMatchObject({ big: { a: '-5', s: 'hi' } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => ProtoRegistry.load(nodePath.join(tmpdir(), 'scoreflow-no-such-dir'))).toThrow(/cannot list \.proto files/);
  });
});
