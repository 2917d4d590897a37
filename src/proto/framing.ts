/**
 * Length-delimited framing for protobuf message streams: each frame is the payload length as a
 * base-128 varint followed by the payload (the format of protobufjs `encodeDelimited`, Java
 * `writeDelimitedTo` and C++ `SerializeDelimitedToOstream`).
 *
 * `FrameReader` is incremental: push chunks as they arrive, cut anywhere (even inside the
 * length prefix), and it returns every completed frame. A frame's declared length is checked
 * against `maxFrameBytes` as soon as its prefix is read, so the reader holds at most one frame
 * (pre-allocated at its declared size) plus a 10-byte prefix, whatever the input. After a framing
 * error the stream can't be resynchronised and the reader rejects further input.
 */

/** Malformed or oversized frame stream. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/** Default frame size limit: 64 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** Largest limit accepted (largest length a 32-bit varint reader anywhere will take). */
const MAX_LIMIT = 2 ** 31 - 1;
/** A varint of a 64-bit value has at most 10 bytes. */
const MAX_VARINT_BYTES = 10;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    out[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[pos++] = n;
  return pos;
}

function checkLimit(maxFrameBytes: number): number {
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 0 || maxFrameBytes > MAX_LIMIT) {
    throw new FrameError(`maxFrameBytes must be an integer in [0, ${MAX_LIMIT}], received ${maxFrameBytes}`);
  }
  return maxFrameBytes;
}

/** `payload` with its varint length prefix. */
export function encodeFrame(payload: Uint8Array, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  if (!(payload instanceof Uint8Array)) throw new FrameError('encodeFrame: payload must be a Uint8Array');
  if (payload.length > checkLimit(maxFrameBytes)) {
    throw new FrameError(`encodeFrame: payload of ${payload.length} bytes exceeds the ${maxFrameBytes}-byte frame limit`);
  }
  const out = new Uint8Array(varintSize(payload.length) + payload.length);
  out.set(payload, writeVarint(out, 0, payload.length));
  return out;
}

/** Several payloads framed back to back in one buffer. */
export function encodeFrames(payloads: readonly Uint8Array[], maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  checkLimit(maxFrameBytes);
  let total = 0;
  for (const p of payloads) {
    if (!(p instanceof Uint8Array)) throw new FrameError('encodeFrames: every payload must be a Uint8Array');
    if (p.length > maxFrameBytes) throw new FrameError(`encodeFrames: payload of ${p.length} bytes exceeds the ${maxFrameBytes}-byte frame limit`);
    total += varintSize(p.length) + p.length;
  }
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of payloads) {
    pos = writeVarint(out, pos, p.length);
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export interface FrameReaderOptions {
  /** Largest accepted payload in bytes (default 64 MiB); a longer declared length is an error. */
  maxFrameBytes?: number;
}

/** Incremental decoder of a varint-length-delimited frame stream. */
export class FrameReader {
  readonly maxFrameBytes: number;
  /** Length prefix being read: accumulated value, and bytes read so far (0 = between frames). */
  #lenValue = 0;
  #lenBytes = 0;
  /** Payload being filled (allocated at the declared length once the prefix is complete). */
  #body: Uint8Array | null = null;
  #filled = 0;
  /** Bytes consumed so far, for error messages. */
  #offset = 0;
  #error: FrameError | null = null;

  constructor(opts: FrameReaderOptions = {}) {
    this.maxFrameBytes = checkLimit(opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  }

  /** Bytes held for an incomplete frame (at most maxFrameBytes). */
  get bufferedBytes(): number {
    return this.#filled;
  }

  /** True when the input so far ends exactly on a frame boundary. */
  get atBoundary(): boolean {
    return this.#lenBytes === 0 && this.#body === null;
  }

  #fail(message: string): never {
    this.#error = new FrameError(message);
    this.#body = null;
    throw this.#error;
  }

  /** The framing error that stopped this reader, if any. */
  get error(): FrameError | null {
    return this.#error;
  }

  /**
   * Consume a chunk and return the frames it completes, in order. Each returned payload is a
   * fresh copy (it does not alias `chunk`, which the caller may reuse).
   *
   * A framing error throws, unless frames before it in the same chunk were complete: then those
   * frames are returned and the error is left in `error` (the next `push` throws it), so a
   * peer's good requests are not lost because a bad one arrived in the same read.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.#error) throw new FrameError(`reader failed earlier and can't resynchronise: ${this.#error.message}`);
    if (!(chunk instanceof Uint8Array)) this.#fail('push: chunk must be a Uint8Array');
    const frames: Uint8Array[] = [];
    try {
      this.#consume(chunk, frames);
    } catch (err) {
      if (frames.length > 0 && err === this.#error) return frames;
      throw err;
    }
    return frames;
  }

  #consume(chunk: Uint8Array, frames: Uint8Array[]): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.#body === null) {
        // Reading the length prefix, possibly continued from an earlier chunk.
        const b = chunk[pos++]!;
        this.#offset++;
        this.#lenValue += (b & 0x7f) * 2 ** (7 * this.#lenBytes);
        this.#lenBytes++;
        if (this.#lenValue > this.maxFrameBytes) {
          this.#fail(
            `frame at byte ${this.#offset - this.#lenBytes} declares ${b & 0x80 ? 'at least ' : ''}${this.#lenValue} bytes, over the ${this.maxFrameBytes}-byte limit`,
          );
        }
        if (b & 0x80) {
          if (this.#lenBytes >= MAX_VARINT_BYTES) this.#fail(`malformed length prefix ending at byte ${this.#offset}: varint longer than ${MAX_VARINT_BYTES} bytes`);
          continue;
        }
        const len = this.#lenValue;
        this.#lenValue = 0;
        this.#lenBytes = 0;
        if (end - pos >= len) {
          // Whole payload in this chunk.
          frames.push(chunk.slice(pos, pos + len));
          pos += len;
          this.#offset += len;
        } else {
          this.#body = new Uint8Array(len);
          this.#filled = 0;
        }
      } else {
        const take = Math.min(this.#body.length - this.#filled, end - pos);
        this.#body.set(chunk.subarray(pos, pos + take), this.#filled);
        this.#filled += take;
        pos += take;
        this.#offset += take;
        if (this.#filled === this.#body.length) {
          frames.push(this.#body);
          this.#body = null;
          this.#filled = 0;
        }
      }
    }
  }

  /** Declare end of input; throws when it stops inside a frame. */
  end(): void {
    if (this.#error) throw new FrameError(`reader failed earlier: ${this.#error.message}`);
    if (this.#lenBytes > 0) this.#fail(`stream ended inside a length prefix at byte ${this.#offset}`);
    if (this.#body !== null) {
      this.#fail(`stream ended inside a frame: ${this.#filled} of ${this.#body.length} payload bytes received`);
    }
  }
}

/** Frames of an async byte stream (e.g. a Node Readable or a fetch body); checks the stream ends on a frame boundary. */
export async function* readFrames(source: AsyncIterable<Uint8Array>, opts: FrameReaderOptions = {}): AsyncGenerator<Uint8Array, void, void> {
  const reader = new FrameReader(opts);
  for await (const chunk of source) {
    for (const frame of reader.push(chunk)) yield frame;
  }
  reader.end();
}
