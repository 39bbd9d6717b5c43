/**
 * The protoc-gen-validate constraints of the targeted Envoy release (proto/envoy-api/
 * envoy-api-rules.json, written by the generator with the descriptor set), checked on a message
 * the way Envoy checks config it loads: a violation is a NACK (or a refused bootstrap). Any
 * payloads are unpacked and checked too, as Envoy does when it builds the extension.
 *
 * Only the rule kinds the release's API uses are evaluated; a rule kind this module does not
 * know, on a field that is set, is reported as a violation ("not evaluated") rather than
 * skipped, so a pass always means every applicable rule was checked.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { RE2JS } from 're2js';
import { envoyApiDir } from './index.js';

type Json = Record<string, unknown>;

interface RuleSet {
  /** "pkg.Message.field" → validate.FieldRules in proto JSON (proto field names). */
  fields: Record<string, Json>;
  /** "pkg.Message" → names of oneofs of which one member must be set. */
  required_oneofs: Record<string, string[]>;
}

let rules: RuleSet | undefined;

export function envoyApiRules(): RuleSet {
  rules ??= JSON.parse(
    readFileSync(join(envoyApiDir(), 'envoy-api-rules.json'), 'utf8'),
  ) as RuleSet;
  return rules;
}

const TO_OBJECT: protobuf.IConversionOptions = { enums: String, longs: String, defaults: false };

/** Every violation of the release's constraints in `bytes`, a `typeName` message; [] if none. */
export function validateEnvoy(
  root: protobuf.Root,
  typeName: string,
  bytes: Uint8Array,
  ruleSet: RuleSet = envoyApiRules(),
): string[] {
  const type = root.lookupType(typeName);
  const out: string[] = [];
  checkMessage(root, ruleSet, type, type.toObject(type.decode(bytes), TO_OBJECT), '$', out);
  return out;
}

function stripDot(name: string): string {
  return name.startsWith('.') ? name.slice(1) : name;
}

