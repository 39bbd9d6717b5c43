// The HTTP connection manager's local replies, as Envoy builds them: Utility::sendLocalReply
// (source/common/http/utility.cc) with the HCM's local_reply_config (LocalReplyImpl in
// source/common/local_reply/local_reply.cc). Every reply Envoy generates itself goes through it —
// the router's (no route, no healthy upstream, connect failure, timeouts, direct_response), a
// filter's (jwt_authn, ext_proc immediate responses and fail-closed errors), an upstream filter's
// (UpstreamFilterManager::sendLocalReply hands it to the downstream filter manager).
//
// Implemented local_reply_config: `mappers` with `filter` (status_code_filter, header_filter,
// response_flag_filter, metadata_filter, and_filter, or_filter), `status_code`,
// `body_format_override.json_format` (literal values only) and `headers_to_add` (values with
// literal text and `%REQ(name)%`; append_action OVERWRITE_IF_EXISTS_OR_ADD / APPEND_IF_EXISTS_OR_ADD
// / ADD_IF_ABSENT). Anything else is refused at load time (ConfigError → NACK).
import type { HeaderList, JsonValue } from './ext-proc/index.js';
import { getHeader } from './ext-proc/index.js';
import { arr, ConfigError, obj, str } from './json.js';
import type { Json } from './protos.js';

export type AccessLogFilter =
  | { kind: 'status'; op: 'EQ' | 'GE' | 'LE'; value: number }
  | {
      kind: 'header';
      name: string;
      exact?: string;
      prefix?: string;
      present?: boolean;
      invert: boolean;
    }
  | { kind: 'flags'; flags: string[] }
  | {
      kind: 'metadata';
      namespace: string;
      path: string[];
      exact: string;
      invert: boolean;
      matchIfKeyNotFound: boolean;
    }
  | { kind: 'and' | 'or'; filters: AccessLogFilter[] };

export interface HeaderToAdd {
  key: string;
  /** Literal text and `%REQ(name)%` pieces. */
  value: ({ text: string } | { req: string })[];
  action: 'OVERWRITE_IF_EXISTS_OR_ADD' | 'APPEND_IF_EXISTS_OR_ADD' | 'ADD_IF_ABSENT';
}

export interface ResponseMapper {
  filter: AccessLogFilter;
  statusCode: number | undefined;
  /** body_format_override.json_format, rendered once (no command operators). */
  jsonBody: string | undefined;
  headersToAdd: HeaderToAdd[];
}

export interface LocalReplyConfig {
  mappers: ResponseMapper[];
}

export const NO_LOCAL_REPLY_CONFIG: LocalReplyConfig = { mappers: [] };

/** What a local reply's rewrite reads besides the headers: Envoy's StreamInfo. */
export interface ReplyStreamInfo {
  /** Response flags (UH, UF, UT, NR…) set so far. */
  flags: readonly string[];
  /** Dynamic metadata by namespace (filters with receiving namespaces wrote it). */
  dynamicMetadata: Record<string, Record<string, JsonValue>>;
}

export interface LocalReplyInput {
  status: number;
  body: Buffer;
  /** What the caller's modify_headers set (an immediate response's header mutation, route headers). */
  headers: HeaderList;
  requestHeaders: HeaderList;
  info: ReplyStreamInfo;
}

export interface BuiltReply {
  status: number;
  /** `:status` first, then the rest, as Envoy encodes them. */
  headers: HeaderList;
  body: Buffer;
}

// ---- compiling ----------------------------------------------------------------------------

export function compileLocalReplyConfig(where: string, cfg: Json | undefined): LocalReplyConfig {
  if (!cfg) return NO_LOCAL_REPLY_CONFIG;
  if (cfg['body_format'] !== undefined) {
    throw new ConfigError(`${where}: local_reply_config.body_format is not implemented`);
  }
  return { mappers: arr(cfg['mappers']).map((m, i) => mapper(`${where}: mappers[${i}]`, m)) };
}

function mapper(where: string, m: Json): ResponseMapper {
  if (m['body'] !== undefined) throw new ConfigError(`${where}: body is not implemented`);
  const status = m['status_code'] as { value?: number } | undefined;
  const fmt = m['body_format_override'] as Json | undefined;
  let jsonBody: string | undefined;
  if (fmt) {
    const set = Object.keys(fmt).filter((k) => fmt[k] !== undefined && fmt[k] !== '');
    if (set.some((k) => k !== 'json_format') || fmt['json_format'] === undefined) {
      throw new ConfigError(`${where}: body_format_override needs json_format and nothing else`);
    }
    const value = structJson(fmt['json_format']);
    literal(where, value);
    // Envoy's JSON formatter ends the line with a newline, as in a JSON access log.
    jsonBody = `${JSON.stringify(value)}\n`;
  }
  return {
    filter: accessLogFilter(`${where}.filter`, obj(m['filter'])),
    statusCode: status === undefined ? undefined : Number(status.value ?? 0),
    jsonBody,
    headersToAdd: arr(m['headers_to_add']).map((h, i) =>
      headerToAdd(`${where}.headers_to_add[${i}]`, h),
    ),
  };
}

