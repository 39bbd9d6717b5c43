// Header maps as Envoy holds them, and Envoy's rules for applying a server's HeaderMutation.
import type { PbHeaderMap, PbHeaderMutation, PbHeaderValue } from './codec.js';

/**
 * Ordered header list, names lowercase, pseudo-headers first. Values are byte strings
 * (latin1, one char per octet, as node:http exposes them) so that non-UTF-8 values survive.
 */
export type HeaderList = [name: string, value: string][];

export function getHeader(headers: HeaderList, name: string): string | undefined {
  for (const [k, v] of headers) if (k === name) return v;
  return undefined;
}

export function removeHeader(headers: HeaderList, name: string): void {
  let w = 0;
  for (let r = 0; r < headers.length; r++) {
    const h = headers[r]!;
    if (h[0] !== name) headers[w++] = h;
  }
  headers.length = w;
}

export function setHeader(headers: HeaderList, name: string, value: string): void {
  const i = headers.findIndex((h) => h[0] === name);
  if (i < 0) {
    headers.push([name, value]);
    return;
  }
  headers[i] = [name, value];
  for (let j = headers.length - 1; j > i; j--) if (headers[j]![0] === name) headers.splice(j, 1);
}

/** Envoy sends keys lowercased and values only in raw_value. */
export function toHeaderMap(headers: HeaderList): PbHeaderMap {
  const out: PbHeaderValue[] = new Array<PbHeaderValue>(headers.length);
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    out[i] = { key: h[0].toLowerCase(), raw_value: Buffer.from(h[1], 'latin1') };
  }
  return { headers: out };
}

export function fromHeaderMap(map: PbHeaderMap | null | undefined): HeaderList {
  const out: HeaderList = [];
  for (const h of map?.headers ?? []) {
    out.push([h.key ?? '', h.raw_value ? h.raw_value.toString('latin1') : (h.value ?? '')]);
  }
  return out;
}

export interface MutationContext {
  /** CONTINUE_AND_REPLACE lets `:method` change (GET→POST). */
  replacingMessage: boolean;
  /** The direction's body mode makes Envoy drop content-length, so setting it is ignored. */
  removeContentLength: boolean;
  /** Phase name used in violation messages. */
  where: string;
  report(message: string): void;
}

const VALID_VALUE = /^[^\0\r\n]*$/;

function disallowedSet(key: string, ctx: MutationContext): boolean {
  if (key === ':method') return !ctx.replacingMessage;
  return key === 'host' || key === ':authority' || key === ':scheme' || key.startsWith('x-envoy-');
}

/**
 * Applies a HeaderMutation the way Envoy's default mutation rules do. Returns an error string
 * when Envoy would fail the request (it then sends a 500 local reply); ignored parts are
 * recorded as violations because the server asked for something that silently did not happen.
 */
export function applyHeaderMutation(
  headers: HeaderList,
  mutation: PbHeaderMutation,
  ctx: MutationContext,
): string | undefined {
  for (const raw of mutation.remove_headers ?? []) {
    const name = raw.toLowerCase();
    if (name.startsWith(':') || name === 'host' || name.startsWith('x-envoy-')) {
      ctx.report(`${ctx.where}: removal of "${raw}" is ignored by Envoy`);
      continue;
    }
    removeHeader(headers, name);
  }
  for (const opt of mutation.set_headers ?? []) {
    const hv = opt.header;
    if (!hv) continue;
    const key = (hv.key ?? '').toLowerCase();
    const hasValue = hv.value !== undefined && hv.value !== '';
    const hasRaw = hv.raw_value !== undefined && hv.raw_value.length > 0;
    if (hasValue && hasRaw) {
      ctx.report(`${ctx.where}: header "${key}" sets both value and raw_value`);
      return `header "${key}" has both value and raw_value`;
    }
    if (hasValue) {
      ctx.report(
        `${ctx.where}: header "${key}" uses value instead of raw_value; Envoy sets it empty`,
      );
    }
    const value = hasRaw ? hv.raw_value!.toString('latin1') : '';
    if (key === '') {
      ctx.report(`${ctx.where}: set_headers entry with an empty key is ignored`);
      continue;
    }
    if (disallowedSet(key, ctx)) {
      ctx.report(`${ctx.where}: change of "${key}" is ignored by Envoy's mutation rules`);
      continue;
    }
    if (key === 'content-length' && ctx.removeContentLength) {
      ctx.report(
        `${ctx.where}: content-length is removed by Envoy in this body mode; setting it is ignored`,
      );
      continue;
    }
    if (key === ':status') {
      const code = /^\d{3}$/.test(value) ? Number(value) : NaN;
      if (!(code >= 200 && code <= 599)) {
        ctx.report(`${ctx.where}: invalid :status "${value}" is ignored`);
        continue;
      }
    }
    if (!VALID_VALUE.test(value)) {
      ctx.report(`${ctx.where}: header "${key}" has an invalid value; ignored`);
      continue;
    }
    if (opt.append?.value === true) headers.push([key, value]);
    else setHeader(headers, key, value);
  }
  return undefined;
}
