/**
 * Runtime protobuf codec for the repository's `proto/*.proto` files.
 *
 * The .proto files are parsed at run time with protobufjs (no generated code, no protoc): the
 * directory is found by walking up from this module's file to the first `proto/` directory that
 * holds `tensor.proto`, which works from `src/proto/` under tsx/vitest and from
 * `dist/src/proto/` in the published package (which ships `proto/` at its root).
 *
 * Conventions (see messages.ts for the typed shapes):
 * - field names are lowerCamelCase in JavaScript (protobufjs `keepCase: false`), and keep their
 *   declared snake_case names in descriptors;
 * - `encode` checks every field before encoding, so a typo'd field name, a bigint in a double, a
 *   negative uint64 or an unknown enum name is an error naming the field path instead of being
 *   dropped or silently wrapped (protobufjs alone ignores unknown keys and mis-encodes bigints);
 * - `decode` returns plain objects with defaults filled in, 64-bit integers as bigint and enums
 *   as value names.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as nodePath from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import descriptorExt from 'protobufjs/ext/descriptor.js';
import {
  buildFileDescriptors,
  dependencyClosure,
  fileOf,
  type FileDescriptorObj,
  type ProtoFileInfo,
} from './descriptor.js';
import type { ProtoMessages, ProtoTypeName } from './messages.js';
import { DataError } from '../util/validate.js';

/** Failure to load, encode or decode a protobuf message; the message names the type and field. */
export class ProtoError extends DataError {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoError';
  }
}

/** A `proto/` directory is recognised by this file. */
const MARKER_FILE = 'tensor.proto';

/**
 * The repository's `proto/` directory: the first `<ancestor>/proto` containing tensor.proto,
 * walking up from this module's directory.
 */
export function defaultProtoDir(): string {
  let dir = nodePath.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = nodePath.join(dir, 'proto');
    try {
      if (statSync(nodePath.join(candidate, MARKER_FILE)).isFile()) return candidate;
    } catch {
      // not here, keep walking up
    }
    const parent = nodePath.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new ProtoError(
    `cannot find the scoreflow proto/ directory (with ${MARKER_FILE}) above ${fileURLToPath(import.meta.url)}`,
  );
}

/** .proto files under `dir`, relative '/'-separated names, sorted. */
function listProtoFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(nodePath.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(name);
      else if (entry.isFile() && entry.name.endsWith('.proto')) out.push(name);
    }
  };
  walk('');
  return out.sort();
}

const PROTO3_RE = /^\s*syntax\s*=\s*["']proto3["']\s*;/m;

/** protobufjs toObject options giving the shapes documented in messages.ts. */
const TO_OBJECT: protobuf.IConversionOptions = {
  longs: BigInt,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const UNSIGNED_64 = new Set(['uint64', 'fixed64']);
const SIGNED_64 = new Set(['int64', 'sint64', 'sfixed64']);
const SIGNED_32 = new Set(['int32', 'sint32', 'sfixed32']);
const UNSIGNED_32 = new Set(['uint32', 'fixed32']);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (typeof v === 'bigint') return `bigint ${v}`;
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'null prototype'})`;
  return `${typeof v} ${String(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  // Plain objects, null-prototype objects and protobufjs message instances.
  return proto === null || proto === Object.prototype || v instanceof protobuf.Message;
}

/** A Long-like value protobufjs' writer and verifier accept for any 64-bit field. */
interface LongBitsLike {
  low: number;
  high: number;
  unsigned: boolean;
}

function toInt64(v: unknown, type: string, path: string): number | LongBitsLike {
  const unsigned = UNSIGNED_64.has(type);
  let big: bigint;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) {
      throw new ProtoError(`${path}: expected an integer for ${type} (a safe-integer number or a bigint), received ${describe(v)}`);
    }
    big = BigInt(v);
  } else if (typeof v === 'bigint') {
    big = v;
  } else if (typeof v === 'string' && /^-?\d+$/.test(v)) {
    big = BigInt(v);
  } else if (typeof v === 'object' && v !== null && Number.isInteger((v as LongBitsLike).low) && Number.isInteger((v as LongBitsLike).high)) {
    const l = v as LongBitsLike;
    const bits = (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
    big = l.unsigned ? bits : BigInt.asIntN(64, bits);
  } else {
    throw new ProtoError(`${path}: expected an integer for ${type} (bigint, safe-integer number or decimal string), received ${describe(v)}`);
  }
  const [min, max] = unsigned ? [0n, UINT64_MAX] : [INT64_MIN, INT64_MAX];
  if (big < min || big > max) throw new ProtoError(`${path}: ${big} is out of range for ${type} [${min}, ${max}]`);
  if (typeof v === 'number') return v;
  const bits = BigInt.asUintN(64, big);
  return { low: Number(bits & 0xffffffffn) | 0, high: Number(bits >> 32n) | 0, unsigned };
}

