/**
 * google.protobuf.FileDescriptorProto objects built from a loaded protobufjs Root, shaped like
 * protoc's output, so that every protobuf implementation accepts them (MCAP schemas, gRPC
 * reflection).
 *
 * protobufjs' own `Root#toDescriptor` (protobufjs/ext/descriptor) is not used: it merges all
 * files of a package into one file, emits relative type names, and names map entry types after
 * the field ("Metadata") instead of protoc's "MetadataEntry", which C++/Python descriptor pools
 * reject. This module keeps one descriptor per .proto file with its imports, fully-qualified type
 * names, protoc's map entry and json_name conventions and proto3 `optional` (synthetic oneofs).
 *
 * The objects use protobufjs' camelCase property names for google/protobuf/descriptor.proto and
 * are encoded with protobufjs/ext/descriptor's FileDescriptorSet type (see registry.ts).
 */
import protobuf from 'protobufjs';

/** Parsed facts about one .proto file that the reflection tree does not keep. */
export interface ProtoFileInfo {
  /** Name relative to the proto root, '/'-separated, as used in import statements. */
  readonly name: string;
  readonly package: string;
  readonly imports: readonly string[];
}

// Plain descriptor objects (a subset of descriptor.proto, camelCase as protobufjs expects).
export interface FieldDescriptorObj {
  name: string;
  number: number;
  label: 'LABEL_OPTIONAL' | 'LABEL_REPEATED';
  type: string;
  typeName?: string;
  jsonName: string;
  oneofIndex?: number;
  proto3Optional?: boolean;
}
export interface MessageDescriptorObj {
  name: string;
  field: FieldDescriptorObj[];
  nestedType: MessageDescriptorObj[];
  enumType: EnumDescriptorObj[];
  oneofDecl: { name: string }[];
  reservedRange: { start: number; end: number }[];
  reservedName: string[];
  options?: { mapEntry: boolean };
}
export interface EnumDescriptorObj {
  name: string;
  value: { name: string; number: number }[];
  reservedRange: { start: number; end: number }[];
  reservedName: string[];
  options?: { allowAlias: boolean };
}
export interface ServiceDescriptorObj {
  name: string;
  method: {
    name: string;
    inputType: string;
    outputType: string;
    clientStreaming: boolean;
    serverStreaming: boolean;
  }[];
}
export interface FileDescriptorObj {
  name: string;
  package: string;
  dependency: string[];
  messageType: MessageDescriptorObj[];
  enumType: EnumDescriptorObj[];
  service: ServiceDescriptorObj[];
  syntax: 'proto3';
}

/** Well-known types bundled with protobufjs carry no file name; these are their protoc files. */
const WELL_KNOWN_FILES: Record<string, string> = {
  '.google.protobuf.Any': 'google/protobuf/any.proto',
  '.google.protobuf.Duration': 'google/protobuf/duration.proto',
  '.google.protobuf.Empty': 'google/protobuf/empty.proto',
  '.google.protobuf.FieldMask': 'google/protobuf/field_mask.proto',
  '.google.protobuf.Struct': 'google/protobuf/struct.proto',
  '.google.protobuf.Value': 'google/protobuf/struct.proto',
  '.google.protobuf.ListValue': 'google/protobuf/struct.proto',
  '.google.protobuf.NullValue': 'google/protobuf/struct.proto',
  '.google.protobuf.Timestamp': 'google/protobuf/timestamp.proto',
  '.google.protobuf.DoubleValue': 'google/protobuf/wrappers.proto',
  '.google.protobuf.FloatValue': 'google/protobuf/wrappers.proto',
  '.google.protobuf.Int64Value': 'google/protobuf/wrappers.proto',
  '.google.protobuf.UInt64Value': 'google/protobuf/wrappers.proto',
  '.google.protobuf.Int32Value': 'google/protobuf/wrappers.proto',
  '.google.protobuf.UInt32Value': 'google/protobuf/wrappers.proto',
  '.google.protobuf.BoolValue': 'google/protobuf/wrappers.proto',
  '.google.protobuf.StringValue': 'google/protobuf/wrappers.proto',
  '.google.protobuf.BytesValue': 'google/protobuf/wrappers.proto',
};

const SCALAR_TYPES: Record<string, string> = {
  double: 'TYPE_DOUBLE',
  float: 'TYPE_FLOAT',
  int64: 'TYPE_INT64',
  uint64: 'TYPE_UINT64',
  int32: 'TYPE_INT32',
  fixed64: 'TYPE_FIXED64',
  fixed32: 'TYPE_FIXED32',
  bool: 'TYPE_BOOL',
  string: 'TYPE_STRING',
  bytes: 'TYPE_BYTES',
  uint32: 'TYPE_UINT32',
  sfixed32: 'TYPE_SFIXED32',
  sfixed64: 'TYPE_SFIXED64',
  sint32: 'TYPE_SINT32',
  sint64: 'TYPE_SINT64',
};

