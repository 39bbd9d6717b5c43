/**
 * Encodes xDS resources given as plain objects in the proto3 JSON mapping (Envoy's snake_case
 * field names, `"@type"` on every Any, as in Envoy YAML) into google.protobuf.Any, using only the
 * messages declared in the project's proto/ tree.
 *
 * Strict on purpose: protobufjs' own fromObject drops fields it does not know, which would turn a
 * misspelt field into config that silently does something else. Here anything not declared is an
 * error naming the path, so the compilation and proto/ can never drift apart unnoticed.
 */
import { existsSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';
import { protoRoot } from '../../extproc/shared/proto.js';

/** google.protobuf.Any as protobufjs and @grpc/proto-loader carry it. */
export interface EncodedAny {
  type_url: string;
  value: Uint8Array;
}

export class EncodeError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
    this.name = 'EncodeError';
  }
}

/** Every .proto file under `dir`, relative to it, sorted. */
export function protoFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const child = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) walk(child);
      else if (e.isFile() && e.name.endsWith('.proto')) out.push(child);
    }
  };
  walk('');
  return out.sort();
}

/**
 * Loads `files` resolving imports against `includeDirs` in order, as protoc's -I does. Google's
 * well-known types come from the copies bundled in protobufjs.
 */
export function loadProtoRoot(
  includeDirs: readonly string[],
  files: readonly string[],
): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (isAbsolute(target)) return target;
    for (const dir of includeDirs) {
      const full = join(dir, target);
      if (existsSync(full)) return full;
    }
    throw new Error(`${target} not found in ${includeDirs.join(', ')}`);
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

const WRAPPERS = new Set(
  [
    'DoubleValue',
    'FloatValue',
    'Int64Value',
    'UInt64Value',
    'Int32Value',
    'UInt32Value',
    'BoolValue',
    'StringValue',
    'BytesValue',
  ].map((n) => `.google.protobuf.${n}`),
);

const INT32_RANGE: Record<string, [number, number]> = {
  int32: [-2147483648, 2147483647],
  sint32: [-2147483648, 2147483647],
  sfixed32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  fixed32: [0, 4294967295],
};
const INT64 = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);

type Json = unknown;
type Obj = Record<string, unknown>;

function isPlainObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

export class ResourceEncoder {
  private readonly types = new Map<string, protobuf.Type | null>();

  constructor(readonly root: protobuf.Root) {}

  /** An encoder for every message declared in proto/ (and in `extraDirs`, for tests). */
  static fromProtoTree(
    dir: string = protoRoot(),
    extraDirs: readonly string[] = [],
  ): ResourceEncoder {
    const dirs = [dir, ...extraDirs];
    const seen = new Set<string>();
    const files: string[] = [];
    for (const d of dirs) {
      for (const f of protoFiles(d)) {
        if (!seen.has(f)) files.push(f);
        seen.add(f);
      }
    }
    return new ResourceEncoder(loadProtoRoot(dirs, files));
  }

  /** The message a type URL names, or undefined when proto/ does not declare it. */
  messageType(typeUrl: string): protobuf.Type | undefined {
    let t = this.types.get(typeUrl);
    if (t === undefined) {
      const slash = typeUrl.lastIndexOf('/');
      const name = slash === -1 ? '' : typeUrl.slice(slash + 1);
      let found: protobuf.ReflectionObject | null;
      try {
        found = name === '' ? null : this.root.lookup(`.${name}`);
      } catch {
        found = null;
      }
      t = found instanceof protobuf.Type ? found : null;
      this.types.set(typeUrl, t);
    }
    return t ?? undefined;
  }