function toScalar(v: unknown, type: string, path: string): unknown {
  if (SIGNED_64.has(type) || UNSIGNED_64.has(type)) return toInt64(v, type, path);
  switch (type) {
    case 'double':
    case 'float':
      if (typeof v !== 'number') throw new ProtoError(`${path}: expected a number for ${type}, received ${describe(v)}`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw new ProtoError(`${path}: expected a boolean, received ${describe(v)}`);
      return v;
    case 'string':
      if (typeof v !== 'string') throw new ProtoError(`${path}: expected a string, received ${describe(v)}`);
      return v;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw new ProtoError(`${path}: expected a Uint8Array for bytes, received ${describe(v)}`);
      return v;
    default: {
      const [min, max] = SIGNED_32.has(type) ? [INT32_MIN, INT32_MAX] : UNSIGNED_32.has(type) ? [0, UINT32_MAX] : [NaN, NaN];
      if (Number.isNaN(min)) throw new ProtoError(`${path}: unsupported scalar type ${type}`);
      if (typeof v !== 'number' || !Number.isInteger(v)) {
        throw new ProtoError(`${path}: expected an integer for ${type}, received ${describe(v)}`);
      }
      if (v < min || v > max) throw new ProtoError(`${path}: ${v} is out of range for ${type} [${min}, ${max}]`);
      return v;
    }
  }
}

function toEnum(v: unknown, e: protobuf.Enum, path: string): number {
  if (typeof v === 'string') {
    const n = e.values[v];
    if (n === undefined) {
      throw new ProtoError(`${path}: unknown ${e.fullName.replace(/^\./, '')} value ${JSON.stringify(v)} (known: ${Object.keys(e.values).join(', ')})`);
    }
    return n;
  }
  if (typeof v === 'number' && Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX) return v;
  throw new ProtoError(`${path}: expected a ${e.fullName.replace(/^\./, '')} value name or int32, received ${describe(v)}`);
}

function toMapKey(k: string, keyType: string, path: string): string {
  if (keyType === 'string') return k;
  if (keyType === 'bool') throw new ProtoError(`${path}: map<bool, ...> keys are not supported`);
  if (!/^-?\d+$/.test(k)) throw new ProtoError(`${path}: map key ${JSON.stringify(k)} is not an integer for key type ${keyType}`);
  const big = BigInt(k);
  const unsigned = UNSIGNED_64.has(keyType) || UNSIGNED_32.has(keyType);
  const wide = UNSIGNED_64.has(keyType) || SIGNED_64.has(keyType);
  const max = wide ? (unsigned ? UINT64_MAX : INT64_MAX) : unsigned ? BigInt(UINT32_MAX) : BigInt(INT32_MAX);
  const min = unsigned ? 0n : wide ? INT64_MIN : BigInt(INT32_MIN);
  if (big < min || big > max) throw new ProtoError(`${path}: map key ${k} is out of range for ${keyType}`);
  return k;
}

function toValue(field: protobuf.Field, typeName: string, v: unknown, path: string, depth: number): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return normalizeMessage(resolved, v, path, depth + 1);
  if (resolved instanceof protobuf.Enum) return toEnum(v, resolved, path);
  return toScalar(v, typeName, path);
}

const MAX_DEPTH = 64;

/**
 * Check `value` against `type` and return a plain object protobufjs' encoder handles exactly:
 * 64-bit integers as numbers or {low, high}, enums as numbers, repeated fields as arrays.
 */
function normalizeMessage(type: protobuf.Type, value: unknown, path: string, depth = 0): Record<string, unknown> {
  const typeName = type.fullName.replace(/^\./, '');
  if (depth > MAX_DEPTH) throw new ProtoError(`${path}: message nesting deeper than ${MAX_DEPTH}`);
  if (!isPlainObject(value)) throw new ProtoError(`${path}: expected a plain object for ${typeName}, received ${describe(value)}`);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (v === undefined || v === null) continue;
    const field = type.fields[key];
    if (!field) {
      const bySnake = type.fieldsArray.find((f) => (f as protobuf.Field & { protoName?: string }).protoName === key);
      const hint = bySnake ? ` (did you mean '${bySnake.name}'? fields are camelCase)` : '';
      throw new ProtoError(
        `${path}: unknown field '${key}' for ${typeName}${hint}; known fields: ${type.fieldsArray.map((f) => f.name).join(', ')}`,
      );
    }
    field.resolve();
    const fpath = `${path}.${key}`;
    if (field instanceof protobuf.MapField) {
      if (!isPlainObject(v)) throw new ProtoError(`${fpath}: expected a plain object for map<${field.keyType}, ${field.type}>, received ${describe(v)}`);
      const m: Record<string, unknown> = {};
      for (const k of Object.keys(v)) {
        const item = v[k];
        const kpath = `${fpath}[${JSON.stringify(k)}]`;
        if (item === undefined || item === null) throw new ProtoError(`${kpath}: map values can't be ${String(item)}`);
        m[toMapKey(k, field.keyType, kpath)] = toValue(field, field.type, item, kpath, depth);
      }
      out[key] = m;
    } else if (field.repeated) {
      const isList = Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
      if (!isList) throw new ProtoError(`${fpath}: expected an array for repeated ${field.type}, received ${describe(v)}`);
      const list = v as ArrayLike<unknown>;
      const arr = new Array<unknown>(list.length);
      for (let i = 0; i < list.length; i++) {
        arr[i] = toValue(field, field.type, list[i], `${fpath}[${i}]`, depth);
      }
      out[key] = arr;
    } else {
      out[key] = toValue(field, field.type, v, fpath, depth);
    }
  }
  return out;
}

