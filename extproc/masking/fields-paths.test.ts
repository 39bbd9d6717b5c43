import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Operation } from '../providers/endpoints.js';
import {
  EXEMPT_FIELDS,
  isBase64Payload,
  maskableSlots,
  responseSlots,
  responsesEventSlots,
} from './fields.js';

// The walk finds exempt fields with a table it steps through beside the body (fields.ts
// PathNode). What it must give is what matching the whole path as a string gave: this is that
// walk as it was (paths built per value, looked up in sets), run on bodies made from the listed
// paths and their near misses, and every slot (its text, whether it is signed) must be the same.

type Obj = Record<string, unknown>;

const FIELD_NAME = /^[a-z_]{1,64}$/;
const ENUM_VALUE = /^[a-z][a-z0-9_.-]{0,63}$/;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function embedded(v: string): object | undefined {
  let i = 0;
  while (' \n\r\t'.includes(v[i] ?? 'x')) i++;
  if (v[i] !== '{' && v[i] !== '[') return undefined;
  try {
    const doc: unknown = JSON.parse(v);
    return typeof doc === 'object' && doc !== null ? doc : undefined;
  } catch {
    return undefined;
  }
}

/** The path-string walk: [text, signed] per slot, keys included, in walk order. */
function reference(exempt: ReadonlySet<string>, encoded: ReadonlySet<string>, body: Obj) {
  const out: [string, boolean][] = [];
  const child = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);
  const walkObject = (o: Obj, path: string, free: boolean): void => {
    for (const k of Object.keys(o)) {
      if (FIELD_NAME.test(k)) walkValue(o, k, free ? '' : child(path, k), free);
      else {
        if (k.length > 0) out.push([k, false]);
        walkValue(o, k, '', true);
      }
    }
  };
  const walkValue = (
    holder: Obj | unknown[],
    key: string | number,
    path: string,
    free: boolean,
  ) => {
    const v = (holder as Record<string | number, unknown>)[key];
    if (typeof v === 'string') {
      if ((key === 'type' || key === 'role') && ENUM_VALUE.test(v)) return;
      if (!free) {
        if (exempt.has(path)) return;
        const text = isObj(holder) && holder.type === 'text';
        if (encoded.has(path) && isBase64Payload(v) && !text) return;
      }
      if (v.length === 0) return;
      const doc = embedded(v);
      if (doc === undefined) {
        const signed =
          path.endsWith('.thinking') &&
          isObj(holder) &&
          holder.type === 'thinking' &&
          typeof holder.signature === 'string';
        out.push([v, signed]);
      } else walkValue({ doc }, 'doc', '', true);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) {
      const p = free ? '' : child(path, '*');
      for (let i = 0; i < v.length; i++) walkValue(v, i, p, free);
      return;
    }
    walkObject(v as Obj, path, free);
  };
  walkObject(body, '', false);
  return out;
}

