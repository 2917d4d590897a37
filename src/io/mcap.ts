/**
 * MCAP recordings of protobuf messages (https://mcap.dev), written and read with @mcap/core.
 *
 * Every channel carries messages of one type from the repository's proto/ files: the schema
 * record has encoding 'protobuf', name = the fully-qualified message type and data = a serialized
 * google.protobuf.FileDescriptorSet of the declaring file and its imports, so Foxglove and the
 * mcap CLI/libraries decode every field without access to this repository. Chunks are written
 * uncompressed (no zstd/lz4 dependency); files are indexed, so readers can seek by topic and time.
 *
 * Recording: `const rec = new McapRecorder(); await rec.open(path); await rec.write(topic, type,
 * obj, logTimeNs); await rec.close();`. A file is only complete (footer and index written) after
 * close(); reading an unfinished or truncated file fails with an McapError saying so.
 */
import { open as fsOpen, stat, type FileHandle } from 'node:fs/promises';
import { McapIndexedReader, McapWriter, type IWritable, type McapTypes } from '@mcap/core';
import { protoRegistry, ProtoError, type ProtoRegistry } from '../proto/registry.js';
import { DataError } from '../util/validate.js';

/** A failure to write or read an MCAP file; the message names the file and the cause. */
export class McapError extends DataError {
  constructor(message: string) {
    super(message);
    this.name = 'McapError';
  }
}

const MCAP_MAGIC = new Uint8Array([0x89, 0x4d, 0x43, 0x41, 0x50, 0x30, 0x0d, 0x0a]); // "\x89MCAP0\r\n"
const UINT64_MAX = 2n ** 64n - 1n;
const SCHEMA_ENCODING = 'protobuf';
const MESSAGE_ENCODING = 'protobuf';

function toTimeNs(what: string, t: bigint | number): bigint {
  if (typeof t === 'number') {
    if (!Number.isSafeInteger(t)) throw new McapError(`${what}: expected an integer nanosecond time, received ${t}`);
    t = BigInt(t);
  } else if (typeof t !== 'bigint') {
    throw new McapError(`${what}: expected a bigint or integer nanosecond time, received ${typeof t}`);
  }
  if (t < 0n || t > UINT64_MAX) throw new McapError(`${what}: time ${t} ns is outside [0, 2^64 - 1]`);
  return t;
}

/** IWritable over a node:fs file handle, tracking the write position. */
class FileWritable implements IWritable {
  #pos = 0n;
  constructor(private readonly fh: FileHandle) {}

  async write(buffer: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buffer.length) {
      const { bytesWritten } = await this.fh.write(buffer, off, buffer.length - off);
      off += bytesWritten;
    }
    this.#pos += BigInt(buffer.length);
  }

  position(): bigint {
    return this.#pos;
  }
}

/** IReadable over a node:fs file handle. */
class FileReadable implements McapTypes.IReadable {
  constructor(
    private readonly fh: FileHandle,
    private readonly fileSize: bigint,
  ) {}

  async size(): Promise<bigint> {
    return this.fileSize;
  }

  async read(offset: bigint, size: bigint): Promise<Uint8Array> {
    if (offset < 0n || size < 0n || offset + size > this.fileSize) {
      throw new Error(`read of ${size} bytes at offset ${offset} is past the end of the ${this.fileSize}-byte file`);
    }
    const n = Number(size);
    const buf = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await this.fh.read(buf, done, n - done, Number(offset) + done);
      if (bytesRead === 0) throw new Error(`unexpected end of file at offset ${Number(offset) + done}`);
      done += bytesRead;
    }
    return buf;
  }
}

export interface McapRecorderOptions {
  /** Registry resolving type names (default: the repository's proto/ directory). */
  registry?: ProtoRegistry;
  /** Target uncompressed chunk size in bytes (default 1 MiB). */
  chunkSize?: number;
  /** MCAP header profile (default '': protobuf has no well-known profile). */
  profile?: string;
  /** MCAP header library string (default 'scoreflow'). */
  library?: string;
}

interface ChannelEntry {
  id: number;
  typeName: string;
  sequence: number;
}