function accessLogFilter(where: string, f: Json): AccessLogFilter {
  const kinds = Object.keys(f).filter((k) => f[k] !== undefined);
  if (kinds.length !== 1) throw new ConfigError(`${where}: exactly one filter is required`);
  const kind = kinds[0]!;
  const v = obj(f[kind]);
  switch (kind) {
    case 'status_code_filter': {
      const c = obj(v['comparison']);
      const op = str(c['op']) || 'EQ';
      if (op !== 'EQ' && op !== 'GE' && op !== 'LE') {
        throw new ConfigError(`${where}: comparison op ${op} is not implemented`);
      }
      return { kind: 'status', op, value: Number(obj(c['value'])['default_value'] ?? 0) };
    }
    case 'header_filter': {
      const h = obj(v['header']);
      const sm = obj(h['string_match']);
      const out: AccessLogFilter = {
        kind: 'header',
        name: str(h['name']).toLowerCase(),
        invert: h['invert_match'] === true,
      };
      if (typeof sm['exact'] === 'string') out.exact = sm['exact'];
      else if (typeof sm['prefix'] === 'string') out.prefix = sm['prefix'];
      else if (h['present_match'] === true) out.present = true;
      else
        throw new ConfigError(`${where}: header needs string_match exact/prefix or present_match`);
      if (sm['ignore_case'] === true)
        throw new ConfigError(`${where}: ignore_case is not implemented`);
      return out;
    }
    case 'response_flag_filter':
      return { kind: 'flags', flags: arr(v['flags']) as unknown as string[] };
    case 'metadata_filter': {
      const m = obj(v['matcher']);
      const exact = obj(obj(m['value'])['string_match'])['exact'];
      if (typeof exact !== 'string') {
        throw new ConfigError(`${where}: only value.string_match.exact is implemented`);
      }
      const nf = v['match_if_key_not_found'] as { value?: boolean } | undefined;
      return {
        kind: 'metadata',
        namespace: str(m['filter']),
        path: arr(m['path']).map((p) => str(p['key'])),
        exact,
        invert: m['invert'] === true,
        // Unset means true (accesslog.proto: MetadataFilter.match_if_key_not_found).
        matchIfKeyNotFound: nf === undefined ? true : nf.value === true,
      };
    }
    case 'and_filter':
    case 'or_filter': {
      const filters = arr(v['filters']).map((x, i) => accessLogFilter(`${where}.filters[${i}]`, x));
      if (filters.length < 2) throw new ConfigError(`${where}: at least two filters are required`);
      return { kind: kind === 'and_filter' ? 'and' : 'or', filters };
    }
    default:
      throw new ConfigError(`${where}: ${kind} is not implemented`);
  }
}

const REQ = /%REQ\(([A-Za-z0-9_:-]+)\)%/g;

function headerToAdd(where: string, h: Json): HeaderToAdd {
  const header = obj(h['header']);
  const raw = str(header['value']);
  const value: HeaderToAdd['value'] = [];
  let at = 0;
  for (const m of raw.matchAll(REQ)) {
    if (m.index > at) value.push({ text: raw.slice(at, m.index) });
    value.push({ req: m[1]!.toLowerCase() });
    at = m.index + m[0].length;
  }
  if (at < raw.length) value.push({ text: raw.slice(at) });
  for (const p of value) {
    if ('text' in p && p.text.includes('%')) {
      throw new ConfigError(`${where}: only the %REQ(name)% command operator is implemented`);
    }
  }
  const action = str(h['append_action']) || 'APPEND_IF_EXISTS_OR_ADD';
  if (h['append'] !== undefined || h['keep_empty_value'] === true) {
    throw new ConfigError(`${where}: append and keep_empty_value are not implemented`);
  }
  if (
    action !== 'OVERWRITE_IF_EXISTS_OR_ADD' &&
    action !== 'APPEND_IF_EXISTS_OR_ADD' &&
    action !== 'ADD_IF_ABSENT'
  ) {
    throw new ConfigError(`${where}: append_action ${action} is not implemented`);
  }
  return { key: str(header['key']).toLowerCase(), value, action };
}

/** google.protobuf.Struct as decoded → JSON (camelCase Value fields, as protobufjs names them). */
function structJson(s: unknown): JsonValue {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(obj(obj(s)['fields']))) out[k] = valueJson(v);
  return out;
}

function valueJson(v: unknown): JsonValue {
  const x = obj(v);
  if ('stringValue' in x || 'string_value' in x) return str(x['stringValue'] ?? x['string_value']);
  if ('numberValue' in x || 'number_value' in x)
    return Number(x['numberValue'] ?? x['number_value']);
  if ('boolValue' in x || 'bool_value' in x) return Boolean(x['boolValue'] ?? x['bool_value']);
  if ('structValue' in x || 'struct_value' in x)
    return structJson(x['structValue'] ?? x['struct_value']);
  if ('listValue' in x || 'list_value' in x) {
    return arr(obj(x['listValue'] ?? x['list_value'])['values']).map(valueJson);
  }
  return null;
}

