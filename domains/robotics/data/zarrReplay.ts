/**
 * Reader for Diffusion Policy's zarr v2 replay buffer (e.g. `pusht_cchi_v7_replay.zarr`).
 *
 * Layout: `data/<key>` arrays of shape [numSteps, ...] holding every episode back to back, and
 * `meta/episode_ends` (int64, exclusive end index of each episode). Chunks are decoded by
 * zarrita with the Blosc codec from numcodecs; this module only adds a node-fs store, reads the
 * arrays chunk by chunk and turns every failure into an error naming the array and chunk file.
 *
 * Corruption detection: a missing chunk file, a Blosc frame whose size disagrees with its header
 * (truncated or garbage files) or a chunk decoding to the wrong number of values is an error.
 * A frame with an intact header but a damaged payload cannot be detected: Blosc 1 frames carry no
 * checksum and the numcodecs decoder does not report failures.
 */
import { promises as fs } from 'node:fs';
import * as nodePath from 'node:path';
import * as zarr from 'zarrita';
import { DataError, fail } from '../../../src/util/validate.js';

export interface ReplayArray {
  /** Row-major values (converted to float32). */
  readonly data: Float32Array;
  readonly shape: number[];
}

export interface ReplayBuffer {
  /** Exclusive end index of each episode, strictly increasing. */
  readonly episodeEnds: number[];
  readonly arrays: Record<string, ReplayArray>;
  readonly numEpisodes: number;
  readonly numSteps: number;
  /** Step range [start, end) of episode i. */
  episode(i: number): { start: number; end: number };
}

export interface ReadReplayOptions {
  /** Array names under `data/` to load (default: every array there). */
  readonly keys?: readonly string[];
}

/** Minimal read-only zarrita store over a directory (zarrita's AsyncReadable contract). */
class NodeFsStore {
  constructor(private readonly root: string) {}