function isSet(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function checkMessage(
  root: protobuf.Root,
  set: RuleSet,
  type: protobuf.Type,
  obj: Json,
  path: string,
  out: string[],
): void {
  const name = stripDot(type.fullName);
  if (name === 'google.protobuf.Any') {
    const url = obj['type_url'];
    if (typeof url !== 'string') return;
    let inner: protobuf.Type;
    try {
      inner = root.lookupType(url.slice(url.lastIndexOf('/') + 1));
    } catch {
      return; // an unknown type is the strict reader's finding, not a constraint's
    }
    const value = (obj['value'] as Uint8Array | undefined) ?? new Uint8Array();
    checkMessage(
      root,
      set,
      inner,
      inner.toObject(inner.decode(value), TO_OBJECT),
      `${path}<${stripDot(inner.fullName)}>`,
      out,
    );
    return;
  }
  if (name.startsWith('google.protobuf.')) return; // no Envoy constraints inside well-known types
  for (const oneof of set.required_oneofs[name] ?? []) {
    const members = type.oneofs[oneof]?.oneof ?? [];
    if (!members.some((m) => isSet(obj[m]))) {
      out.push(`${path}: one of ${members.join(', ')} is required (oneof ${oneof})`);
    }
  }
  for (const field of type.fieldsArray) {
    field.resolve();
    const value = obj[field.name];
    const at = `${path}.${field.name}`;
    // A oneof member's (or a proto3 optional field's) rules apply only when it is the one set.
    const rule = field.partOf && !isSet(value) ? undefined : set.fields[`${name}.${field.name}`];
    if (rule) checkField(field, rule, value, at, out);
    if (rule && (rule['message'] as Json | undefined)?.['skip'] === true) continue;
    const sub = field.resolvedType;
    if (!(sub instanceof protobuf.Type) || !isSet(value)) continue;
    if (field instanceof protobuf.MapField) {
      for (const [k, v] of Object.entries(value as Json)) {
        checkMessage(root, set, sub, v as Json, `${at}[${JSON.stringify(k)}]`, out);
      }
    } else if (field.repeated) {
      (value as Json[]).forEach((v, i) => checkMessage(root, set, sub, v, `${at}[${i}]`, out));
    } else {
      checkMessage(root, set, sub, value as Json, at, out);
    }
  }
}

/** Rule kinds by the field's kind; `message` applies to any message field. */
function checkField(
  field: protobuf.Field,
  rule: Json,
  value: unknown,
  at: string,
  out: string[],
): void {
  for (const [kind, r] of Object.entries(rule)) {
    const spec = r as Json;
    if (kind === 'message') {
      if (spec['required'] === true && !isSet(value)) out.push(`${at}: required`);
      continue;
    }
    if (field instanceof protobuf.MapField) {
      if (kind !== 'map') out.push(`${at}: rule ${kind} on a map not evaluated`);
      else checkMap(spec, value as Json | undefined, at, out);
      continue;
    }
    if (field.repeated) {
      if (kind !== 'repeated') out.push(`${at}: rule ${kind} on a repeated field not evaluated`);
      else checkRepeated(spec, (value as unknown[] | undefined) ?? [], at, out, field);
      continue;
    }
    checkSingle(kind, spec, field, value, at, out);
  }
}

function checkMap(spec: Json, value: Json | undefined, at: string, out: string[]): void {
  const entries = Object.entries(value ?? {});
  for (const [k, v] of Object.entries(spec)) {
    if (k === 'min_pairs' && entries.length < Number(v))
      out.push(`${at}: at least ${String(v)} entries`);
    else if (k === 'max_pairs' && entries.length > Number(v))
      out.push(`${at}: at most ${String(v)} entries`);
    else if (k === 'keys') {
      for (const [key] of entries) {
        for (const [kind, r] of Object.entries(v as Json)) {
          const where = `${at} key ${JSON.stringify(key)}`;
          if (kind === 'string') checkString(r as Json, key, where, out);
          else out.push(`${where}: key rule ${kind} not evaluated`);
        }
      }
    } else if (k !== 'min_pairs' && k !== 'max_pairs' && entries.length > 0) {
      out.push(`${at}: map rule ${k} not evaluated`);
    }
  }
}

function checkRepeated(
  spec: Json,
  items: unknown[],
  at: string,
  out: string[],
  field: protobuf.Field,
): void {
  for (const [k, v] of Object.entries(spec)) {
    if (k === 'min_items') {
      if (items.length < Number(v)) out.push(`${at}: at least ${String(v)} items`);
    } else if (k === 'max_items') {
      if (items.length > Number(v)) out.push(`${at}: at most ${String(v)} items`);
    } else if (k === 'unique') {
      const seen = new Set(items.map((i) => JSON.stringify(i)));
      if (v === true && seen.size !== items.length) out.push(`${at}: items must be unique`);
    } else if (k === 'items') {
      items.forEach((item, i) => {
        for (const [kind, r] of Object.entries(v as Json)) {
          if (kind === 'message') {
            if ((r as Json)['required'] === true && !isSet(item)) out.push(`${at}[${i}]: required`);
          } else {
            checkSingle(kind, r as Json, field, item, `${at}[${i}]`, out);
          }
        }
      });
    } else if (items.length > 0) {
      out.push(`${at}: repeated rule ${k} not evaluated`);
    }
  }
}

const NUMERIC = new Set([
  'double',
  'float',
  'int32',
  'int64',
  'uint32',
  'uint64',
  'sint32',
  'sint64',
  'fixed32',
  'fixed64',
  'sfixed32',
  'sfixed64',
]);

const WRAPPED: Record<string, string> = {
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

function checkSingle(
  kind: string,
  spec: Json,
  field: protobuf.Field,
  value: unknown,
  at: string,
  out: string[],
): void {
  const resolved = field.resolvedType;
  // A wrapper's rules apply to the wrapped value, and only when the wrapper is set.
  const wrapped = resolved ? WRAPPED[resolved.fullName] : undefined;
  if (wrapped) {
    if (!isSet(value)) return;
    value = (value as Json)['value'];
  }
  if (NUMERIC.has(kind)) return checkNumber(spec, toBig(value, kind), at, out, kind);
  switch (kind) {
    case 'string':
      return checkString(spec, typeof value === 'string' ? value : '', at, out);
    case 'bytes':
      return checkBytes(spec, value instanceof Uint8Array ? value : new Uint8Array(), at, out);
    case 'bool':
      if (isSet(spec['const']) && (value === true) !== spec['const'])
        out.push(`${at}: must be ${String(spec['const'])}`);
      return;
    case 'enum':
      return checkEnum(spec, field, value, at, out);
    case 'duration':
      return checkDuration(spec, value as Json | undefined, at, out);
    case 'any': {
      if (spec['required'] === true && !isSet(value)) out.push(`${at}: required`);
      for (const k of Object.keys(spec)) {
        if (k !== 'required' && isSet(value)) out.push(`${at}: any rule ${k} not evaluated`);
      }
      return;
    }
    default:
      if (isSet(value)) out.push(`${at}: rule ${kind} not evaluated`);
  }
}

const SCALE = 1_000_000_000n;

function toBig(value: unknown, kind: string): { n: bigint; real?: number } {
  if (kind === 'double' || kind === 'float') {
    const real = typeof value === 'number' ? value : 0;
    return { n: 0n, real };
  }
  if (typeof value === 'string' || typeof value === 'number') return { n: BigInt(value) };
  return { n: 0n };
}

/** PGV's numeric ranges: gt/gte and lt/lte; when the lower bound exceeds the upper one, the range is exclusive (outside). */
function checkNumber(
  spec: Json,
  v: { n: bigint; real?: number },
  at: string,
  out: string[],
  kind: string,
): void {
  const real = kind === 'double' || kind === 'float';
  const num = (x: unknown): number | bigint => (real ? Number(x) : BigInt(x as string | number));
  const val = real ? v.real! : v.n;
  const cmp = (a: number | bigint, b: number | bigint): number => (a < b ? -1 : a > b ? 1 : 0);
  for (const k of Object.keys(spec)) {
    if (!['const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in', 'ignore_empty'].includes(k)) {
      out.push(`${at}: ${kind} rule ${k} not evaluated`);
    }
  }
  if (spec['ignore_empty'] === true && cmp(val, num(0)) === 0) return;
  if (isSet(spec['const']) && cmp(val, num(spec['const'])) !== 0)
    out.push(`${at}: must be ${String(spec['const'])}`);
  if (Array.isArray(spec['in']) && !spec['in'].some((x) => cmp(val, num(x)) === 0))
    out.push(`${at}: must be one of ${spec['in'].join(', ')}`);
  if (Array.isArray(spec['not_in']) && spec['not_in'].some((x) => cmp(val, num(x)) === 0))
    out.push(`${at}: must not be ${String(val)}`);
  rangeCheck(spec, (x) => cmp(val, num(x)), String(val), at, out);
}

function rangeCheck(
  spec: Json,
  cmpTo: (bound: unknown) => number,
  shown: string,
  at: string,
  out: string[],
): void {
  const lower = isSet(spec['gt'])
    ? { b: spec['gt'], strict: true }
    : isSet(spec['gte'])
      ? { b: spec['gte'], strict: false }
      : undefined;
  const upper = isSet(spec['lt'])
    ? { b: spec['lt'], strict: true }
    : isSet(spec['lte'])
      ? { b: spec['lte'], strict: false }
      : undefined;
  const above = (l: { b: unknown; strict: boolean }): boolean =>
    l.strict ? cmpTo(l.b) > 0 : cmpTo(l.b) >= 0;
  const below = (u: { b: unknown; strict: boolean }): boolean =>
    u.strict ? cmpTo(u.b) < 0 : cmpTo(u.b) <= 0;
  const describe = (): string =>
    `${lower ? `${lower.strict ? '>' : '>='} ${String(lower.b)}` : ''}${lower && upper ? ' and ' : ''}${upper ? `${upper.strict ? '<' : '<='} ${String(upper.b)}` : ''}`;
  if (lower && upper) {
    // Bounds in order: inside the range; reversed: outside it (PGV's exclusive ranges).
    const inOrder = cmpToBounds(lower.b, upper.b);
    const ok = inOrder ? above(lower) && below(upper) : above(lower) || below(upper);
    if (!ok) out.push(`${at}: ${shown} is not ${inOrder ? '' : 'outside '}${describe()}`);
  } else if (lower && !above(lower)) {
    out.push(`${at}: ${shown} is not ${describe()}`);
  } else if (upper && !below(upper)) {
    out.push(`${at}: ${shown} is not ${describe()}`);
  }
}

function cmpToBounds(lo: unknown, hi: unknown): boolean {
  const a = typeof lo === 'string' && lo.endsWith('s') ? durationNanos(lo) : Number(lo);
  const b = typeof hi === 'string' && hi.endsWith('s') ? durationNanos(hi) : Number(hi);
  return a <= b;
}

/** A proto JSON duration ("1.5s") in nanoseconds. */
function durationNanos(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(text);
  if (!m) throw new Error(`bad duration bound ${text}`);
  const ns = BigInt(m[2]!) * SCALE + BigInt((m[3] ?? '').padEnd(9, '0') || '0');
  return m[1] ? -ns : ns;
}

function checkDuration(spec: Json, value: Json | undefined, at: string, out: string[]): void {
  for (const k of Object.keys(spec)) {
    if (!['required', 'const', 'lt', 'lte', 'gt', 'gte'].includes(k)) {
      if (isSet(value)) out.push(`${at}: duration rule ${k} not evaluated`);
    }
  }
  if (!isSet(value)) {
    if (spec['required'] === true) out.push(`${at}: required`);
    return;
  }
  // longs: String, so seconds is a decimal string (or absent when 0).
  const seconds = value!['seconds'] as string | number | undefined;
  const ns = BigInt(seconds ?? 0) * SCALE + BigInt(Number(value!['nanos'] ?? 0));
  const cmp = (b: unknown): number => {
    const bound = durationNanos(String(b));
    return ns < bound ? -1 : ns > bound ? 1 : 0;
  };
  if (isSet(spec['const']) && cmp(spec['const']) !== 0)
    out.push(`${at}: must be ${String(spec['const'])}`);
  rangeCheck(spec, cmp, `${ns} ns`, at, out);
}

function checkEnum(
  spec: Json,
  field: protobuf.Field,
  value: unknown,
  at: string,
  out: string[],
): void {
  const e = field.resolvedType;
  if (!(e instanceof protobuf.Enum)) return;
  const number =
    typeof value === 'number' ? value : typeof value === 'string' ? e.values[value] : 0;
  for (const k of Object.keys(spec)) {
    if (!['defined_only', 'in', 'not_in', 'const'].includes(k))
      out.push(`${at}: enum rule ${k} not evaluated`);
  }
  if (
    spec['defined_only'] === true &&
    (number === undefined || !Object.values(e.values).includes(number))
  ) {
    out.push(`${at}: ${String(value)} is not a value of ${stripDot(e.fullName)}`);
  }
  if (isSet(spec['const']) && number !== spec['const'])
    out.push(`${at}: must be ${String(spec['const'])}`);
  if (Array.isArray(spec['in']) && !spec['in'].includes(number))
    out.push(`${at}: ${String(value)} is not allowed`);
  if (Array.isArray(spec['not_in']) && spec['not_in'].includes(number))
    out.push(`${at}: ${String(value)} is not allowed`);
}

// PGV's well-known header regexes (validate.proto KnownRegex; `strict` defaults to true), as the
// release's generated validators (go-control-plane *.pb.validate.go) spell them.
const HEADER_NAME_STRICT = RE2JS.compile("^:?[0-9a-zA-Z!#$%&'*+-.^_|~`]+$");
const HEADER_VALUE_STRICT = RE2JS.compile('^[^\\x00-\\x08\\x0A-\\x1F\\x7F]*$');
const HEADER_LOOSE = RE2JS.compile('^[^\\x00\\x0A\\x0D]*$');

function checkString(spec: Json, s: string, at: string, out: string[]): void {
  if (spec['ignore_empty'] === true && s === '') return;
  const chars = [...s].length;
  const bytes = Buffer.byteLength(s, 'utf8');
  const known = new Set([
    'min_len',
    'max_len',
    'len',
    'min_bytes',
    'max_bytes',
    'prefix',
    'suffix',
    'contains',
    'not_contains',
    'pattern',
    'in',
    'not_in',
    'const',
    'well_known_regex',
    'strict',
    'ignore_empty',
  ]);
  for (const [k, v] of Object.entries(spec)) {
    const n = Number(v);
    if (!known.has(k)) out.push(`${at}: string rule ${k} not evaluated`);
    else if (k === 'min_len' && chars < n) out.push(`${at}: at least ${n} characters`);
    else if (k === 'max_len' && chars > n) out.push(`${at}: at most ${n} characters`);
    else if (k === 'len' && chars !== n) out.push(`${at}: exactly ${n} characters`);
    else if (k === 'min_bytes' && bytes < n) out.push(`${at}: at least ${n} bytes`);
    else if (k === 'max_bytes' && bytes > n) out.push(`${at}: at most ${n} bytes`);
    else if (k === 'prefix' && !s.startsWith(String(v)))
      out.push(`${at}: must start with ${String(v)}`);
    else if (k === 'suffix' && !s.endsWith(String(v)))
      out.push(`${at}: must end with ${String(v)}`);
    else if (k === 'contains' && !s.includes(String(v)))
      out.push(`${at}: must contain ${String(v)}`);
    else if (k === 'not_contains' && s.includes(String(v)))
      out.push(`${at}: must not contain ${String(v)}`);
    else if (k === 'const' && s !== v) out.push(`${at}: must be ${String(v)}`);
    else if (k === 'in' && !(v as string[]).includes(s))
      out.push(`${at}: must be one of ${(v as string[]).join(', ')}`);
    else if (k === 'not_in' && (v as string[]).includes(s)) out.push(`${at}: ${s} is not allowed`);
    else if (k === 'pattern' && !RE2JS.compile(String(v)).matcher(s).find())
      out.push(`${at}: does not match ${String(v)}`);
    else if (k === 'well_known_regex') {
      const strict = spec['strict'] !== false;
      const re =
        v === 'HTTP_HEADER_NAME'
          ? strict
            ? HEADER_NAME_STRICT
            : HEADER_LOOSE
          : v === 'HTTP_HEADER_VALUE'
            ? strict
              ? HEADER_VALUE_STRICT
              : HEADER_LOOSE
            : undefined;
      if (!re) out.push(`${at}: well-known regex ${String(v)} not evaluated`);
      else if (!re.matcher(s).matches()) {
        out.push(`${at}: not a valid ${v === 'HTTP_HEADER_NAME' ? 'header name' : 'header value'}`);
      }
    }
  }
}

function checkBytes(spec: Json, b: Uint8Array, at: string, out: string[]): void {
  for (const [k, v] of Object.entries(spec)) {
    if (k === 'min_len' && b.length < Number(v)) out.push(`${at}: at least ${String(v)} bytes`);
    else if (k === 'max_len' && b.length > Number(v)) out.push(`${at}: at most ${String(v)} bytes`);
    else if (k !== 'min_len' && k !== 'max_len' && b.length > 0)
      out.push(`${at}: bytes rule ${k} not evaluated`);
  }
}
