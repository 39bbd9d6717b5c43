/**
 * The Envoy API of the release Sluice targets, from the FileDescriptorSet checked in under
 * proto/envoy-api/ (written by proto/envoy-api/gen from go-control-plane's generated packages;
 * `npm run gen:envoy-protos`). Everything that must judge config or wire messages by Envoy's own
 * definitions loads it from here: the emulator's xDS decoding, its ext_proc client, the ADS
 * client, and the strict checks of goldens and of proto/'s declarations. It ships with the
 * product (production dependencies only), unlike a snapshot inside a dev dependency.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { protoRoot } from '../../extproc/shared/proto.js';

export interface EnvoyApiInfo {
  /** The Go module the descriptors were taken from. */
  module: string;
  /** Its version, e.g. v1.40.0: the Envoy API release. */
  version: string;
  /** The message types whose closure the set holds. */
  roots: string[];
  /** Every .proto file in the set. */
  files: string[];
}

/** proto/envoy-api: the descriptor set and its description. */
export function envoyApiDir(): string {
  return join(protoRoot(), 'envoy-api');
}

let info: EnvoyApiInfo | undefined;

export function envoyApiInfo(): EnvoyApiInfo {
  info ??= JSON.parse(readFileSync(join(envoyApiDir(), 'envoy-api.json'), 'utf8')) as EnvoyApiInfo;
  return info;
}

/** The targeted Envoy release line and patch, e.g. "1.40.0". */
export function envoyRelease(): string {
  return envoyApiInfo().version.replace(/^v/, '');
}

// protobufjs' own copies of these are used instead of the set's: field names are camelCase in
// them (Struct's `stringValue`), which every other protobufjs root in the project (extproc's,
// the operator's encoder) also uses, so decoded objects mean the same thing everywhere. The wire
// format is identical.
const BUNDLED = new Set(
  ['any', 'duration', 'empty', 'field_mask', 'struct', 'timestamp', 'wrappers'].map(
    (n) => `google/protobuf/${n}.proto`,
  ),
);

// FieldDescriptorProto.Type → protobufjs type names (11 message, 14 enum: by type_name).
const SCALARS: Record<number, string> = {
  1: 'double',
  2: 'float',
  3: 'int64',
  4: 'uint64',
  5: 'int32',
  6: 'fixed64',
  7: 'fixed32',
  8: 'bool',
  9: 'string',
  12: 'bytes',
  13: 'uint32',
  15: 'sfixed32',
  16: 'sfixed64',
  17: 'sint32',
  18: 'sint64',
};
const LABEL_REPEATED = 3;
const LABEL_REQUIRED = 2;

interface FieldProto {
  name: string;
  number: number;
  label: number;
  type: number;
  typeName?: string;
  oneofIndex?: number;
  proto3Optional?: boolean;
  options?: { packed?: boolean };
}
interface MessageProto {
  name: string;
  field?: FieldProto[];
  nestedType?: MessageProto[];
  enumType?: EnumProto[];
  oneofDecl?: { name: string }[];
  options?: { mapEntry?: boolean };
}
interface EnumProto {
  name: string;
  value?: { name: string; number: number }[];
}
interface ServiceProto {
  name: string;
  method?: {
    name: string;
    inputType: string;
    outputType: string;
    clientStreaming?: boolean;
    serverStreaming?: boolean;
  }[];
}
interface FileProto {
  name: string;
  package?: string;
  syntax?: string;
  messageType?: MessageProto[];
  enumType?: EnumProto[];
  service?: ServiceProto[];
}

type Json = Record<string, unknown>;

function enumJson(e: EnumProto): Json {
  const values: Record<string, number> = {};
  for (const v of e.value ?? []) values[v.name] = v.number;
  return { values };
}

/**
 * One message in protobufjs' JSON form. protobufjs' own Root.fromDescriptor turns map fields
 * into repeated entry messages, which changes their object shape, so the set is converted here.
 */