  async get(key: string): Promise<Uint8Array | undefined> {
    const file = nodePath.join(this.root, ...key.split('/').filter((p) => p.length > 0));
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}

interface ZarrayMeta {
  shape: number[];
  chunks: number[];
  dtype: string;
  compressor: { id?: string } | null;
  filters: unknown[] | null;
  dimension_separator?: string;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readZarrayMeta(root: string, name: string): Promise<ZarrayMeta> {
  const file = nodePath.join(root, name, '.zarray');
  if (!(await isFile(file))) {
    throw new DataError(`zarr replay buffer: array '${name}' has no .zarray metadata (expected ${file})`);
  }
  let meta: unknown;
  try {
    meta = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (err) {
    throw new DataError(`zarr replay buffer: array '${name}': cannot parse ${file}: ${(err as Error).message}`);
  }
  const m = meta as Partial<ZarrayMeta> & { zarr_format?: number };
  const dimsOk = (v: unknown): v is number[] =>
    Array.isArray(v) && v.every((d) => Number.isInteger(d) && d >= 0);
  if (
    m.zarr_format !== 2 ||
    !dimsOk(m.shape) ||
    !dimsOk(m.chunks) ||
    m.shape.length !== m.chunks.length ||
    typeof m.dtype !== 'string'
  ) {
    throw new DataError(`zarr replay buffer: array '${name}': ${file} is not valid zarr v2 array metadata`);
  }
  if (!/^[<>|=][fiu]\d+$/.test(m.dtype)) {
    throw new DataError(`zarr replay buffer: array '${name}': unsupported dtype '${m.dtype}' (numeric arrays only)`);
  }
  if (m.chunks.some((c) => c === 0)) {
    throw new DataError(`zarr replay buffer: array '${name}': zero chunk size in ${file}`);
  }
  return m as ZarrayMeta;
}

/** Read one array fully, chunk by chunk, into a row-major array (float64 keeps int64 indices exact). */
async function readArray<T extends Float32Array | Float64Array>(
  store: NodeFsStore,
  root: string,
  name: string,
  alloc: (n: number) => T,
): Promise<{ data: T; shape: number[] }> {
  const meta = await readZarrayMeta(root, name);
  let arr: zarr.Array<zarr.DataType, NodeFsStore>;
  try {
    arr = await zarr.open.v2(zarr.root(store).resolve(name), { kind: 'array', attrs: false });
  } catch (err) {
    throw new DataError(`zarr replay buffer: cannot open array '${name}': ${(err as Error).message}`);
  }
  const { shape, chunks } = meta;
  const sep = meta.dimension_separator ?? '.';
  const total = shape.reduce((a, b) => a * b, 1);
  const out = alloc(total);
  const chunkSize = chunks.reduce((a, b) => a * b, 1);
  const grid = shape.map((s, d) => Math.ceil(s / chunks[d]));
  const numChunks = grid.reduce((a, b) => a * b, 1);

  for (let c = 0; c < numChunks; c++) {
    // Chunk grid coordinates of chunk c (row-major over the grid).
    const coords = new Array<number>(grid.length);
    for (let d = grid.length - 1, rest = c; d >= 0; d--) {
      coords[d] = rest % grid[d];
      rest = Math.floor(rest / grid[d]);
    }
    const chunkFile = nodePath.join(root, name, coords.join(sep));
    const bytes = await store.get(`/${name}/${coords.join(sep)}`);
    if (!bytes) throw new DataError(`zarr replay buffer: array '${name}': missing chunk file ${chunkFile}`);
    if (meta.compressor?.id === 'blosc') {
      const problem = bloscHeaderProblem(bytes, meta.filters ? null : chunkSize * itemSize(meta.dtype));
      if (problem) throw new DataError(`zarr replay buffer: array '${name}': corrupt chunk file ${chunkFile}: ${problem}`);
    }
    let values: ArrayLike<number | bigint>;
    try {
      const chunk = await arr.getChunk(coords);
      values = chunk.data as ArrayLike<number | bigint>;
    } catch (err) {
      const cause = (err as Error).cause instanceof Error ? `: ${((err as Error).cause as Error).message}` : '';
      throw new DataError(
        `zarr replay buffer: array '${name}': cannot decode chunk file ${chunkFile} (${(err as Error).message}${cause})`,
      );
    }
    if (values.length !== chunkSize) {
      throw new DataError(
        `zarr replay buffer: array '${name}': chunk file ${chunkFile} decoded to ${values.length} values, expected ${chunkSize}`,
      );
    }
    copyChunk(values, chunks, coords, shape, out);
  }
  return { data: out, shape: [...shape] };
}

/** Bytes per element of a numpy dtype string such as '<f4' or '<i8' (NaN when unknown). */
function itemSize(dtype: string): number {
  const m = /^[<>|=][a-zA-Z](\d+)$/.exec(dtype);
  return m ? Number(m[1]) : NaN;
}

/**
 * Check a Blosc frame's 16-byte header against the file: the numcodecs decoder returns garbage
 * rather than failing on a truncated frame. Header: version, versionlz, flags, typesize, then
 * little-endian uint32 nbytes (decoded size), blocksize and cbytes (frame size).
 */
function bloscHeaderProblem(bytes: Uint8Array, expectedNbytes: number | null): string | null {
  if (bytes.length < 16) return `${bytes.length} bytes, shorter than a Blosc header (16 bytes)`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nbytes = view.getUint32(4, true);
  const cbytes = view.getUint32(12, true);
  if (cbytes !== bytes.length) return `Blosc header says ${cbytes} compressed bytes, file has ${bytes.length}`;
  if (expectedNbytes !== null && Number.isFinite(expectedNbytes) && nbytes !== expectedNbytes) {
    return `Blosc header says ${nbytes} decoded bytes, the chunk needs ${expectedNbytes}`;
  }
  return null;
}

/** Copy a full (possibly edge-padded) chunk into the row-major output, skipping the padding. */
function copyChunk(
  values: ArrayLike<number | bigint>,
  chunks: number[],
  coords: number[],
  shape: number[],
  out: Float32Array | Float64Array,
): void {
  const nd = shape.length;
  const origin = coords.map((k, d) => k * chunks[d]);
  const extent = origin.map((o, d) => Math.min(chunks[d], shape[d] - o));
  const outStrides = new Array<number>(nd);
  const inStrides = new Array<number>(nd);
  for (let d = nd - 1, so = 1, si = 1; d >= 0; d--) {
    outStrides[d] = so;
    inStrides[d] = si;
    so *= shape[d];
    si *= chunks[d];
  }
  const count = extent.reduce((a, b) => a * b, 1);
  const idx = new Array<number>(nd).fill(0);
  for (let n = 0; n < count; n++) {
    let o = 0;
    let i = 0;
    for (let d = 0; d < nd; d++) {
      o += (origin[d] + idx[d]) * outStrides[d];
      i += idx[d] * inStrides[d];
    }
    out[o] = Number(values[i]);
    for (let d = nd - 1; d >= 0; d--) {
      if (++idx[d] < extent[d]) break;
      idx[d] = 0;
    }
  }
}

async function listDataKeys(root: string): Promise<string[]> {
  const dir = nodePath.join(root, 'data');
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const keys: string[] = [];
  for (const e of entries) {
    if (e.isDirectory() && (await isFile(nodePath.join(dir, e.name, '.zarray')))) keys.push(e.name);
  }
  return keys.sort();
}

function validateEpisodeEnds(ends: number[]): void {
  let prev = 0;
  for (let i = 0; i < ends.length; i++) {
    if (!Number.isInteger(ends[i]) || ends[i] <= prev) {
      throw new DataError(
        `zarr replay buffer: meta/episode_ends must be strictly increasing positive integers; entry ${i} is ${ends[i]} after ${prev}`,
      );
    }
    prev = ends[i];
  }
}

/** Read a Diffusion Policy replay buffer from a zarr v2 directory. */
export async function readReplayBuffer(path: string, opts: ReadReplayOptions = {}): Promise<ReplayBuffer> {
  if (typeof path !== 'string' || path.length === 0) {
    fail(`readReplayBuffer: path must be a non-empty string, received ${String(path)}`);
  }
  const root = nodePath.resolve(path);
  let rootStat;
  try {
    rootStat = await fs.stat(root);
  } catch {
    throw new DataError(`readReplayBuffer: no replay buffer at ${root} (path does not exist)`);
  }
  if (!rootStat.isDirectory()) throw new DataError(`readReplayBuffer: ${root} is not a directory`);
  const badKey = (k: unknown): boolean => typeof k !== 'string' || !/^[^/\\]+$/.test(k) || k === '.' || k === '..';
  if (opts.keys !== undefined && (!Array.isArray(opts.keys) || opts.keys.some(badKey))) {
    fail(`readReplayBuffer: opts.keys must be array names under data/, received ${JSON.stringify(opts.keys)}`);
  }

  const store = new NodeFsStore(root);
  const keys = opts.keys ? [...opts.keys] : await listDataKeys(root);
  const endsArray = await readArray(store, root, 'meta/episode_ends', (n) => new Float64Array(n));
  if (endsArray.shape.length !== 1) {
    throw new DataError(`zarr replay buffer: meta/episode_ends must be 1-D, has shape [${endsArray.shape.join(', ')}]`);
  }
  const episodeEnds = Array.from(endsArray.data);
  validateEpisodeEnds(episodeEnds);
  const numSteps = episodeEnds.length > 0 ? episodeEnds[episodeEnds.length - 1] : 0;

  const arrays: Record<string, ReplayArray> = {};
  for (const key of keys) {
    const a = await readArray(store, root, `data/${key}`, (n) => new Float32Array(n));
    if (a.shape[0] !== numSteps) {
      throw new DataError(
        `zarr replay buffer: data/${key} has ${a.shape[0]} rows but meta/episode_ends ends at ${numSteps}`,
      );
    }
    arrays[key] = a;
  }

  const numEpisodes = episodeEnds.length;
  return {
    episodeEnds,
    arrays,
    numEpisodes,
    numSteps,
    episode(i: number) {
      if (!Number.isInteger(i) || i < 0 || i >= numEpisodes) {
        fail(`ReplayBuffer.episode: index must be an integer in [0, ${numEpisodes}), received ${i}`);
      }
      return { start: i === 0 ? 0 : episodeEnds[i - 1], end: episodeEnds[i] };
    },
  };
}
