/**
 * A strict reader of the proto3 JSON mapping, driven by protobufjs descriptors.
 *
 * protobufjs' own fromObject silently drops keys it does not know, so a misspelt Envoy field would
 * decode "fine" and configure nothing. This walk rejects every key that is not a field of the
 * message (by its proto name: Envoy config is snake_case), every value of the wrong kind, two
 * members of one oneof, unknown enum names and unknown Any type URLs, and recurses into Any
 * payloads, maps and repeated fields. Its output is the object protobufjs' fromObject expects for a
 * keepCase root, with every Any already encoded, so it can be encoded and decoded for real.
 */
import protobuf from 'protobufjs';

export class StrictJsonError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
    this.name = 'StrictJsonError';
  }
}

type Obj = Record<string, unknown>;

const WRAPPERS: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

const INT32 = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32 = new Set(['uint32', 'fixed32']);
const INT64 = new Set(['int64', 'sint64', 'sfixed64']);
const UINT64 = new Set(['uint64', 'fixed64']);

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads `json` as message `typeName` of `root`; throws StrictJsonError naming the path. */
export function strictFromJson(root: protobuf.Root, typeName: string, json: unknown): Obj {
  const type = root.lookupType(typeName);
  return readMessage(root, type, json, '$') as Obj;
}

/** Strict read, then a real encode and decode with `root`; returns the wire bytes. */
export function encodeStrict(root: protobuf.Root, typeName: string, json: unknown): Uint8Array {
  const type = root.lookupType(typeName);
  const obj = readMessage(root, type, json, '$') as Obj;
  const bytes = type.encode(type.fromObject(obj)).finish();
  const again = type.encode(type.decode(bytes)).finish();
  if (Buffer.compare(Buffer.from(bytes), Buffer.from(again)) !== 0) {
    throw new StrictJsonError('$', `${typeName} does not survive a decode/encode round trip`);
  }
  return bytes;
}

function readMessage(
  root: protobuf.Root,
  type: protobuf.Type,
  json: unknown,
  path: string,
): unknown {
  type.resolveAll();
  const full = type.fullName;
  if (full === '.google.protobuf.Any') return readAny(root, json, path);
  if (full === '.google.protobuf.Duration') return readDuration(json, path);
  if (full === '.google.protobuf.Struct') return readStruct(json, path);
  if (full === '.google.protobuf.Value') return readValue(json, path);
  if (full === '.google.protobuf.ListValue') {
    if (!Array.isArray(json)) throw new StrictJsonError(path, 'expected an array (ListValue)');
    return { values: json.map((v, i) => readValue(v, `${path}[${i}]`)) };
  }
  if (full === '.google.protobuf.Empty') {
    if (!isObject(json) || Object.keys(json).length > 0) {
      throw new StrictJsonError(path, 'expected {} (Empty)');
    }
    return {};
  }
  if (full === '.google.protobuf.Timestamp' || full === '.google.protobuf.FieldMask') {
    throw new StrictJsonError(path, `${full.slice(1)} is not supported by this reader`);
  }
  const wrapped = WRAPPERS[full];
  if (wrapped !== undefined) return { value: readScalar(wrapped, json, path) };

  if (!isObject(json)) throw new StrictJsonError(path, `expected an object (${full.slice(1)})`);
  const out: Obj = {};
  const oneofSeen = new Map<string, string>();
  for (const [key, value] of Object.entries(json)) {
    const at = `${path}.${key}`;
    const field = type.fields[key];
    if (!field) throw new StrictJsonError(at, `unknown field of ${full.slice(1)}`);
    if (value === null) throw new StrictJsonError(at, 'null is not allowed here');
    const oneof = field.partOf;
    if (oneof && !oneof.isProto3Optional) {
      const other = oneofSeen.get(oneof.name);
      if (other !== undefined) {
        throw new StrictJsonError(at, `oneof ${oneof.name} already has ${other}`);
      }
      oneofSeen.set(oneof.name, key);
    }
    out[key] = readField(root, field, value, at);
  }
  return out;
}

function readField(
  root: protobuf.Root,
  field: protobuf.Field,
  value: unknown,
  path: string,
): unknown {
  field.resolve();
  if (field instanceof protobuf.MapField) {
    if (!isObject(value)) throw new StrictJsonError(path, 'expected an object (map)');
    const out: Obj = {};
    for (const [k, v] of Object.entries(value)) {
      const at = `${path}[${JSON.stringify(k)}]`;
      checkMapKey(field.keyType, k, at);
      if (v === null) throw new StrictJsonError(at, 'null is not allowed here');
      out[k] = readSingle(root, field, v, at);
    }
    return out;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) throw new StrictJsonError(path, 'expected an array');
    return value.map((v, i) => {
      if (v === null) throw new StrictJsonError(`${path}[${i}]`, 'null is not allowed here');
      return readSingle(root, field, v, `${path}[${i}]`);
    });
  }
  return readSingle(root, field, value, path);
}

function readSingle(
  root: protobuf.Root,
  field: protobuf.Field,
  value: unknown,
  path: string,
): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Type) return readMessage(root, rt, value, path);
  if (rt instanceof protobuf.Enum) return readEnum(rt, value, path);
  return readScalar(field.type, value, path);
}

function readEnum(e: protobuf.Enum, value: unknown, path: string): number {
  if (typeof value === 'string') {
    const n = e.values[value];
    if (n === undefined)
      throw new StrictJsonError(path, `"${value}" is not a value of ${e.fullName.slice(1)}`);
    return n;
  }
  if (typeof value === 'number' && Number.isInteger(value) && e.valuesById[value] !== undefined) {
    return value;
  }
  throw new StrictJsonError(path, `expected a value of ${e.fullName.slice(1)}`);
}