  /**
   * `{ "@type": url, ...fields }` → Any. Well-known types with a special JSON form carry it in
   * `value`, as the proto3 JSON mapping says (`{"@type": ".../google.protobuf.Duration", "value": "1s"}`).
   */
  encodeAny(json: Json, path = '$'): EncodedAny {
    if (!isPlainObject(json))
      throw new EncodeError(path, `expected an object with "@type", got ${describeJson(json)}`);
    const url = json['@type'];
    if (typeof url !== 'string' || !url.includes('/')) {
      throw new EncodeError(
        path,
        '"@type" must be a type URL such as type.googleapis.com/<message>',
      );
    }
    const type = this.messageType(url);
    if (!type) throw new EncodeError(path, `type ${url} is not declared in proto/`);
    const { '@type': _url, ...fields } = json;
    const special = hasSpecialJson(type);
    let obj: Obj;
    if (special) {
      const extra = Object.keys(fields).filter((k) => k !== 'value');
      if (extra.length > 0)
        throw new EncodeError(
          `${path}.${extra[0]}`,
          `unknown field in an Any holding ${type.fullName.slice(1)} (only "value")`,
        );
      obj = this.message(type, fields['value'], `${path}.value`);
    } else {
      obj = this.message(type, fields, path);
    }
    return { type_url: url, value: type.encode(type.fromObject(obj)).finish() };
  }

  /** Encodes one message (not wrapped in Any) from its JSON form; for tests and tools. */
  encodeMessage(typeName: string, json: Json, path = '$'): Uint8Array {
    const type = this.messageType(`/${typeName}`);
    if (!type) throw new EncodeError(path, `type ${typeName} is not declared in proto/`);
    return type.encode(type.fromObject(this.message(type, json, path))).finish();
  }

  /** JSON → an object that protobufjs' fromObject takes without loss. */
  private message(type: protobuf.Type, json: Json, path: string): Obj {
    const full = type.fullName;
    if (hasSpecialJson(type)) return this.wellKnown(type, json, path);
    if (!isPlainObject(json))
      throw new EncodeError(
        path,
        `expected an object for ${full.slice(1)}, got ${describeJson(json)}`,
      );
    const out: Obj = {};
    const oneofs = new Map<string, string>();
    for (const key of Object.keys(json).sort()) {
      const v = json[key];
      const fieldPath = `${path}.${key}`;
      const field = type.fields[key];
      if (!field) {
        const hint = Object.values(type.fields).find(
          (f) => f.options?.['json_name'] === key || camel(f.name) === key,
        );
        throw new EncodeError(
          fieldPath,
          `unknown field in ${full.slice(1)}${key === '@type' ? ' ("@type" belongs only in an Any)' : ''}${hint ? ` (did you mean "${hint.name}"?)` : ''}`,
        );
      }
      if (v === null || v === undefined) {
        // proto3 JSON: null is the default value, except for Value, where it is NULL_VALUE.
        if (
          field.resolvedType?.fullName === '.google.protobuf.Value' &&
          !field.repeated &&
          !field.map
        ) {
          out[field.name] = this.message(field.resolvedType as protobuf.Type, null, fieldPath);
        }
        continue;
      }
      const oneof = field.partOf;
      if (oneof && !oneof.isProto3Optional) {
        const other = oneofs.get(oneof.name);
        if (other !== undefined)
          throw new EncodeError(
            fieldPath,
            `"${other}" and "${key}" are both set but belong to oneof ${oneof.name}`,
          );
        oneofs.set(oneof.name, key);
      }
      out[field.name] = this.field(field, v, fieldPath);
    }
    return out;
  }

  private field(field: protobuf.Field, v: Json, path: string): unknown {
    if (field instanceof protobuf.MapField) {
      if (!isPlainObject(v))
        throw new EncodeError(path, `expected an object (map), got ${describeJson(v)}`);
      const out: Obj = {};
      for (const k of Object.keys(v).sort()) {
        mapKey(field.keyType, k, `${path}.${k}`);
        const item = v[k];
        if (item === null || item === undefined)
          throw new EncodeError(`${path}.${k}`, 'map values cannot be null');
        out[k] = this.single(field, item, `${path}.${k}`);
      }
      return out;
    }
    if (field.repeated) {
      if (!Array.isArray(v))
        throw new EncodeError(path, `expected an array, got ${describeJson(v)}`);
      return v.map((item, i) => {
        if (item === null || item === undefined)
          throw new EncodeError(`${path}[${i}]`, 'array elements cannot be null');
        return this.single(field, item, `${path}[${i}]`);
      });
    }
    return this.single(field, v, path);
  }

