import { describe, expect, it } from 'vitest';
import { encodeFrame, encodeFrames, FrameError, FrameReader, readFrames } from '../../src/proto/framing.js';
import { decode, encode, messageType, ProtoError } from '../../src/proto/registry.js';

/** Small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

/** Sizes around the 1-, 2- and 3-byte varint boundaries. */
const PAYLOADS = [0, 1, 127, 128, 300, 16383, 16384, 40000].map((n, i) => bytes(n, i + 1));

function split(buf: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...cuts, buf.length]) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
}

/** Fast equality of frame lists (vitest's deep equality is slow on large typed arrays). */
function same(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((x, i) => Buffer.compare(x, b[i]!) === 0);
}

function readAll(chunks: Uint8Array[], maxFrameBytes?: number): Uint8Array[] {
  const reader = new FrameReader(maxFrameBytes === undefined ? {} : { maxFrameBytes });
  const frames = chunks.flatMap((c) => reader.push(c));
  reader.end();
  return frames;
}

describe('length-delimited framing', () => {
  const stream = encodeFrames(PAYLOADS);

  it('encodes varint prefixes like protobufjs encodeDelimited', () => {
    const T = messageType('scoreflow.v1.Action');
    const msg = { timestampNs: 99, values: Array.from({ length: 40 }, (_, i) => i) };
    const ours = encodeFrame(encode('scoreflow.v1.Action', msg));
    expect(Array.from(ours)).toEqual(Array.from(T.encodeDelimited(msg).finish()));
    expect(Array.from(encodeFrame(new Uint8Array(300)).subarray(0, 2))).toEqual([0xac, 0x02]);
    expect(same([encodeFrames(PAYLOADS)], [Buffer.concat(PAYLOADS.map((p) => encodeFrame(p)))])).toBe(true);
  });

  it('reassembles frames split at every single boundary and at random boundaries', () => {
    // Every cut point of a short stream (including inside multi-byte prefixes).
    const short = encodeFrames(PAYLOADS.slice(0, 5));
    for (let cut = 0; cut <= short.length; cut++) {
      expect(same(readAll(split(short, [cut])), PAYLOADS.slice(0, 5)), `cut at ${cut}`).toBe(true);
    }
    // One byte at a time.
    expect(same(readAll(Array.from(short, (b) => Uint8Array.of(b))), PAYLOADS.slice(0, 5))).toBe(true);
    // Random chunkings of the whole stream.
    const r = rng(42);
    for (let trial = 0; trial < 30; trial++) {
      const cuts = Array.from({ length: 1 + Math.floor(r() * 40) }, () => Math.floor(r() * stream.length)).sort((a, b) => a - b);
      expect(same(readAll(split(stream, cuts)), PAYLOADS), `cuts ${cuts.join(',')}`).toBe(true);
    }
  });

  it('returns frames that do not alias the input chunk', () => {
    const chunk = encodeFrames([Uint8Array.of(1, 2, 3)]);
    const [frame] = new FrameReader().push(chunk);
    chunk.fill(0);
    expect(Array.from(frame!)).toEqual([1, 2, 3]);
  });

  it('rejects an oversized frame as soon as its prefix arrives', () => {
    const reader = new FrameReader({ maxFrameBytes: 1000 });
    const frame = encodeFrame(new Uint8Array(1001));
    // Only the 2-byte prefix: rejected before any payload is buffered.
    expect(() => reader.push(frame.subarray(0, 2))).toThrow(FrameError);
    expect(reader.bufferedBytes).toBe(0);
    expect(() => reader.push(frame.subarray(2))).toThrow(/can't resynchronise.*1001 bytes, over the 1000-byte limit/);
    // A huge declared length is rejected from the first bytes of its prefix.
    const huge = new FrameReader({ maxFrameBytes: 1 << 20 });
    expect(() => huge.push(Uint8Array.of(0xff, 0xff, 0xff))).toThrow(/declares at least \d+ bytes, over the 1048576-byte limit/);
    expect(() => encodeFrame(new Uint8Array(11), 10)).toThrow(/exceeds the 10-byte frame limit/);
    expect(() => new FrameReader({ maxFrameBytes: -1 })).toThrow(FrameError);
  });

  it('returns the good frames read before a bad one and reports the error after them', () => {
    const reader = new FrameReader({ maxFrameBytes: 100 });
    const good = [Uint8Array.of(1, 2, 3), Uint8Array.of(4)];
    const chunk = new Uint8Array([...encodeFrames(good), 0xff, 0xff]);
    expect(reader.error).toBeNull();
    const frames = reader.push(chunk);
    expect(frames.map((f) => Array.from(f))).toEqual([[1, 2, 3], [4]]);
    expect(reader.error?.message).toMatch(/over the 100-byte limit/);
    expect(() => reader.push(Uint8Array.of(1, 0))).toThrow(/can't resynchronise/);
    // With no good frame before it, the error throws at once.
    expect(() => new FrameReader({ maxFrameBytes: 100 }).push(Uint8Array.of(0xff, 0xff))).toThrow(/over the 100-byte limit/);
  });

  it('rejects over-long varints and streams that end mid-frame', () => {
    const r = new FrameReader({ maxFrameBytes: 2 ** 31 - 1 });
    expect(() => r.push(new Uint8Array(11).fill(0x80))).toThrow(/varint longer than 10 bytes/);
    const partialPrefix = new FrameReader();
    partialPrefix.push(Uint8Array.of(0x80));
    expect(() => partialPrefix.end()).toThrow(/inside a length prefix/);
    const partialBody = new FrameReader();
    partialBody.push(encodeFrame(new Uint8Array(10)).subarray(0, 5));
    expect(partialBody.atBoundary).toBe(false);
    expect(() => partialBody.end()).toThrow(/4 of 10 payload bytes/);
  });

  it('survives random garbage: only FrameError / ProtoError, bounded buffering', () => {
    const r = rng(7);
    const limit = 4096;
    for (let trial = 0; trial < 200; trial++) {
      const junk = bytes(1 + Math.floor(r() * 3000), 1000 + trial);
      const reader = new FrameReader({ maxFrameBytes: limit });
      try {
        for (let pos = 0; pos < junk.length; ) {
          const n = 1 + Math.floor(r() * 300);
          for (const frame of reader.push(junk.subarray(pos, pos + n))) {
            expect(frame.length).toBeLessThanOrEqual(limit);
            try {
              decode('scoreflow.v1.Observation', frame);
            } catch (e) {
              expect(e).toBeInstanceOf(ProtoError);
            }
          }
          expect(reader.bufferedBytes).toBeLessThanOrEqual(limit);
          pos += n;
        }
      } catch (e) {
        expect(e).toBeInstanceOf(FrameError);
      }
    }
  });

  it('reads frames from an async byte stream', async () => {
    async function* chunks() {
      for (const c of split(stream, [3, 100, 5000, 20000])) yield c;
    }
    const got: Uint8Array[] = [];
    for await (const f of readFrames(chunks())) got.push(f);
    expect(same(got, PAYLOADS)).toBe(true);
    async function* cut() {
      yield stream.subarray(0, stream.length - 1);
    }
    await expect(async () => {
      for await (const _ of readFrames(cut())) void _;
    }).rejects.toThrow(/stream ended inside a frame/);
  });
});