/** protoc's ToJsonName: drop underscores, upper-case the letter after each. */
export function jsonName(protoName: string): string {
  let out = '';
  let upper = false;
  for (const c of protoName) {
    if (c === '_') upper = true;
    else {
      out += upper ? c.toUpperCase() : c;
      upper = false;
    }
  }
  return out;
}

/** protoc's map entry type name: `tensors` -> `TensorsEntry`, `foo_bar` -> `FooBarEntry`. */
function mapEntryName(protoName: string): string {
  const camel = jsonName(protoName);
  return camel.charAt(0).toUpperCase() + camel.slice(1) + 'Entry';
}

/** Fully-qualified name with the leading dot, as descriptors spell type references. */
function qualified(obj: protobuf.ReflectionObject): string {
  const full = obj.fullName;
  return full.startsWith('.') ? full : `.${full}`;
}

/** File an object was declared in, relative to the proto root. */
export function fileOf(obj: protobuf.ReflectionObject, relName: (abs: string) => string): string {
  if (obj.filename) return relName(obj.filename);
  const wk = WELL_KNOWN_FILES[qualified(obj)];
  if (wk) return wk;
  throw new Error(`cannot tell which .proto file declares ${qualified(obj)}`);
}

function protoNameOf(field: protobuf.Field): string {
  // With keepCase: false protobufjs camel-cases `name` and keeps the declared name in protoName.
  const withProto = field as protobuf.Field & { protoName?: string };
  return withProto.protoName ?? field.name;
}

function scalarOrRef(field: protobuf.Field, typeName: string, resolved: protobuf.Type | protobuf.Enum | null) {
  const scalar = SCALAR_TYPES[typeName];
  if (scalar) return { type: scalar };
  if (resolved instanceof protobuf.Type) return { type: 'TYPE_MESSAGE', typeName: qualified(resolved) };
  if (resolved instanceof protobuf.Enum) return { type: 'TYPE_ENUM', typeName: qualified(resolved) };
  throw new Error(`${field.fullName}: unresolved type '${typeName}'`);
}

function reserved(list: (number[] | string)[] | undefined, inclusiveEnd: boolean) {
  const ranges: { start: number; end: number }[] = [];
  const names: string[] = [];
  for (const r of list ?? []) {
    if (typeof r === 'string') names.push(r);
    else ranges.push({ start: r[0]!, end: inclusiveEnd ? r[1]! : r[1]! + 1 });
  }
  return { ranges, names };
}

function enumDescriptor(e: protobuf.Enum): EnumDescriptorObj {
  const value = Object.entries(e.values).map(([name, number]) => ({ name, number }));
  const numbers = new Set(value.map((v) => v.number));
  // protobufjs keeps enum reserved ranges as declared (inclusive); EnumReservedRange is inclusive.
  const { ranges, names } = reserved(e.reserved, true);
  const out: EnumDescriptorObj = { name: e.name, value, reservedRange: ranges, reservedName: names };
  if (numbers.size !== value.length) out.options = { allowAlias: true };
  return out;
}