function messageJson(m: MessageProto, fullName: string, edition: string | undefined): Json {
  const entries = new Map<string, MessageProto>();
  for (const n of m.nestedType ?? []) {
    if (n.options?.mapEntry) entries.set(`${fullName}.${n.name}`, n);
  }
  const fields: Json = {};
  const oneofs: Record<string, { oneof: string[] }> = {};
  for (const f of m.field ?? []) {
    const entry = f.typeName !== undefined ? entries.get(f.typeName) : undefined;
    const field: Json = { id: f.number };
    if (entry && f.label === LABEL_REPEATED) {
      const [key, value] = [entry.field?.[0], entry.field?.[1]];
      if (!key || !value) throw new Error(`${fullName}.${f.name}: malformed map entry`);
      field['keyType'] = SCALARS[key.type];
      field['type'] = value.typeName ?? SCALARS[value.type];
    } else {
      field['type'] = f.typeName ?? SCALARS[f.type];
      if (f.label === LABEL_REPEATED) field['rule'] = 'repeated';
      if (f.label === LABEL_REQUIRED) field['rule'] = 'required';
    }
    if (field['type'] === undefined) throw new Error(`${fullName}.${f.name}: type ${f.type}`);
    const options: Json = {};
    if (f.proto3Optional) options['proto3_optional'] = true;
    if (f.options?.packed !== undefined) options['packed'] = f.options.packed;
    if (Object.keys(options).length > 0) field['options'] = options;
    fields[f.name] = field;
    if (f.oneofIndex !== undefined) {
      const name = m.oneofDecl?.[f.oneofIndex]?.name;
      if (name === undefined) throw new Error(`${fullName}.${f.name}: oneof ${f.oneofIndex}`);
      (oneofs[name] ??= { oneof: [] }).oneof.push(f.name);
    }
  }
  const nested: Json = {};
  for (const n of m.nestedType ?? []) {
    if (!n.options?.mapEntry) nested[n.name] = messageJson(n, `${fullName}.${n.name}`, undefined);
  }
  for (const e of m.enumType ?? []) nested[e.name] = enumJson(e);
  const out: Json = { fields };
  if (Object.keys(oneofs).length > 0) out['oneofs'] = oneofs;
  if (Object.keys(nested).length > 0) out['nested'] = nested;
  if (edition) out['edition'] = edition;
  return out;
}

function namespaceFor(root: Json, pkg: string | undefined): Json {
  let ns = root;
  for (const part of pkg ? pkg.split('.') : []) {
    const nested = (ns['nested'] ??= {}) as Json;
    ns = (nested[part] ??= {}) as Json;
  }
  return ns;
}

function decodeSet(bytes: Uint8Array): FileProto[] {
  const set = descriptor.FileDescriptorSet.toObject(descriptor.FileDescriptorSet.decode(bytes), {
    longs: Number,
    enums: Number,
    defaults: false,
  }) as { file?: FileProto[] };
  return set.file ?? [];
}

function readSet(): Uint8Array {
  return readFileSync(join(envoyApiDir(), 'envoy-api.binpb'));
}

/** The descriptor set as a protobufjs JSON namespace (well-known types: protobufjs' own). */
export function descriptorSetToJson(bytes: Uint8Array): Json {
  const root: Json = {};
  for (const file of decodeSet(bytes)) {
    if (BUNDLED.has(file.name)) continue;
    // proto2 files (descriptor.proto, validate.proto): explicit presence, unpacked repeats.
    const edition = file.syntax === 'proto3' ? undefined : 'proto2';
    const ns = namespaceFor(root, file.package);
    const nested = (ns['nested'] ??= {}) as Json;
    const prefix = file.package ? `.${file.package}` : '';
    for (const m of file.messageType ?? []) {
      nested[m.name] = messageJson(m, `${prefix}.${m.name}`, edition);
    }
    for (const e of file.enumType ?? []) nested[e.name] = enumJson(e);
    for (const s of file.service ?? []) {
      const methods: Json = {};
      for (const m of s.method ?? []) {
        methods[m.name] = {
          requestType: m.inputType,
          responseType: m.outputType,
          ...(m.clientStreaming ? { requestStream: true } : {}),
          ...(m.serverStreaming ? { responseStream: true } : {}),
        };
      }
      nested[s.name] = { methods };
    }
  }
  for (const file of BUNDLED) {
    const bundled = (protobuf.common as unknown as { get(f: string): Json | null }).get(file);
    if (!bundled) throw new Error(`protobufjs does not bundle ${file}`);
    mergeInto(root, bundled);
  }
  return root;
}

function mergeInto(into: Json, from: Json): void {
  for (const [k, v] of Object.entries(from)) {
    const existing = into[k];
    if (k === 'nested' || (existing && typeof existing === 'object' && !('fields' in existing))) {
      mergeInto((into[k] ??= {}) as Json, v as Json);
    } else {
      into[k] = v;
    }
  }
}

let json: Json | undefined;

/** The targeted release's API as protobufjs JSON; build a private Root from it to extend it. */
export function envoyApiJson(): Json {
  json ??= descriptorSetToJson(readSet());
  return json;
}

/** Top-level message, enum and service names (no leading dot) → the .proto file declaring them. */
export function envoyApiDeclarationFiles(): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of decodeSet(readSet())) {
    const prefix = file.package ? `${file.package}.` : '';
    const decls = [...(file.messageType ?? []), ...(file.enumType ?? []), ...(file.service ?? [])];
    for (const d of decls) out.set(`${prefix}${d.name}`, file.name);
  }
  return out;
}

/** A fresh, resolved Root of the targeted release's API (callers may add to it). */
export function newEnvoyApiRoot(): protobuf.Root {
  const root = protobuf.Root.fromJSON(envoyApiJson());
  root.resolveAll();
  return root;
}

let shared: protobuf.Root | undefined;

/** The shared, resolved Root of the targeted release's API; do not add to it. */
export function envoyApiRoot(): protobuf.Root {
  shared ??= newEnvoyApiRoot();
  return shared;
}