/** Deterministic: a failure is the same body every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VALUES = [
  'mail leak@example.com now',
  'QUJDREVGR0g=',
  'data:image/png;base64,QUJDREVGR0g=',
  'user',
  'thinking',
  'text',
  '{"tool_call_id":"call_1","x":"leak@example.com"}',
  '[{"id":"a"}]',
  'call_abc123',
  '',
];

const EXTRA_KEYS = [
  'thinking',
  'signature',
  'type',
  'role',
  'text',
  'source',
  'content',
  'foo',
  '*',
  'Key.With.Dots',
  'messages.*.tool_call_id',
  'id2',
];

function build(r: () => number, paths: readonly string[]): Obj {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const body: Obj = {};
  const leaf = (): unknown => {
    const x = r();
    if (x < 0.7) return pick(VALUES);
    if (x < 0.8) return 42;
    if (x < 0.9) return null;
    return { type: pick(['thinking', 'text', 'image']), signature: 'sig', thinking: pick(VALUES) };
  };
  // A thinking block's shape at the top level, where `thinking` is not below anything.
  if (r() < 0.1) Object.assign(body, { type: 'thinking', signature: 'sig', thinking: 'leak' });
  for (let n = 0; n < 6; n++) {
    // A listed path, sometimes bent: a component swapped, a level dropped, a level added.
    const parts = pick(paths).split('.');
    const bend = r();
    if (bend < 0.2) parts[Math.floor(r() * parts.length)] = pick(EXTRA_KEYS);
    else if (bend < 0.3 && parts.length > 1) parts.splice(Math.floor(r() * parts.length), 1);
    else if (bend < 0.4) parts.splice(Math.floor(r() * (parts.length + 1)), 0, pick(EXTRA_KEYS));
    if (r() < 0.3) parts.push('thinking');
    let holder: Obj | unknown[] = body;
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const next: unknown = last ? leaf() : parts[i + 1] === '*' ? [] : {};
      if (Array.isArray(holder)) {
        // `*`: an element; sometimes the element is the value itself.
        const el: unknown = next;
        holder.push(el);
        if (r() < 0.3) holder.push(leaf());
        if (typeof el !== 'object' || el === null) break;
        holder = el as Obj | unknown[];
        continue;
      }
      const key = parts[i]!;
      if (key === '*' && !last) {
        // `*` as an object key (a forged path) holds an object too.
        const o: Obj = {};
        holder[key] = o;
        holder = o;
        continue;
      }
      const have = holder[key];
      if (!last && typeof have === 'object' && have !== null) {
        holder = have as Obj | unknown[];
        continue;
      }
      holder[key] = next;
      if (r() < 0.3) holder[pick(EXTRA_KEYS)] = leaf();
      if (last || typeof next !== 'object' || next === null) break;
      holder = next as Obj | unknown[];
    }
  }
  return body;
}

function slots(list: { slots: readonly { text: string; signed?: boolean }[] }) {
  return list.slots.map((s): [string, boolean] => [s.text, s.signed === true]);
}

// The lists fields.ts builds its tables from (the response ones are not exported: the same
// paths, written here as the walk's test inputs).
const RESPONSE: Record<Operation, { ids: string[]; base64: string[] }> = {
  chat: {
    ids: [
      'id',
      'object',
      'model',
      'system_fingerprint',
      'service_tier',
      'choices.*.finish_reason',
      'choices.*.message.tool_calls.*.id',
      'choices.*.message.audio.id',
    ],
    base64: ['choices.*.message.audio.data'],
  },
  completions: {
    ids: ['id', 'object', 'model', 'system_fingerprint', 'choices.*.finish_reason'],
    base64: [],
  },
  embeddings: { ids: ['object', 'model'], base64: ['data.*.embedding'] },
  responses: {
    ids: [
      'id',
      'object',
      'model',
      'status',
      'previous_response_id',
      'service_tier',
      'output.*.id',
      'output.*.call_id',
      'output.*.status',
    ],
    base64: ['output.*.encrypted_content', 'output.*.result'],
  },
  messages: {
    ids: ['id', 'model', 'stop_reason', 'content.*.id', 'content.*.tool_use_id'],
    base64: ['content.*.signature', 'content.*.data'],
  },
};

const OPS = Object.keys(EXEMPT_FIELDS) as Operation[];

function responseLists(op: Operation): { exempt: Set<string>; encoded: Set<string> } {
  const under = (ps: string[]): string[] =>
    op === 'responses' ? [...ps, ...ps.map((p) => `response.${p}`)] : ps;
  return {
    exempt: new Set(under(RESPONSE[op].ids)),
    encoded: new Set(under(RESPONSE[op].base64)),
  };
}

const unsignedOnly = (xs: [string, boolean][]): [string, boolean][] => xs.filter((x) => !x[1]);

describe('exempt fields by table', () => {
  it('request slots are those of the path-string walk (2,000 bodies per API)', () => {
    for (const op of OPS) {
      const { ids, base64 } = EXEMPT_FIELDS[op];
      const exempt = new Set(ids);
      const encoded = new Set(base64);
      const paths = [...ids, ...base64, 'messages.*.content.*.thinking', 'input.*.content'];
      const r = rng(0x5eed + op.length);
      for (let n = 0; n < 2000; n++) {
        const body = build(r, paths);
        const want = reference(exempt, encoded, structuredClone(body));
        assert.deepEqual(slots(maskableSlots(op, body)), want, JSON.stringify(body));
      }
    }
  });

  it('answer and Responses event slots are those of the path-string walk', () => {
    for (const op of OPS) {
      const { exempt, encoded } = responseLists(op);
      const paths = [...exempt, ...encoded, 'content.*.thinking'];
      const r = rng(0xa11 + op.length);
      for (let n = 0; n < 2000; n++) {
        const body = build(r, paths);
        const want = unsignedOnly(reference(exempt, encoded, structuredClone(body)));
        assert.deepEqual(slots(responseSlots(op, body)), want, JSON.stringify(body));
      }
    }
    const { exempt, encoded } = responseLists('responses');
    for (const p of ['item_id', 'obfuscation', 'item.id', 'item.call_id', 'item.status'])
      exempt.add(p);
    for (const p of ['item.encrypted_content', 'item.result', 'partial_image_b64']) encoded.add(p);
    const paths = [...exempt, ...encoded, 'item.content.*.thinking'];
    const r = rng(0xe7e);
    for (let n = 0; n < 2000; n++) {
      const body = build(r, paths);
      const want = unsignedOnly(reference(exempt, encoded, structuredClone(body)));
      assert.deepEqual(slots(responsesEventSlots(body)), want, JSON.stringify(body));
    }
  });

  it('the bodies reach exempt, encoded and signed fields (the comparison is not vacuous)', () => {
    let exemptHit = 0;
    let signedHit = 0;
    for (const op of OPS) {
      const { ids, base64 } = EXEMPT_FIELDS[op];
      const r = rng(0x5eed + op.length);
      for (let n = 0; n < 2000; n++) {
        const body = build(r, [
          ...ids,
          ...base64,
          'messages.*.content.*.thinking',
          'input.*.content',
        ]);
        const all = reference(new Set(), new Set(), structuredClone(body));
        const some = reference(new Set(ids), new Set(base64), structuredClone(body));
        if (some.length < all.length) exemptHit++;
        if (all.some((x) => x[1])) signedHit++;
      }
    }
    assert.ok(exemptHit > 1000, `bodies with an exempt field: ${exemptHit}`);
    assert.ok(signedHit > 100, `bodies with a signed thinking block: ${signedHit}`);
  });
});
