/**
 * The zarr v2 replay-buffer reader against Diffusion Policy's Push-T demonstrations
 * (../shared/data/pusht/pusht_cchi_v7_replay.zarr, see ../shared/data/README.md).
 */
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplayBuffer, type ReplayBuffer } from '../../domains/robotics/data/zarrReplay.js';

const ZARR = fileURLToPath(new URL('../../../shared/data/pusht/pusht_cchi_v7_replay.zarr', import.meta.url));

describe('readReplayBuffer on the Push-T demonstrations', () => {
  let rb: ReplayBuffer;
  beforeAll(async () => {
    rb = await readReplayBuffer(ZARR);
  });

  it('reads every array with its shape', () => {
    expect(Object.keys(rb.arrays).sort()).toEqual(['action', 'keypoint', 'n_contacts', 'state']);
    expect(rb.arrays.state.shape).toEqual([25650, 5]);
    expect(rb.arrays.action.shape).toEqual([25650, 2]);
    expect(rb.arrays.keypoint.shape).toEqual([25650, 9, 2]);
    expect(rb.arrays.n_contacts.shape).toEqual([25650, 1]);
    expect(rb.arrays.state.data.length).toBe(25650 * 5);
    expect(rb.arrays.keypoint.data.length).toBe(25650 * 18);
  });

  it('has 206 episodes with monotonic boundaries ending at 25650', () => {
    expect(rb.numEpisodes).toBe(206);
    expect(rb.numSteps).toBe(25650);
    expect(rb.episodeEnds[205]).toBe(25650);
    expect(rb.episodeEnds.slice(0, 5)).toEqual([161, 279, 420, 579, 738]);
    for (let i = 1; i < rb.numEpisodes; i++) expect(rb.episodeEnds[i]).toBeGreaterThan(rb.episodeEnds[i - 1]);
    expect(rb.episode(0)).toEqual({ start: 0, end: 161 });
    expect(rb.episode(1)).toEqual({ start: 161, end: 279 });
    expect(rb.episode(205).end).toBe(25650);
    expect(() => rb.episode(206)).toThrow(/index must be an integer in \[0, 206\)/);
  });

  it('matches values pinned from a first read', () => {
    const s = rb.arrays.state.data;
    const a = rb.arrays.action.data;
    const pinned0 = [222, 97, 222.9938201904297, 381.5990295410156, 3.0079994201660156];
    const pinnedLast = [144.55123901367188, 305.2630615234375, 255.17747497558594, 253.30528259277344, 0.8870487809181213];
    pinned0.forEach((v, i) => expect(s[i]).toBe(Math.fround(v)));
    pinnedLast.forEach((v, i) => expect(s[25649 * 5 + i]).toBe(Math.fround(v)));
    expect(Array.from(a.subarray(0, 2))).toEqual([233, 71]);
    expect(Array.from(a.subarray(25649 * 2))).toEqual([157, 325]);
    // Keypoints are fixed points of the block frame: the first one, (9.27, 90.04), at step 0.
    expect(rb.arrays.keypoint.data[0]).toBeCloseTo(201.8135, 3);
    expect(rb.arrays.keypoint.data[1]).toBeCloseTo(293.5951, 3);
  });

  it('loads only the requested keys', async () => {
    const small = await readReplayBuffer(ZARR, { keys: ['action'] });
    expect(Object.keys(small.arrays)).toEqual(['action']);
    expect(small.numEpisodes).toBe(206);
    await expect(readReplayBuffer(ZARR, { keys: ['../meta'] })).rejects.toThrow(/opts.keys must be array names/);
  });
});

describe('readReplayBuffer errors', () => {
  let tmp: string;
  const chunkFile = (): string => path.join(tmp, 'data', 'action', '3.0');

  /** Copy meta/episode_ends and data/action into a fresh writable replay buffer. */
  function makeCopy(): void {
    rmSync(tmp, { recursive: true, force: true });
    for (const rel of ['meta/episode_ends', 'data/action']) {
      mkdirSync(path.join(tmp, rel), { recursive: true });
      for (const f of readdirSync(path.join(ZARR, rel))) {
        writeFileSync(path.join(tmp, rel, f), readFileSync(path.join(ZARR, rel, f)));
      }
    }
  }

  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), 'zarr-replay-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('the copy itself reads', async () => {
    makeCopy();
    const rb = await readReplayBuffer(tmp);
    expect(rb.arrays.action.shape).toEqual([25650, 2]);
  });

  it('rejects a missing path', async () => {
    await expect(readReplayBuffer(path.join(tmp, 'nope.zarr'))).rejects.toThrow(/no replay buffer at .*nope\.zarr/);
    await expect(readReplayBuffer('')).rejects.toThrow(/non-empty string/);
  });

  it('rejects a missing .zarray naming the array', async () => {
    makeCopy();
    await expect(readReplayBuffer(tmp, { keys: ['state'] })).rejects.toThrow(/array 'data\/state' has no \.zarray/);
    unlinkSync(path.join(tmp, 'data', 'action', '.zarray'));
    await expect(readReplayBuffer(tmp, { keys: ['action'] })).rejects.toThrow(/array 'data\/action' has no \.zarray/);
  });

  it('rejects a garbage chunk naming the array and the chunk file', async () => {
    makeCopy();
    writeFileSync(chunkFile(), Buffer.alloc(300, 0xab));
    await expect(readReplayBuffer(tmp)).rejects.toThrow(/array 'data\/action': corrupt chunk file .*data\/action\/3\.0: Blosc header/);
  });

  it('rejects a truncated chunk naming the array and the chunk file', async () => {
    makeCopy();
    truncateSync(chunkFile(), 400);
    await expect(readReplayBuffer(tmp)).rejects.toThrow(
      /array 'data\/action': corrupt chunk file .*data\/action\/3\.0: Blosc header says 610 compressed bytes, file has 400/,
    );
    truncateSync(chunkFile(), 10);
    await expect(readReplayBuffer(tmp)).rejects.toThrow(/data\/action\/3\.0: 10 bytes, shorter than a Blosc header/);
  });

  it('rejects a valid chunk of the wrong size', async () => {
    makeCopy();
    // A chunk of data/state decodes to 161 x 5 values, data/action expects 161 x 2.
    writeFileSync(chunkFile(), readFileSync(path.join(ZARR, 'data', 'state', '3.0')));
    await expect(readReplayBuffer(tmp)).rejects.toThrow(
      /array 'data\/action': corrupt chunk file .*data\/action\/3\.0: Blosc header says 3220 decoded bytes, the chunk needs 1288/,
    );
  });

  it('rejects a missing chunk file', async () => {
    makeCopy();
    unlinkSync(chunkFile());
    await expect(readReplayBuffer(tmp)).rejects.toThrow(/array 'data\/action': missing chunk file .*data\/action\/3\.0/);
  });
});