/** Command operators in a json_format value are not implemented: refuse any `%`. */
function literal(where: string, v: JsonValue): void {
  if (typeof v === 'string') {
    if (v.includes('%')) {
      throw new ConfigError(`${where}: command operators in json_format are not implemented`);
    }
  } else if (Array.isArray(v)) v.forEach((x) => literal(where, x));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => literal(where, x));
}

// ---- running --------------------------------------------------------------------------------

function matches(
  f: AccessLogFilter,
  status: number,
  req: HeaderList,
  info: ReplyStreamInfo,
): boolean {
  switch (f.kind) {
    case 'status':
      return f.op === 'EQ'
        ? status === f.value
        : f.op === 'GE'
          ? status >= f.value
          : status <= f.value;
    case 'header': {
      const values = req.filter(([k]) => k === f.name).map(([, v]) => v);
      let hit: boolean;
      if (values.length === 0) hit = false;
      else if (f.present) hit = true;
      else {
        // Envoy's HeaderMatcher compares a repeated header as its values joined by commas.
        const v = values.join(',');
        hit = f.exact !== undefined ? v === f.exact : v.startsWith(f.prefix!);
      }
      return f.invert ? !hit : hit;
    }
    case 'flags':
      // An empty list matches any flag; otherwise any listed flag (ResponseFlagFilter::evaluate).
      return f.flags.length === 0
        ? info.flags.length > 0
        : f.flags.some((x) => info.flags.includes(x));
    case 'metadata': {
      let v: JsonValue | undefined = info.dynamicMetadata[f.namespace];
      for (const k of f.path) {
        v = v && typeof v === 'object' && !Array.isArray(v) ? v[k] : undefined;
      }
      if (v === undefined) return f.matchIfKeyNotFound;
      const hit = v === f.exact;
      return f.invert ? !hit : hit;
    }
    case 'and':
      return f.filters.every((x) => matches(x, status, req, info));
    case 'or':
      return f.filters.some((x) => matches(x, status, req, info));
  }
}

function setHeader(headers: HeaderList, key: string, value: string): void {
  const i = headers.findIndex(([k]) => k === key);
  if (i >= 0) {
    headers[i] = [key, value];
    for (let j = headers.length - 1; j > i; j--) if (headers[j]![0] === key) headers.splice(j, 1);
  } else headers.push([key, value]);
}

function removeHeader(headers: HeaderList, key: string): void {
  for (let j = headers.length - 1; j >= 0; j--) if (headers[j]![0] === key) headers.splice(j, 1);
}

/**
 * Utility::sendLocalReply with LocalReplyImpl::rewrite: modify_headers ran already (`headers`);
 * the first mapper whose filter matches adds its headers, overrides the status and picks its body
 * format; with none (or no format) the body stays `%LOCAL_REPLY_BODY%` as text/plain. The
 * content type is set when absent, or when the rewrite changed the body and did not set one.
 */
export function buildLocalReply(config: LocalReplyConfig, input: LocalReplyInput): BuiltReply {
  let status = input.status;
  const headers: HeaderList = [[':status', String(status)]];
  for (const [k, v] of input.headers) if (k !== ':status') headers.push([k, v]);
  const typeBefore = getHeader(headers, 'content-type');
  let body = input.body;
  let contentType = 'text/plain';
  for (const m of config.mappers) {
    if (!matches(m.filter, status, input.requestHeaders, input.info)) continue;
    for (const h of m.headersToAdd) {
      const value = h.value
        .map((p) => ('text' in p ? p.text : (getHeader(input.requestHeaders, p.req) ?? '')))
        .join('');
      // HeaderParser drops a header whose value came out empty (keep_empty_value false).
      if (value === '') continue;
      const exists = headers.some(([k]) => k === h.key);
      if (h.action === 'OVERWRITE_IF_EXISTS_OR_ADD') setHeader(headers, h.key, value);
      else if (h.action === 'APPEND_IF_EXISTS_OR_ADD' || !exists) headers.push([h.key, value]);
    }
    if (m.statusCode !== undefined && m.statusCode !== status) {
      status = m.statusCode;
      headers[0] = [':status', String(status)];
    }
    if (m.jsonBody !== undefined) {
      body = Buffer.from(m.jsonBody);
      contentType = 'application/json';
    }
    break;
  }
  const customType = getHeader(headers, 'content-type') !== typeBefore;
  if (body.length > 0) {
    setHeader(headers, 'content-length', String(body.length));
    if (
      getHeader(headers, 'content-type') === undefined ||
      (!body.equals(input.body) && !customType)
    ) {
      setHeader(headers, 'content-type', contentType);
    }
  } else {
    removeHeader(headers, 'content-length');
    removeHeader(headers, 'content-type');
  }
  return { status, headers, body };
}
