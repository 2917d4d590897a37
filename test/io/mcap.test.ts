import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as nodePath from 'node:path';
import { McapStreamReader, McapWriter, TempBuffer, type McapTypes } from '@mcap/core';
import protobuf from 'protobufjs';
import descriptorExt from 'protobufjs/ext/descriptor.js';
import { afterAll, describe, expect, it } from 'vitest';
import {
  EpisodeError,
  readEpisodesMcap,
  writeEpisodesMcap,
  type EpisodeRecord,
} from '../../domains/robotics/data/episodes.js';
import { McapError, McapReader, McapRecorder, readMcap, type McapMessage } from '../../src/io/mcap.js';
import { fileDescriptorSet } from '../../src/proto/registry.js';
import { toTensorProto } from '../../src/proto/tensor.js';

const dir = mkdtempSync(nodePath.join(tmpdir(), 'scoreflow-mcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string) => nodePath.join(dir, name);

const MAGIC = [0x89, 0x4d, 0x43, 0x41, 0x50, 0x30, 0x0d, 0x0a];

function makeEpisode(index: number, steps: number, obsDim: number, actDim: number, extraObs: boolean): EpisodeRecord {
  const vec = (dim: number, t: number, k: number) => Float64Array.from({ length: dim }, (_, j) => Math.sin(index * 7.1 + t * 0.3 + j * k) * 100);
  return {
    env: 'pusht',
    index,
    observations: Array.from({ length: steps + (extraObs ? 1 : 0) }, (_, t) => vec(obsDim, t, 1.3)),
    actions: Array.from({ length: steps }, (_, t) => vec(actDim, t, 0.7)),
    rewards: Array.from({ length: steps }, (_, t) => t / 10 - index),
  };
}

const EPISODES: EpisodeRecord[] = [
  { ...makeEpisode(0, 12, 5, 2, false), success: true, metadata: { seed: '11', operator: 'sim' } },
  { ...makeEpisode(1, 7, 5, 2, true), success: false },
  makeEpisode(2, 0, 5, 2, false), // empty episode, success unknown
  makeEpisode(9, 3, 5, 2, true),
];

/** Every record of an MCAP file, parsed with the streaming reader (validates CRCs). */
function allRecords(path: string, includeChunks = false): McapTypes.TypedMcapRecord[] {
  const reader = new McapStreamReader({ includeChunks });
  reader.append(readFileSync(path));
  const out: McapTypes.TypedMcapRecord[] = [];
  for (let r; (r = reader.nextRecord()); ) out.push(r);
  expect(reader.done()).toBe(true);
  return out;
}

describe('episodes <-> MCAP', () => {
  it('writes episodes and reads back identical records', async () => {
    const path = file('episodes.mcap');
    await writeEpisodesMcap(path, EPISODES, { env: 'pusht', dt: 0.05 });
    const back = await readEpisodesMcap(path);
    expect(back).toEqual(EPISODES);
    expect('success' in back[2]!).toBe(false);
    expect(back[0]!.observations[0]).toBeInstanceOf(Float64Array);
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]); // written via temp file + rename
  });

  it('produces a valid MCAP whose protobuf schema is a FileDescriptorSet', async () => {
    const path = file('episodes.mcap');
    const bytes = readFileSync(path);
    expect(Array.from(bytes.subarray(0, 8))).toEqual(MAGIC);
    expect(Array.from(bytes.subarray(bytes.length - 8))).toEqual(MAGIC);

    const records = allRecords(path);
    const schemas = records.filter((r): r is McapTypes.TypedMcapRecords['Schema'] => r.type === 'Schema');
    const episodeSchema = schemas.find((s) => s.name === 'scoreflow.v1.Episode')!;
    expect(episodeSchema.encoding).toBe('protobuf');
    const fds = descriptorExt.FileDescriptorSet.decode(episodeSchema.data) as unknown as {
      file: { name: string; package: string; messageType: { name: string }[] }[];
    };
    expect(fds.file.map((f) => f.name)).toEqual(['tensor.proto', 'robot.proto']);
    expect(fds.file.flatMap((f) => f.messageType.map((m) => `${f.package}.${m.name}`))).toContain('scoreflow.v1.Episode');
    const channel = records.find((r): r is McapTypes.TypedMcapRecords['Channel'] => r.type === 'Channel' && r.topic === '/episode')!;
    expect(channel.messageEncoding).toBe('protobuf');
    expect(channel.schemaId).toBe(episodeSchema.id);
    const header = records.find((r): r is McapTypes.TypedMcapRecords['Header'] => r.type === 'Header')!;
    expect(header.library).toBe('scoreflow');
    const meta = records.find((r): r is McapTypes.TypedMcapRecords['Metadata'] => r.type === 'Metadata')!;
    expect(Object.fromEntries(meta.metadata)).toEqual({ env: 'pusht', dt: '0.05', episodes: '4', format: '1' });

    // A consumer holding only the file (like Foxglove) decodes the messages from the schema.
    const foreign = protobuf.Root.fromDescriptor(episodeSchema.data).lookupType('scoreflow.v1.Episode');
    const messages = records.filter((r): r is McapTypes.TypedMcapRecords['Message'] => r.type === 'Message');
    expect(messages).toHaveLength(EPISODES.length);
    const first = foreign.toObject(foreign.decode(messages[0]!.data), { longs: String }) as { env: string; index: number; rewards: number[] };
    expect(first.env).toBe('pusht');
    expect(first.rewards).toEqual(EPISODES[0]!.rewards);
    // Episodes are logged end to end at their first step's time: 0, 12, 20, 20 (empty), ... x dt.
    expect(messages.map((m) => m.logTime)).toEqual([0n, 600_000_000n, 1_000_000_000n, 1_050_000_000n]);
  });

  it('optionally writes per-step Observation messages on one timeline', async () => {
    const path = file('with-obs.mcap');
    await writeEpisodesMcap(path, EPISODES.slice(0, 2), { dt: 0.5, observationMessages: true });
    const obs: McapMessage[] = [];
    for await (const m of readMcap(path, { topics: ['/observation'] })) obs.push(m);
    expect(obs).toHaveLength(12 + 8);
    expect(obs.every((m) => m.schemaName === 'scoreflow.v1.Observation')).toBe(true);
    expect(obs.map((m) => m.logTime)).toEqual(Array.from({ length: 20 }, (_, k) => BigInt(k) * 500_000_000n));
    expect(obs.map((m) => (m.message as { seq: bigint }).seq)).toEqual(Array.from({ length: 20 }, (_, k) => BigInt(k)));
    expect((obs[13]!.message as { state: number[] }).state).toEqual(Array.from(EPISODES[1]!.observations[1]!));
    expect(await readEpisodesMcap(path)).toEqual(EPISODES.slice(0, 2));
  });

  it('rejects invalid episodes before creating a file', async () => {
    const path = file('invalid.mcap');
    const ep = makeEpisode(0, 3, 4, 2, false);
    const cases: [EpisodeRecord[], RegExp, object?][] = [
      [[{ ...ep, rewards: [1, 2] }], /2 rewards for 3 actions/],
      [[{ ...ep, observations: ep.observations.slice(0, 1) }], /1 observations for 3 actions \(need 3 or 4\)/],
      [[{ ...ep, observations: [...ep.observations.slice(0, 2), new Float64Array(5)] }], /observations\[2\] has length 5, observations\[0\] has 4/],
      [[{ ...ep, actions: [new Float64Array(2), [1, 2] as unknown as Float64Array, new Float64Array(2)] }], /actions\[1\] must be a Float64Array, received Array/],
      [[{ ...ep, rewards: [0, NaN, 1] }], /rewards\[1\] must be a finite number/],
      [[{ ...ep, index: -1 }], /index must be an integer/],
      [[ep, ep], /episodes\[1\]: duplicate episode \(env 'pusht', index 0\)/],
      [[ep], /env 'pusht' differs from the file's env 'aloha'/, { env: 'aloha' }],
      [[ep], /dt must be a positive number/, { dt: 0 }],
    ];
    for (const [episodes, re, opts] of cases) {
      await expect(writeEpisodesMcap(path, episodes, opts)).rejects.toThrow(re);
      await expect(writeEpisodesMcap(path, episodes, opts)).rejects.toBeInstanceOf(EpisodeError);
    }
    expect(existsSync(path)).toBe(false);
  });

  it('gives clear errors for missing, foreign, truncated and corrupt files', async () => {
    await expect(readEpisodesMcap(file('nope.mcap'))).rejects.toThrow(/file not found: .*nope\.mcap/);
    writeFileSync(file('text.mcap'), 'definitely not an mcap file');
    await expect(readEpisodesMcap(file('text.mcap'))).rejects.toThrow(/is not an MCAP file/);
    writeFileSync(file('empty.mcap'), new Uint8Array(0));
    await expect(readEpisodesMcap(file('empty.mcap'))).rejects.toThrow(/is not an MCAP file/);

    const good = readFileSync(file('episodes.mcap'));
    for (const keep of [9, 200, good.length >> 1, good.length - 1]) {
      writeFileSync(file('cut.mcap'), good.subarray(0, keep));
      await expect(readEpisodesMcap(file('cut.mcap'))).rejects.toThrow(/truncated or unfinished/);
      await expect(readEpisodesMcap(file('cut.mcap'))).rejects.toBeInstanceOf(McapError);
    }
    // Intact ends, damaged middle: the summary/index or a chunk CRC no longer checks out.
    const damaged = Uint8Array.from(good);
    for (let i = 200; i < damaged.length - 200; i += 7) damaged[i] = damaged[i]! ^ 0x5a;
    writeFileSync(file('damaged.mcap'), damaged);
    await expect(readEpisodesMcap(file('damaged.mcap'))).rejects.toThrow(McapError);

    // A file without the /episode topic.
    const rec = new McapRecorder();
    await rec.open(file('other.mcap'));
    await rec.write('/obs', 'scoreflow.v1.Observation', { seq: 1 }, 5n);
    await rec.close();
    await expect(readEpisodesMcap(file('other.mcap'))).rejects.toThrow(/has no '\/episode' topic \(topics: \/obs\)/);
  });

  it('rejects channels whose schema the registry does not know', async () => {
    const buf = new TempBuffer();
    const writer = new McapWriter({ writable: buf });
    await writer.start({ profile: '', library: 'test' });
    const known = await writer.registerSchema({ name: 'scoreflow.v1.Action', encoding: 'protobuf', data: fileDescriptorSet('scoreflow.v1.Action') });
    const unknown = await writer.registerSchema({ name: 'acme.Widget', encoding: 'protobuf', data: new Uint8Array(0) });
    const json = await writer.registerSchema({ name: 'Thing', encoding: 'jsonschema', data: new TextEncoder().encode('{}') });
    const a = await writer.registerChannel({ schemaId: known, topic: '/a', messageEncoding: 'protobuf', metadata: new Map() });
    const w = await writer.registerChannel({ schemaId: unknown, topic: '/w', messageEncoding: 'protobuf', metadata: new Map() });
    const j = await writer.registerChannel({ schemaId: json, topic: '/j', messageEncoding: 'json', metadata: new Map() });
    for (const channelId of [a, w, j]) await writer.addMessage({ channelId, sequence: 0, logTime: 1n, publishTime: 1n, data: new Uint8Array(0) });
    await writer.end();
    writeFileSync(file('foreign.mcap'), buf.get());

    const drain = async (topics?: string[]) => {
      const out: McapMessage[] = [];
      for await (const m of readMcap(file('foreign.mcap'), topics ? { topics } : {})) out.push(m);
      return out;
    };
    await expect(drain()).rejects.toThrow(/topic '\/w': unknown schema 'acme\.Widget'; known types: scoreflow\.v1\.Action/);
    await expect(drain(['/j'])).rejects.toThrow(/topic '\/j': schema encoding 'jsonschema' is not supported/);
    const ok = await drain(['/a']);
    expect(ok.map((m) => [m.topic, m.message])).toEqual([['/a', { timestampNs: 0n, values: [] }]]);
  });
});

describe('McapRecorder', () => {
  it('records ActionChunks with tensors, keeps call order without awaiting, and survives bad messages', async () => {
    const path = file('chunks.mcap');
    const rec = new McapRecorder({ chunkSize: 4096 });
    await expect(rec.write('/x', 'scoreflow.v1.Action', {}, 0n)).rejects.toThrow(/call open\(path\) first/);
    await rec.open(path);
    expect(await rec.channel('/obs', 'scoreflow.v1.Observation', { robot: 'arm0' })).toBeGreaterThanOrEqual(0);
    const pending: Promise<void>[] = [];
    for (let k = 0; k < 50; k++) {
      const actions = toTensorProto(Float32Array.from({ length: 16 }, (_, i) => k + i / 16), [8, 2], { name: 'actions' });
      pending.push(
        rec.write('/policy/actions', 'scoreflow.v1.ActionChunk', { startTimestampNs: BigInt(k) * 100n, dt: 0.01, actions, obsSeq: k, policyId: 'p' }, BigInt(k) * 100n),
      );
    }
    // Invalid message and type clash are rejected without poisoning the file.
    pending.push(
      expect(rec.write('/policy/actions', 'scoreflow.v1.ActionChunk', { obs_seq: 1 }, 0n)).rejects.toThrow(/unknown field 'obs_seq'.*did you mean 'obsSeq'/),
    );
    pending.push(expect(rec.write('/policy/actions', 'scoreflow.v1.Action', {}, 0n)).rejects.toThrow(/carries scoreflow\.v1\.ActionChunk, not scoreflow\.v1\.Action/));
    pending.push(expect(rec.write('/t', 'scoreflow.v1.Action', {}, -1)).rejects.toThrow(/outside \[0, 2\^64 - 1\]/));
    pending.push(expect(rec.write('/t', 'Action', {}, 0)).rejects.toThrow(/unknown message type 'Action'/));
    await Promise.all(pending);
    await rec.metadata('run', { policy: 'p' });
    expect(rec.messageCount).toBe(50);
    await rec.close();
    await rec.close(); // idempotent
    await expect(rec.write('/x', 'scoreflow.v1.Action', {}, 0n)).rejects.toThrow(/is closed/);

    const reader = await McapReader.open(path);
    try {
      expect(reader.messageCount).toBe(50n);
      expect(reader.channels.map((c) => [c.topic, c.schemaName, c.metadata])).toEqual([
        ['/obs', 'scoreflow.v1.Observation', { robot: 'arm0' }],
        ['/policy/actions', 'scoreflow.v1.ActionChunk', {}],
      ]);
      expect(await reader.metadata('run')).toEqual([{ name: 'run', metadata: { policy: 'p' } }]);
      const seen: bigint[] = [];
      const seqs: number[] = [];
      for await (const m of reader.messages<{ obsSeq: bigint; actions: { shape: number[]; name: string } }>({ startTime: 1000n, endTime: 2000n })) {
        seen.push(m.message.obsSeq);
        seqs.push(m.sequence);
        expect(m.message.actions.shape).toEqual([8, 2]);
        expect(m.message.actions.name).toBe('actions');
      }
      expect(seen).toEqual(Array.from({ length: 11 }, (_, i) => BigInt(i + 10)));
      expect(seqs).toEqual(Array.from({ length: 11 }, (_, i) => i + 10));
    } finally {
      await reader.close();
    }
    // A file several chunks long is still a valid MCAP end to end.
    expect(allRecords(path, true).filter((r) => r.type === 'Chunk').length).toBeGreaterThan(1);
  });

  it('an unfinished recording is reported as truncated', async () => {
    const path = file('unfinished.mcap');
    const rec = new McapRecorder();
    await rec.open(path);
    await rec.write('/a', 'scoreflow.v1.Action', { values: [1] }, 1n);
    // No close(): only the header is on disk.
    await expect(readEpisodesMcap(path)).rejects.toThrow(/truncated or unfinished/);
    await rec.close();
    const out: McapMessage[] = [];
    for await (const m of readMcap(path)) out.push(m);
    expect(out.map((m) => m.message)).toEqual([{ timestampNs: 0n, values: [1] }]);
  });
});