  private single(field: protobuf.Field | protobuf.MapField, v: Json, path: string): unknown {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) {
      return rt.fullName === '.google.protobuf.Any'
        ? this.encodeAny(v, path)
        : this.message(rt, v, path);
    }
    if (rt instanceof protobuf.Enum) return enumValue(rt, v, path);
    return scalar(field.type, v, path);
  }

  private wellKnown(type: protobuf.Type, v: Json, path: string): Obj {
    const full = type.fullName;
    // Bundled well-known types name some fields in camelCase; address them by number instead.
    const f = (id: number): string => type.fieldsById[id]!.name;
    if (WRAPPERS.has(full)) {
      const inner = type.fieldsById[1]!;
      return { [inner.name]: scalar(inner.type, v, path) };
    }
    switch (full) {
      case '.google.protobuf.Duration': {
        const m = typeof v === 'string' ? /^(-)?(\d{1,12})(?:\.(\d{1,9}))?s$/.exec(v) : null;
        if (!m)
          throw new EncodeError(path, `expected a duration such as "1.5s", got ${describeJson(v)}`);
        const sign = m[1] ? -1 : 1;
        const nanos = Number((m[3] ?? '').padEnd(9, '0'));
        return { [f(1)]: String(sign * Number(m[2])), [f(2)]: sign * nanos };
      }
      case '.google.protobuf.Timestamp': {
        const m =
          typeof v === 'string'
            ? /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(v)
            : null;
        const ms = m ? Date.parse(`${m[1]}${m[3]}`) : Number.NaN;
        if (!m || Number.isNaN(ms))
          throw new EncodeError(path, `expected an RFC 3339 timestamp, got ${describeJson(v)}`);
        return {
          [f(1)]: String(Math.floor(ms / 1000)),
          [f(2)]: Number((m[2] ?? '').padEnd(9, '0')),
        };
      }
      case '.google.protobuf.FieldMask': {
        if (typeof v !== 'string')
          throw new EncodeError(path, `expected a field mask string, got ${describeJson(v)}`);
        const paths =
          v === ''
            ? []
            : v.split(',').map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
        return { [f(1)]: paths };
      }
      case '.google.protobuf.Empty':
        if (!isPlainObject(v) || Object.keys(v).length > 0)
          throw new EncodeError(path, 'expected {} for google.protobuf.Empty');
        return {};
      case '.google.protobuf.Struct': {
        if (!isPlainObject(v))
          throw new EncodeError(path, `expected an object (Struct), got ${describeJson(v)}`);
        const valueType = type.fieldsById[1]!.resolvedType as protobuf.Type;
        const fields: Obj = {};
        for (const k of Object.keys(v).sort())
          fields[k] = this.wellKnown(valueType, v[k], `${path}.${k}`);
        return { [f(1)]: fields };
      }
      case '.google.protobuf.ListValue': {
        if (!Array.isArray(v))
          throw new EncodeError(path, `expected an array (ListValue), got ${describeJson(v)}`);
        const valueType = type.fieldsById[1]!.resolvedType as protobuf.Type;
        return { [f(1)]: v.map((item, i) => this.wellKnown(valueType, item, `${path}[${i}]`)) };
      }
      case '.google.protobuf.Value': {
        if (v === null) return { [f(1)]: 0 };
        if (typeof v === 'number') {
          if (!Number.isFinite(v)) throw new EncodeError(path, 'a Value number must be finite');
          return { [f(2)]: v };
        }
        if (typeof v === 'string') return { [f(3)]: v };
        if (typeof v === 'boolean') return { [f(4)]: v };
        const structType = type.fieldsById[5]!.resolvedType as protobuf.Type;
        const listType = type.fieldsById[6]!.resolvedType as protobuf.Type;
        if (Array.isArray(v)) return { [f(6)]: this.wellKnown(listType, v, path) };
        if (isPlainObject(v)) return { [f(5)]: this.wellKnown(structType, v, path) };
        throw new EncodeError(
          path,
          `not representable as google.protobuf.Value: ${describeJson(v)}`,
        );
      }
      default:
        throw new EncodeError(path, `no JSON form known for ${full.slice(1)}`);
    }
  }
}