function checkMapKey(keyType: string, key: string, path: string): void {
  if (keyType === 'string') return;
  if (keyType === 'bool') {
    if (key !== 'true' && key !== 'false')
      throw new StrictJsonError(path, 'map key must be true or false');
    return;
  }
  if (!/^-?[0-9]+$/.test(key))
    throw new StrictJsonError(path, `map key must be an integer (${keyType})`);
}

function readScalar(type: string, value: unknown, path: string): unknown {
  const fail = (what: string): never => {
    throw new StrictJsonError(path, `expected ${what} (${type}), got ${JSON.stringify(value)}`);
  };
  switch (type) {
    case 'string':
      return typeof value === 'string' ? value : fail('a string');
    case 'bool':
      return typeof value === 'boolean' ? value : fail('a boolean');
    case 'bytes':
      if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) fail('base64');
      return value;
    case 'double':
    case 'float':
      if (typeof value === 'number') return value;
      if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return Number(value);
      if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
        return Number(value);
      }
      return fail('a number');
  }
  const text =
    typeof value === 'number' && Number.isInteger(value)
      ? String(value)
      : typeof value === 'string' && /^-?[0-9]+$/.test(value)
        ? value
        : fail('an integer');
  const n = BigInt(text);
  const range = INT32.has(type)
    ? [-(2n ** 31n), 2n ** 31n - 1n]
    : UINT32.has(type)
      ? [0n, 2n ** 32n - 1n]
      : INT64.has(type)
        ? [-(2n ** 63n), 2n ** 63n - 1n]
        : UINT64.has(type)
          ? [0n, 2n ** 64n - 1n]
          : undefined;
  if (!range) throw new StrictJsonError(path, `unsupported scalar type ${type}`);
  if (n < range[0]! || n > range[1]!) fail('an integer in range');
  return INT32.has(type) || UINT32.has(type) ? Number(n) : text;
}

function readDuration(json: unknown, path: string): Obj {
  const m = typeof json === 'string' ? /^(-)?([0-9]+)(?:\.([0-9]{1,9}))?s$/.exec(json) : null;
  if (!m)
    throw new StrictJsonError(
      path,
      `expected a duration such as "1.5s", got ${JSON.stringify(json)}`,
    );
  const sign = m[1] ? -1 : 1;
  const seconds = Number(m[2]);
  const nanos = m[3] ? Number(m[3].padEnd(9, '0')) : 0;
  if (seconds > 315_576_000_000) throw new StrictJsonError(path, 'duration out of range');
  return { seconds: sign * seconds, nanos: sign * nanos };
}

function readStruct(json: unknown, path: string): Obj {
  if (!isObject(json)) throw new StrictJsonError(path, 'expected an object (Struct)');
  const fields: Obj = {};
  for (const [k, v] of Object.entries(json)) fields[k] = readValue(v, `${path}.${k}`);
  return { fields };
}

function readValue(json: unknown, path: string): Obj {
  if (json === null) return { null_value: 0 };
  if (typeof json === 'number') {
    if (!Number.isFinite(json)) throw new StrictJsonError(path, 'Value numbers must be finite');
    return { number_value: json };
  }
  if (typeof json === 'string') return { string_value: json };
  if (typeof json === 'boolean') return { bool_value: json };
  if (Array.isArray(json))
    return { list_value: { values: json.map((v, i) => readValue(v, `${path}[${i}]`)) } };
  if (isObject(json)) return { struct_value: readStruct(json, path) };
  throw new StrictJsonError(path, `not a JSON value: ${typeof json}`);
}

/** WKTs whose JSON form is not an object: inside an Any they sit under "value". */
const SPECIAL_IN_ANY = new Set([
  '.google.protobuf.Duration',
  '.google.protobuf.Struct',
  '.google.protobuf.Value',
  '.google.protobuf.ListValue',
  '.google.protobuf.Timestamp',
  '.google.protobuf.FieldMask',
  ...Object.keys(WRAPPERS),
]);

function readAny(root: protobuf.Root, json: unknown, path: string): Obj {
  if (!isObject(json)) throw new StrictJsonError(path, 'expected an object (Any)');
  const url = json['@type'];
  if (typeof url !== 'string' || !url.includes('/')) {
    throw new StrictJsonError(
      `${path}["@type"]`,
      'an Any needs "@type": "type.googleapis.com/<message>"',
    );
  }
  const name = url.slice(url.lastIndexOf('/') + 1);
  let payloadType: protobuf.Type;
  try {
    payloadType = root.lookupType(name);
  } catch {
    throw new StrictJsonError(`${path}["@type"]`, `unknown message type ${name}`);
  }
  const rest: Obj = { ...json };
  delete rest['@type'];
  let payloadJson: unknown = rest;
  if (SPECIAL_IN_ANY.has(payloadType.fullName)) {
    const keys = Object.keys(rest);
    if (keys.length !== 1 || keys[0] !== 'value') {
      throw new StrictJsonError(path, `an Any of ${name} carries its JSON under "value" only`);
    }
    payloadJson = rest['value'];
  }
  const payload = readMessage(root, payloadType, payloadJson, `${path}<${name}>`) as Obj;
  const value = payloadType.encode(payloadType.fromObject(payload)).finish();
  return { type_url: url, value };
}