/** The same memory as a plain Uint8Array (protobufjs produces and prefers Node Buffers). */
function plainBytes(b: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Registry of the message types declared in one directory of .proto files. */
export class ProtoRegistry {
  /** Absolute path of the proto root. */
  readonly protoDir: string;
  /** Parsed files, relative names, sorted. */
  readonly files: readonly string[];
  readonly root: protobuf.Root;
  readonly #types = new Map<string, protobuf.Type>();
  readonly #fileInfo = new Map<string, ProtoFileInfo>();
  #descriptors: Map<string, FileDescriptorObj> | undefined;
  readonly #fdsCache = new Map<string, Uint8Array>();

  private constructor(protoDir: string) {
    this.protoDir = nodePath.resolve(protoDir);
    let files: string[];
    try {
      files = listProtoFiles(this.protoDir);
    } catch (e) {
      throw new ProtoError(`cannot list .proto files in ${this.protoDir}: ${(e as Error).message}`);
    }
    if (files.length === 0) throw new ProtoError(`no .proto files in ${this.protoDir}`);
    this.files = files;
    for (const name of files) {
      const source = readFileSync(nodePath.join(this.protoDir, name), 'utf8');
      if (!PROTO3_RE.test(source)) throw new ProtoError(`${name}: only proto3 files are supported (syntax = "proto3";)`);
      let parsed: protobuf.IParserResult;
      try {
        parsed = protobuf.parse(source, { keepCase: false });
      } catch (e) {
        throw new ProtoError(`${name}: ${(e as Error).message}`);
      }
      this.#fileInfo.set(name, { name, package: parsed.package ?? '', imports: parsed.imports ?? [] });
    }
    const root = new protobuf.Root();
    // Imports resolve against the proto root, as with `protoc -I proto`.
    const dir = this.protoDir;
    root.resolvePath = (_origin: string, target: string) => (nodePath.isAbsolute(target) ? target : nodePath.join(dir, target));
    try {
      root.loadSync(files.map((f) => nodePath.join(this.protoDir, f)), { keepCase: false });
      root.resolveAll();
    } catch (e) {
      throw new ProtoError(`failed to load .proto files from ${this.protoDir}: ${(e as Error).message}`);
    }
    this.root = root;
    const collect = (ns: protobuf.NamespaceBase): void => {
      for (const obj of ns.nestedArray) {
        if (obj instanceof protobuf.Type) this.#types.set(obj.fullName.replace(/^\./, ''), obj);
        if (obj instanceof protobuf.Namespace) collect(obj);
      }
    };
    collect(root);
  }

  /** Parse every .proto file under `protoDir` (recursively). */
  static load(protoDir: string): ProtoRegistry {
    return new ProtoRegistry(protoDir);
  }

  /** Fully-qualified names of every message type (nested ones included), sorted. */
  messageTypeNames(): string[] {
    return [...this.#types.keys()].sort();
  }

  /** The protobufjs Type for a fully-qualified name like 'scoreflow.v1.Episode' (leading dot optional). */
  messageType(name: string): protobuf.Type {
    if (typeof name !== 'string') throw new ProtoError(`messageType: expected a type name string, received ${describe(name)}`);
    const t = this.#types.get(name.replace(/^\./, ''));
    if (!t) {
      throw new ProtoError(`unknown message type '${name}'; known types: ${this.messageTypeNames().join(', ')}`);
    }
    return t;
  }

  /** Check `obj` field by field and encode it; throws ProtoError naming the offending field. */
  encode<N extends ProtoTypeName>(typeName: N, obj: ProtoMessages[N]['init']): Uint8Array;
  encode(typeName: string, obj: object): Uint8Array;
  encode(typeName: string, obj: object): Uint8Array {
    const type = this.messageType(typeName);
    const shortName = type.fullName.replace(/^\./, '');
    const normalized = normalizeMessage(type, obj, shortName);
    const problem = type.verify(normalized);
    if (problem) throw new ProtoError(`${shortName}: ${problem}`);
    return plainBytes(type.encode(normalized).finish());
  }

  /** Decode wire bytes into a plain object (see messages.ts); throws ProtoError on malformed input. */
  decode<N extends ProtoTypeName>(typeName: N, bytes: Uint8Array): ProtoMessages[N]['decoded'];
  decode(typeName: string, bytes: Uint8Array): Record<string, unknown>;
  decode(typeName: string, bytes: Uint8Array): unknown {
    const type = this.messageType(typeName);
    const shortName = type.fullName.replace(/^\./, '');
    if (!(bytes instanceof Uint8Array)) throw new ProtoError(`decode ${shortName}: expected a Uint8Array, received ${describe(bytes)}`);
    let msg: protobuf.Message;
    try {
      // A plain Uint8Array makes protobufjs return bytes fields as plain subarrays, not Buffers.
      msg = type.decode(plainBytes(bytes));
    } catch (e) {
      throw new ProtoError(`decode ${shortName}: malformed or truncated message (${bytes.length} bytes): ${(e as Error).message}`);
    }
    return type.toObject(msg, TO_OBJECT);
  }

  /** FileDescriptorProto objects of every loaded file (plus bundled well-known types), keyed by file name. */
  fileDescriptors(): ReadonlyMap<string, FileDescriptorObj> {
    if (!this.#descriptors) {
      const relName = (abs: string): string => nodePath.relative(this.protoDir, abs).split(nodePath.sep).join('/');
      try {
        this.#descriptors = buildFileDescriptors(this.root, this.#fileInfo, relName);
      } catch (e) {
        throw new ProtoError(`cannot build descriptors for ${this.protoDir}: ${(e as Error).message}`);
      }
    }
    return this.#descriptors;
  }

  /**
   * A serialized google.protobuf.FileDescriptorSet, dependencies before dependents. With a type
   * name: the file declaring it and its transitive imports (what an MCAP 'protobuf' schema or a
   * gRPC reflection answer carries); without: every loaded file.
   */
  fileDescriptorSet(typeName?: string): Uint8Array {
    const key = typeName === undefined ? '*' : this.messageType(typeName).fullName;
    const hit = this.#fdsCache.get(key);
    if (hit) return hit;
    const all = this.fileDescriptors();
    let files: FileDescriptorObj[];
    try {
      if (typeName === undefined) {
        const seen = new Set<string>();
        files = [];
        for (const name of all.keys()) {
          for (const fd of dependencyClosure(name, all)) {
            if (!seen.has(fd.name)) {
              seen.add(fd.name);
              files.push(fd);
            }
          }
        }
      } else {
        const relName = (abs: string): string => nodePath.relative(this.protoDir, abs).split(nodePath.sep).join('/');
        files = dependencyClosure(fileOf(this.messageType(typeName), relName), all);
      }
    } catch (e) {
      throw new ProtoError(`fileDescriptorSet: ${(e as Error).message}`);
    }
    const FDS = descriptorExt.FileDescriptorSet;
    const bytes = plainBytes(FDS.encode(FDS.fromObject({ file: files })).finish());
    this.#fdsCache.set(key, bytes);
    return bytes;
  }
}

let defaultRegistry: ProtoRegistry | undefined;

/** The registry of the repository's proto/ directory, loaded once and cached. */
export function protoRegistry(): ProtoRegistry {
  defaultRegistry ??= ProtoRegistry.load(defaultProtoDir());
  return defaultRegistry;
}

/** `protoRegistry().messageType(name)`. */
export function messageType(name: string): protobuf.Type {
  return protoRegistry().messageType(name);
}

/** `protoRegistry().encode(typeName, obj)`. */
export function encode<N extends ProtoTypeName>(typeName: N, obj: ProtoMessages[N]['init']): Uint8Array;
export function encode(typeName: string, obj: object): Uint8Array;
export function encode(typeName: string, obj: object): Uint8Array {
  return protoRegistry().encode(typeName, obj);
}

/** `protoRegistry().decode(typeName, bytes)`. */
export function decode<N extends ProtoTypeName>(typeName: N, bytes: Uint8Array): ProtoMessages[N]['decoded'];
export function decode(typeName: string, bytes: Uint8Array): Record<string, unknown>;
export function decode(typeName: string, bytes: Uint8Array): unknown {
  return protoRegistry().decode(typeName, bytes);
}

/** `protoRegistry().fileDescriptorSet(typeName)`. */
export function fileDescriptorSet(typeName?: string): Uint8Array {
  return protoRegistry().fileDescriptorSet(typeName);
}