function hasSpecialJson(type: protobuf.Type): boolean {
  const full = type.fullName;
  return (
    WRAPPERS.has(full) ||
    full === '.google.protobuf.Duration' ||
    full === '.google.protobuf.Timestamp' ||
    full === '.google.protobuf.FieldMask' ||
    full === '.google.protobuf.Struct' ||
    full === '.google.protobuf.ListValue' ||
    full === '.google.protobuf.Value' ||
    full === '.google.protobuf.Empty'
  );
}

function camel(snake: string): string {
  return snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function enumValue(e: protobuf.Enum, v: Json, path: string): number {
  if (typeof v === 'string') {
    const n = e.values[v];
    if (n === undefined) {
      throw new EncodeError(
        path,
        `"${v}" is not a value of ${e.fullName.slice(1)} (${Object.keys(e.values).join(', ')})`,
      );
    }
    return n;
  }
  if (typeof v === 'number' && Number.isInteger(v) && Object.values(e.values).includes(v)) return v;
  throw new EncodeError(path, `expected a name of ${e.fullName.slice(1)}, got ${describeJson(v)}`);
}

function scalar(type: string, v: Json, path: string): unknown {
  const range = INT32_RANGE[type];
  if (range) {
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < range[0] || n > range[1]) {
      throw new EncodeError(path, `expected a ${type}, got ${describeJson(v)}`);
    }
    return n;
  }
  if (INT64.has(type)) {
    const unsigned = type.startsWith('u') || type === 'fixed64';
    if (typeof v === 'number' && Number.isSafeInteger(v) && (!unsigned || v >= 0)) return String(v);
    if (typeof v === 'string' && (unsigned ? /^\d{1,20}$/ : /^-?\d{1,19}$/).test(v)) {
      const b = BigInt(v);
      const ok = unsigned ? b <= 0xffffffffffffffffn : b >= -(2n ** 63n) && b < 2n ** 63n;
      if (ok) return v;
    }
    throw new EncodeError(
      path,
      `expected a ${type} (integer or decimal string), got ${describeJson(v)}`,
    );
  }
  switch (type) {
    case 'double':
    case 'float':
      if (typeof v === 'number') return v;
      if (v === 'NaN') return Number.NaN;
      if (v === 'Infinity') return Number.POSITIVE_INFINITY;
      if (v === '-Infinity') return Number.NEGATIVE_INFINITY;
      if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
      throw new EncodeError(path, `expected a number, got ${describeJson(v)}`);
    case 'bool':
      if (typeof v === 'boolean') return v;
      throw new EncodeError(path, `expected true or false, got ${describeJson(v)}`);
    case 'string':
      if (typeof v === 'string') return v;
      throw new EncodeError(path, `expected a string, got ${describeJson(v)}`);
    case 'bytes':
      if (v instanceof Uint8Array) return v;
      if (typeof v === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(v))
        return Buffer.from(v, 'base64');
      throw new EncodeError(path, `expected base64 bytes, got ${describeJson(v)}`);
    default:
      throw new EncodeError(path, `unsupported field type ${type}`);
  }
}

function mapKey(keyType: string, k: string, path: string): void {
  if (keyType === 'string') return;
  if (keyType === 'bool') {
    if (k !== 'true' && k !== 'false')
      throw new EncodeError(path, 'map key must be "true" or "false"');
    return;
  }
  scalar(keyType, k, path);
}