/**
 * Writes protobuf messages to an MCAP file. Calls may be issued without awaiting each one: they
 * are applied in call order (McapWriter itself requires strictly sequential calls).
 */
export class McapRecorder {
  readonly #registry: ProtoRegistry;
  readonly #opts: McapRecorderOptions;
  #fh: FileHandle | null = null;
  #writer: McapWriter | null = null;
  #path = '';
  #state: 'new' | 'open' | 'closed' | 'failed' = 'new';
  #failure: Error | null = null;
  /** Tail of the operation queue. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly #schemas = new Map<string, number>();
  readonly #channels = new Map<string, ChannelEntry>();
  #messageCount = 0;

  constructor(opts: McapRecorderOptions = {}) {
    this.#registry = opts.registry ?? protoRegistry();
    this.#opts = opts;
    if (opts.chunkSize !== undefined && (!Number.isInteger(opts.chunkSize) || opts.chunkSize <= 0)) {
      throw new McapError(`McapRecorder: chunkSize must be a positive integer, received ${opts.chunkSize}`);
    }
  }

  /** Path of the open (or last) file. */
  get path(): string {
    return this.#path;
  }

  /** Messages written so far. */
  get messageCount(): number {
    return this.#messageCount;
  }

  /**
   * Run `op` after every earlier operation. Any failure inside an operation poisons the recorder
   * (the file may be inconsistent); validation errors are thrown before enqueueing and don't.
   */
  #enqueue<T>(op: (writer: McapWriter) => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      if (this.#state === 'failed') {
        throw new McapError(`McapRecorder(${this.#path}): an earlier operation failed: ${this.#failure?.message}`);
      }
      try {
        return await op(this.#writer!);
      } catch (e) {
        this.#state = 'failed';
        this.#failure = e as Error;
        throw e instanceof McapError ? e : new McapError(`McapRecorder(${this.#path}): ${(e as Error).message}`);
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #checkOpen(what: string): void {
    if (this.#state === 'new') throw new McapError(`McapRecorder.${what}: call open(path) first`);
    if (this.#state === 'closed') throw new McapError(`McapRecorder.${what}: recorder for ${this.#path} is closed`);
    if (this.#state === 'failed') throw new McapError(`McapRecorder.${what}: an earlier operation on ${this.#path} failed: ${this.#failure?.message}`);
  }

  /** Create (or truncate) `path` and write the MCAP header. */
  async open(path: string): Promise<void> {
    if (this.#state !== 'new') throw new McapError(`McapRecorder.open: already opened (${this.#path}); use a new recorder per file`);
    if (typeof path !== 'string' || path.length === 0) throw new McapError('McapRecorder.open: path must be a non-empty string');
    this.#path = path;
    this.#state = 'open';
    await this.#enqueue(async () => {
      try {
        this.#fh = await fsOpen(path, 'w');
      } catch (e) {
        throw new McapError(`McapRecorder: cannot create ${path}: ${(e as Error).message}`);
      }
      this.#writer = new McapWriter({ writable: new FileWritable(this.#fh), chunkSize: this.#opts.chunkSize });
      await this.#writer.start({ profile: this.#opts.profile ?? '', library: this.#opts.library ?? 'scoreflow' });
    });
  }

  /**
   * The channel entry for `topic`, declaring it on first use: the schema and channel records are
   * queued (not awaited), so operations stay in call order; `entry.id` is valid inside any
   * operation queued afterwards.
   */
  #channelFor(topic: string, typeName: string, metadata: Record<string, string> | undefined): ChannelEntry {
    const existing = this.#channels.get(topic);
    if (existing) {
      if (existing.typeName !== typeName) {
        throw new McapError(`McapRecorder: topic '${topic}' carries ${existing.typeName}, not ${typeName}`);
      }
      return existing;
    }
    let fds: Uint8Array;
    let fullName: string;
    try {
      fullName = this.#registry.messageType(typeName).fullName.replace(/^\./, '');
      fds = this.#registry.fileDescriptorSet(fullName);
    } catch (e) {
      throw new McapError(`McapRecorder: topic '${topic}': ${(e as Error).message}`);
    }
    if (fullName !== typeName) throw new McapError(`McapRecorder: topic '${topic}': use the fully-qualified type name '${fullName}'`);
    for (const [k, v] of Object.entries(metadata ?? {})) {
      if (typeof v !== 'string') throw new McapError(`McapRecorder: topic '${topic}': metadata '${k}' must be a string`);
    }
    const entry: ChannelEntry = { id: -1, typeName, sequence: 0 };
    this.#channels.set(topic, entry);
    this.#enqueue(async (writer) => {
      let schemaId = this.#schemas.get(typeName);
      if (schemaId === undefined) {
        schemaId = await writer.registerSchema({ name: typeName, encoding: SCHEMA_ENCODING, data: fds });
        this.#schemas.set(typeName, schemaId);
      }
      entry.id = await writer.registerChannel({
        schemaId,
        topic,
        messageEncoding: MESSAGE_ENCODING,
        metadata: new Map(Object.entries(metadata ?? {})),
      });
    }).catch(() => undefined); // recorded in #failure; surfaces on the next operation
    return entry;
  }

  /**
   * Declare a channel and return its id (optional: write() declares channels on first use). Lets
   * a file list a topic even when no message is written to it, and attaches channel metadata.
   */
  async channel(topic: string, typeName: string, metadata?: Record<string, string>): Promise<number> {
    this.#checkOpen('channel');
    if (typeof topic !== 'string' || topic.length === 0) throw new McapError('McapRecorder.channel: topic must be a non-empty string');
    const entry = this.#channelFor(topic, typeName, metadata);
    return this.#enqueue(async () => entry.id);
  }

  /**
   * Encode `obj` as `typeName` and append it to `topic` at `logTimeNs` (nanoseconds, bigint or
   * safe integer; `publishTimeNs` defaults to it). Invalid messages reject without touching the
   * file.
   */
  async write(topic: string, typeName: string, obj: object, logTimeNs: bigint | number, publishTimeNs?: bigint | number): Promise<void> {
    this.#checkOpen('write');
    if (typeof topic !== 'string' || topic.length === 0) throw new McapError('McapRecorder.write: topic must be a non-empty string');
    const logTime = toTimeNs(`McapRecorder.write(${topic}) logTimeNs`, logTimeNs);
    const publishTime = publishTimeNs === undefined ? logTime : toTimeNs(`McapRecorder.write(${topic}) publishTimeNs`, publishTimeNs);
    let data: Uint8Array;
    try {
      data = this.#registry.encode(typeName, obj);
    } catch (e) {
      if (e instanceof ProtoError) throw new McapError(`McapRecorder.write(${topic}): ${e.message}`);
      throw e;
    }
    const entry = this.#channelFor(topic, typeName, undefined);
    await this.#enqueue(async (writer) => {
      const sequence = entry.sequence;
      entry.sequence = (entry.sequence + 1) >>> 0;
      await writer.addMessage({ channelId: entry.id, sequence, logTime, publishTime, data });
      this.#messageCount++;
    });
  }

  /** Write an MCAP Metadata record (string key/values, e.g. dataset parameters). */
  async metadata(name: string, values: Record<string, string>): Promise<void> {
    this.#checkOpen('metadata');
    if (typeof name !== 'string') throw new McapError('McapRecorder.metadata: name must be a string');
    for (const [k, v] of Object.entries(values)) {
      if (typeof v !== 'string') throw new McapError(`McapRecorder.metadata(${name}): value of '${k}' must be a string, received ${typeof v}`);
    }
    const map = new Map(Object.entries(values));
    await this.#enqueue((writer) => writer.addMetadata({ name, metadata: map }));
  }

  /**
   * Write the index and footer and close the file. Safe to call twice and before open(). After a
   * failed operation the file is closed without a footer (readers report it as truncated).
   */
  async close(): Promise<void> {
    if (this.#state === 'new' || this.#state === 'closed') return;
    await this.#queue;
    const fh = this.#fh;
    const finish = this.#state === 'open' && this.#writer !== null;
    const writer = this.#writer;
    this.#state = 'closed';
    this.#fh = null;
    this.#writer = null;
    try {
      if (finish) await writer!.end();
    } catch (e) {
      throw new McapError(`McapRecorder(${this.#path}): finishing the file failed: ${(e as Error).message}`);
    } finally {
      await fh?.close();
    }
  }
}