function messageDescriptor(type: protobuf.Type): MessageDescriptorObj {
  // Real oneofs first, then one synthetic oneof per proto3 `optional` field (descriptor.proto
  // requires synthetic oneofs to come last).
  const realOneofs: protobuf.OneOf[] = [];
  const synthetic: protobuf.OneOf[] = [];
  for (const o of type.oneofsArray) {
    const only = o.fieldsArray.length === 1 ? o.fieldsArray[0] : undefined;
    if (only?.options?.['proto3_optional'] === true) synthetic.push(o);
    else realOneofs.push(o);
  }
  const oneofs = [...realOneofs, ...synthetic];

  const nestedType: MessageDescriptorObj[] = [];
  const enumType: EnumDescriptorObj[] = [];
  const field: FieldDescriptorObj[] = [];
  for (const f of type.fieldsArray) {
    f.resolve();
    const protoName = protoNameOf(f);
    const base = { name: protoName, number: f.id, jsonName: jsonName(protoName) };
    if (f instanceof protobuf.MapField) {
      const entryName = mapEntryName(protoName);
      nestedType.push({
        name: entryName,
        field: [
          { name: 'key', number: 1, label: 'LABEL_OPTIONAL', jsonName: 'key', ...scalarOrRef(f, f.keyType, null) },
          {
            name: 'value',
            number: 2,
            label: 'LABEL_OPTIONAL',
            jsonName: 'value',
            ...scalarOrRef(f, f.type, f.resolvedType),
          },
        ],
        nestedType: [],
        enumType: [],
        oneofDecl: [],
        reservedRange: [],
        reservedName: [],
        options: { mapEntry: true },
      });
      field.push({ ...base, label: 'LABEL_REPEATED', type: 'TYPE_MESSAGE', typeName: `${qualified(type)}.${entryName}` });
      continue;
    }
    const out: FieldDescriptorObj = {
      ...base,
      label: f.repeated ? 'LABEL_REPEATED' : 'LABEL_OPTIONAL',
      ...scalarOrRef(f, f.type, f.resolvedType),
    };
    if (f.partOf) {
      out.oneofIndex = oneofs.indexOf(f.partOf);
      if (synthetic.includes(f.partOf)) out.proto3Optional = true;
    }
    field.push(out);
  }
  for (const nested of type.nestedArray) {
    if (nested instanceof protobuf.Type) nestedType.push(messageDescriptor(nested));
    else if (nested instanceof protobuf.Enum) enumType.push(enumDescriptor(nested));
  }
  // Message reserved ranges are inclusive in protobufjs and end-exclusive in descriptor.proto.
  const { ranges, names } = reserved(type.reserved, false);
  return {
    name: type.name,
    field,
    nestedType,
    enumType,
    oneofDecl: oneofs.map((o) => ({ name: o.name })),
    reservedRange: ranges,
    reservedName: names,
  };
}

function serviceDescriptor(s: protobuf.Service): ServiceDescriptorObj {
  return {
    name: s.name,
    method: s.methodsArray.map((m) => {
      m.resolve();
      if (!m.resolvedRequestType || !m.resolvedResponseType) {
        throw new Error(`${m.fullName}: unresolved request or response type`);
      }
      return {
        name: m.name,
        inputType: qualified(m.resolvedRequestType),
        outputType: qualified(m.resolvedResponseType),
        clientStreaming: m.requestStream === true,
        serverStreaming: m.responseStream === true,
      };
    }),
  };
}

/**
 * One FileDescriptorProto per file declaring top-level types in `root`, keyed by file name.
 * `files` supplies package and imports (which protobufjs reflection does not record);
 * `relName` maps protobufjs' absolute file names to names relative to the proto root.
 */
export function buildFileDescriptors(
  root: protobuf.Root,
  files: ReadonlyMap<string, ProtoFileInfo>,
  relName: (abs: string) => string,
): Map<string, FileDescriptorObj> {
  const out = new Map<string, FileDescriptorObj>();
  const fileNamed = (name: string): FileDescriptorObj => {
    let fd = out.get(name);
    if (!fd) {
      const info = files.get(name);
      const pkg = info?.package ?? (name.startsWith('google/protobuf/') ? 'google.protobuf' : '');
      fd = {
        name,
        package: pkg,
        dependency: [...(info?.imports ?? [])],
        messageType: [],
        enumType: [],
        service: [],
        syntax: 'proto3',
      };
      out.set(name, fd);
    }
    return fd;
  };
  // Every loaded file gets a descriptor, even one declaring nothing.
  for (const name of files.keys()) fileNamed(name);
  const fileFor = (obj: protobuf.ReflectionObject): FileDescriptorObj => fileNamed(fileOf(obj, relName));
  const walk = (ns: protobuf.Namespace): void => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) fileFor(obj).messageType.push(messageDescriptor(obj));
      else if (obj instanceof protobuf.Enum) fileFor(obj).enumType.push(enumDescriptor(obj));
      else if (obj instanceof protobuf.Service) fileFor(obj).service.push(serviceDescriptor(obj));
      else if (obj instanceof protobuf.Namespace) walk(obj);
    }
  };
  walk(root);
  return out;
}

/** `name` and its transitive dependencies, dependencies first. */
export function dependencyClosure(name: string, files: ReadonlyMap<string, FileDescriptorObj>): FileDescriptorObj[] {
  const ordered: FileDescriptorObj[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, from: string | null): void => {
    const s = state.get(n);
    if (s === 'done') return;
    if (s === 'visiting') throw new Error(`import cycle through ${n}`);
    const fd = files.get(n);
    if (!fd) throw new Error(`${from ?? 'descriptor set'}: imported file ${n} is not loaded`);
    state.set(n, 'visiting');
    for (const dep of fd.dependency) visit(dep, n);
    state.set(n, 'done');
    ordered.push(fd);
  };
  visit(name, null);
  return ordered;
}
