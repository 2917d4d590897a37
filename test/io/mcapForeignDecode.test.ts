/**
 * An MCAP written by scoreflow, decoded by Google's own protobuf runtime (Debian's
 * python3-protobuf) from nothing but the file: the schema records' FileDescriptorSets build the
 * message classes, which then parse the raw message bytes. That is what Foxglove and ROS 2
 * tools do with a protobuf MCAP, so every field must come out.
 *
 * Skipped locally without python3-protobuf; fails under CI, where .ci/run installs it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { McapIndexedReader } from '@mcap/core';
import { afterAll, describe, expect, it } from 'vitest';
import { McapRecorder } from '../../src/io/mcap.js';

function findPython(): string | undefined {
  for (const p of [process.env.SCOREFLOW_PYTHON, '/usr/bin/python3', 'python3']) {
    if (!p) continue;
    const r = spawnSync(p, ['-c', 'import google.protobuf'], { encoding: 'utf8' });
    if (r.status === 0) return p;
  }
  return undefined;
}
const python = findPython();

const PY = String.raw`
import base64, json, sys
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
try:
    from google.protobuf.message_factory import GetMessageClass
except ImportError:
    from google.protobuf import message_factory
    _factory = message_factory.MessageFactory()
    GetMessageClass = lambda d: _factory.GetPrototype(d)
out = []
for item in json.load(sys.stdin):
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(item["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    cls = GetMessageClass(pool.FindMessageTypeByName(item["name"]))
    msg = cls.FromString(base64.b64decode(item["data"]))
    out.append(json_format.MessageToDict(msg, preserving_proto_field_name=True))
print(json.dumps(out))
`;

const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-mcap-py-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!python && !process.env.CI)('MCAP decoded by protobuf-python', () => {
  it('every field of Episode, ActionChunk and ControlLoopMetrics messages', async () => {
    expect(python, 'python3 with google.protobuf (apt-get install python3-protobuf)').toBeDefined();
    const file = path.join(dir, 'x.mcap');
    const rec = new McapRecorder();
    await rec.open(file);
    await rec.write('/episodes', 'scoreflow.v1.Episode', {
      env: 'pusht',
      index: 3,
      observations: [{ timestampNs: 2n ** 63n + 5n, seq: 7, state: [1.5, -2], tensors: { image: { dtype: 'DTYPE_UINT8', shape: [1, 2], data: Uint8Array.of(9, 10) } }, sessionId: 's', historyOnly: true, resetHistory: true }],
      actions: [{ timestampNs: 11, values: [0.25, 0.5] }],
      rewards: [0.75],
      success: false,
      metadata: { seed: '4' },
    }, 1n);
    await rec.write('/chunks', 'scoreflow.v1.ActionChunk', {
      startTimestampNs: 123456789n,
      dt: 0.1,
      actions: { dtype: 'DTYPE_FLOAT32', shape: [1, 2], data: new Uint8Array(Float32Array.of(1, 2).buffer), name: 'actions' },
      obsSeq: 7,
      policyId: 'pusht',
      inferenceLatencyMs: 12.5,
      sessionId: 's',
    }, 2n);
    await rec.write('/metrics', 'scoreflow.v1.ControlLoopMetrics', { timestampNs: 5, windowS: 1, targetRateHz: 50, achievedRateHz: 49.5, deadlineMisses: 2, chunksReceived: 9 }, 3n);
    await rec.close();

    const bytes = readFileSync(file);
    const reader = await McapIndexedReader.Initialize({
      readable: { size: async () => BigInt(bytes.length), read: async (offset: bigint, size: bigint) => bytes.subarray(Number(offset), Number(offset + size)) },
    });
    const items: { name: string; schema: string; data: string }[] = [];
    for await (const m of reader.readMessages()) {
      const ch = reader.channelsById.get(m.channelId)!;
      const schema = reader.schemasById.get(ch.schemaId)!;
      expect(ch.messageEncoding).toBe('protobuf');
      expect(schema.encoding).toBe('protobuf');
      items.push({ name: schema.name, schema: Buffer.from(schema.data).toString('base64'), data: Buffer.from(m.data).toString('base64') });
    }
    const r = spawnSync(python!, ['-c', PY], { input: JSON.stringify(items), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [ep, chunk, metrics] = JSON.parse(r.stdout) as Record<string, unknown>[];
    // proto3 JSON: 64-bit integers are strings, bytes are base64, default values are omitted.
    expect(ep).toEqual({
      env: 'pusht',
      index: 3,
      observations: [{ timestamp_ns: String(2n ** 63n + 5n), seq: '7', state: [1.5, -2], tensors: { image: { dtype: 'DTYPE_UINT8', shape: [1, 2], data: 'CQo=' } }, session_id: 's', history_only: true, reset_history: true }],
      actions: [{ timestamp_ns: '11', values: [0.25, 0.5] }],
      rewards: [0.75],
      success: false,
      metadata: { seed: '4' },
    });
    expect(chunk).toEqual({
      start_timestamp_ns: '123456789',
      dt: 0.1,
      actions: { dtype: 'DTYPE_FLOAT32', shape: [1, 2], data: Buffer.from(Float32Array.of(1, 2).buffer).toString('base64'), name: 'actions' },
      obs_seq: '7',
      policy_id: 'pusht',
      inference_latency_ms: 12.5,
      session_id: 's',
    });
    expect(metrics).toEqual({ timestamp_ns: '5', window_s: 1, target_rate_hz: 50, achieved_rate_hz: 49.5, deadline_misses: '2', chunks_received: '9' });
  });
});