/** One decoded message of an MCAP file. */
export interface McapMessage<T = Record<string, unknown>> {
  topic: string;
  /** Fully-qualified protobuf type of the channel's schema. */
  schemaName: string;
  logTime: bigint;
  publishTime: bigint;
  /** Per-channel sequence number assigned by the writer. */
  sequence: number;
  message: T;
}

export interface McapChannelInfo {
  id: number;
  topic: string;
  schemaName: string;
  schemaEncoding: string;
  messageEncoding: string;
  metadata: Record<string, string>;
}

export interface ReadMcapOptions {
  /** Only these topics (default: all). */
  topics?: readonly string[];
  /** Inclusive log-time bounds in nanoseconds. */
  startTime?: bigint;
  endTime?: bigint;
  /** Registry decoding the messages (default: the repository's proto/ directory). */
  registry?: ProtoRegistry;
}

async function openForRead(path: string): Promise<{ fh: FileHandle; size: bigint }> {
  if (typeof path !== 'string' || path.length === 0) throw new McapError('readMcap: path must be a non-empty string');
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new McapError(`readMcap: ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof McapError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new McapError(`readMcap: file not found: ${path}`);
    throw new McapError(`readMcap: cannot access ${path}: ${(e as Error).message}`);
  }
  const fh = await fsOpen(path, 'r');
  try {
    const head = new Uint8Array(MCAP_MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead < head.length || !head.every((b, i) => b === MCAP_MAGIC[i])) {
      throw new McapError(`readMcap: ${path} is not an MCAP file (it does not start with the MCAP magic bytes)`);
    }
    const tail = new Uint8Array(MCAP_MAGIC.length);
    const tailRead = size >= 2 * MCAP_MAGIC.length ? (await fh.read(tail, 0, tail.length, size - tail.length)).bytesRead : 0;
    if (tailRead < tail.length || !tail.every((b, i) => b === MCAP_MAGIC[i])) {
      throw new McapError(
        `readMcap: ${path} is truncated or unfinished (${size} bytes, no MCAP footer magic at the end): the writer was interrupted or never closed`,
      );
    }
  } catch (e) {
    await fh.close();
    throw e;
  }
  return { fh, size: BigInt(size) };
}

/** An open MCAP file: channels, metadata and decoded messages. Close it when done. */
export class McapReader {
  readonly path: string;
  readonly #fh: FileHandle;
  readonly #reader: McapIndexedReader;
  readonly #registry: ProtoRegistry;
  #closed = false;

  private constructor(path: string, fh: FileHandle, reader: McapIndexedReader, registry: ProtoRegistry) {
    this.path = path;
    this.#fh = fh;
    this.#reader = reader;
    this.#registry = registry;
  }

  /** Open and index `path`; throws McapError for a missing, non-MCAP, truncated or corrupt file. */
  static async open(path: string, opts: { registry?: ProtoRegistry } = {}): Promise<McapReader> {
    const registry = opts.registry ?? protoRegistry();
    const { fh, size } = await openForRead(path);
    try {
      const reader = await McapIndexedReader.Initialize({ readable: new FileReadable(fh, size) });
      return new McapReader(path, fh, reader, registry);
    } catch (e) {
      await fh.close();
      throw new McapError(`readMcap: ${path} is corrupt or truncated: ${(e as Error).message}`);
    }
  }

  get channels(): McapChannelInfo[] {
    return [...this.#reader.channelsById.values()].map((c) => {
      const schema = this.#reader.schemasById.get(c.schemaId);
      return {
        id: c.id,
        topic: c.topic,
        schemaName: schema?.name ?? '',
        schemaEncoding: schema?.encoding ?? '',
        messageEncoding: c.messageEncoding,
        metadata: Object.fromEntries(c.metadata),
      };
    });
  }

  /** Message count from the file's statistics record, when present. */
  get messageCount(): bigint | undefined {
    return this.#reader.statistics?.messageCount;
  }

  /** Metadata records (optionally only those called `name`), in file order. */
  async metadata(name?: string): Promise<{ name: string; metadata: Record<string, string> }[]> {
    this.#checkOpen();
    const out: { name: string; metadata: Record<string, string> }[] = [];
    try {
      for await (const m of this.#reader.readMetadata(name === undefined ? {} : { name })) {
        out.push({ name: m.name, metadata: Object.fromEntries(m.metadata) });
      }
    } catch (e) {
      throw new McapError(`readMcap: ${this.path}: reading metadata failed: ${(e as Error).message}`);
    }
    return out;
  }

  #checkOpen(): void {
    if (this.#closed) throw new McapError(`McapReader: ${this.path} is closed`);
  }

  /** Check every channel that `topics` selects can be decoded with the registry. */
  #checkChannels(topics: readonly string[] | undefined): void {
    for (const c of this.#reader.channelsById.values()) {
      if (topics && !topics.includes(c.topic)) continue;
      const where = `readMcap: ${this.path}: topic '${c.topic}'`;
      const schema = this.#reader.schemasById.get(c.schemaId);
      if (!schema) throw new McapError(`${where} has no schema (schema id ${c.schemaId})`);
      if (schema.encoding !== SCHEMA_ENCODING) throw new McapError(`${where}: schema encoding '${schema.encoding}' is not supported (only 'protobuf')`);
      if (c.messageEncoding !== MESSAGE_ENCODING) {
        throw new McapError(`${where}: message encoding '${c.messageEncoding}' is not supported (only 'protobuf')`);
      }
      try {
        this.#registry.messageType(schema.name);
      } catch {
        throw new McapError(`${where}: unknown schema '${schema.name}'; known types: ${this.#registry.messageTypeNames().join(', ')}`);
      }
    }
  }

  /** Decoded messages in log-time order. */
  async *messages<T = Record<string, unknown>>(opts: Omit<ReadMcapOptions, 'registry'> = {}): AsyncGenerator<McapMessage<T>, void, void> {
    this.#checkOpen();
    this.#checkChannels(opts.topics);
    const args: Parameters<McapIndexedReader['readMessages']>[0] = { validateCrcs: true };
    if (opts.topics) args.topics = opts.topics;
    if (opts.startTime !== undefined) args.startTime = opts.startTime;
    if (opts.endTime !== undefined) args.endTime = opts.endTime;
    const iter = this.#reader.readMessages(args);
    while (true) {
      let next: IteratorResult<McapTypes.TypedMcapRecords['Message'], void>;
      try {
        next = await iter.next();
      } catch (e) {
        throw new McapError(`readMcap: ${this.path} is corrupt: ${(e as Error).message}`);
      }
      if (next.done) return;
      const rec = next.value;
      const channel = this.#reader.channelsById.get(rec.channelId);
      const schema = channel && this.#reader.schemasById.get(channel.schemaId);
      if (!channel || !schema) throw new McapError(`readMcap: ${this.path}: message on unknown channel id ${rec.channelId}`);
      let message: T;
      try {
        message = this.#registry.decode(schema.name, rec.data) as T;
      } catch (e) {
        throw new McapError(`readMcap: ${this.path}: topic '${channel.topic}' at log time ${rec.logTime}: ${(e as Error).message}`);
      }
      yield { topic: channel.topic, schemaName: schema.name, logTime: rec.logTime, publishTime: rec.publishTime, sequence: rec.sequence, message };
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#fh.close();
  }
}

/**
 * Decoded messages of an MCAP file in log-time order; the file is closed when iteration ends or
 * is abandoned (break/return). Throws McapError for a missing, non-MCAP, truncated or corrupt
 * file and for channels whose schema the registry doesn't know.
 */
export async function* readMcap<T = Record<string, unknown>>(path: string, opts: ReadMcapOptions = {}): AsyncGenerator<McapMessage<T>, void, void> {
  const reader = await McapReader.open(path, opts.registry ? { registry: opts.registry } : {});
  try {
    yield* reader.messages<T>(opts);
  } finally {
    await reader.close();
  }
}
