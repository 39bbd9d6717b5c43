import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Operation } from '../providers/endpoints.js';
import { SseParser } from '../usage/sse.js';
import { OutputTransform, Tally } from './engine.js';
import { compileMasking } from './compiled.js';
import { SseMasking } from './sse.js';
import { RequestVault } from './vault.js';
import { MaskingPolicy } from '../config/contract.js';

/** A small deterministic generator (mulberry32), so a failing seed can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VALUES: [string, string][] = [
  ['EMAIL', 'jane.doe@example.com'],
  ['EMAIL', "o'brien+x@mail.example.org"],
  ['CREDIT_CARD', '4111 1111 1111 1111'],
  ['PHONE', '+1 415 555 0132'],
  ['IP_ADDRESS', '10.20.30.40'],
  ['US_SSN', '536-22-8974'],
];
const WORDS = [
  'the',
  'refund',
  'was',
  'sent',
  'to',
  'and',
  'then',
  'über',
  '🌍',
  '[not',
  'a]',
  'x[',
  '[EMAIL',
  '_',
  'ok,',
];

function scenario(r: () => number): { original: string; masked: string; vault: RequestVault } {
  const vault = new RequestVault();
  let original = '';
  let masked = '';
  const n = 5 + Math.floor(r() * 25);
  for (let i = 0; i < n; i++) {
    const sep = i === 0 ? '' : r() < 0.2 ? '' : ' ';
    if (r() < 0.35) {
      const [type, value] = VALUES[Math.floor(r() * VALUES.length)]!;
      const [p] = vault.put([{ type, value }]);
      original += sep + value;
      masked += sep + p!;
    } else {
      const w = WORDS[Math.floor(r() * WORDS.length)]!;
      original += sep + w;
      masked += sep + w;
    }
  }
  return { original, masked, vault };
}

/** Cuts a string into pieces at random code-unit positions (placeholders split anywhere). */
function pieces(s: string, r: () => number): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < s.length) {
    let len = 1 + Math.floor(r() * 6);
    // Never split a surrogate pair: a JSON string delta cannot carry half a character.
    if (at + len < s.length && /[\uD800-\uDBFF]/.test(s[at + len - 1]!)) len++;
    out.push(s.slice(at, at + len));
    at += len;
  }
  return out;
}

function cutBytes(b: Buffer, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < b.length) {
    const len = 1 + Math.floor(r() * 40);
    out.push(b.subarray(at, at + len));
    at += len;
  }
  return out;
}

function openaiStream(deltas: string[]): string {
  const ev = (o: object): string => `data: ${JSON.stringify(o)}\n\n`;
  return (
    deltas
      .map((d) =>
        ev({ id: 'c', choices: [{ index: 0, delta: { content: d }, finish_reason: null }] }),
      )
      .join('') +
    ev({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
    'data: [DONE]\n\n'
  );
}

function anthropicStream(deltas: string[]): string {
  const ev = (name: string, o: object): string => `event: ${name}\ndata: ${JSON.stringify(o)}\n\n`;
  return (
    ev('content_block_start', {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    }) +
    deltas
      .map((text) =>
        ev('content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'text_delta', text },
        }),
      )
      .join('') +
    ev('content_block_stop', { type: 'content_block_stop', index: 0 }) +
    ev('message_stop', { type: 'message_stop' })
  );
}

function responsesStream(deltas: string[]): string {
  const ev = (name: string, o: object): string => `event: ${name}\ndata: ${JSON.stringify(o)}\n\n`;
  return (
    deltas
      .map((delta, i) =>
        ev('response.output_text.delta', {
          type: 'response.output_text.delta',
          item_id: 'm',
          output_index: 0,
          content_index: 0,
          delta,
          sequence_number: i,
        }),
      )
      .join('') +
    ev('response.output_text.done', {
      type: 'response.output_text.done',
      item_id: 'm',
      output_index: 0,
      content_index: 0,
      text: deltas.join(''),
    })
  );
}

function clientText(op: Operation, out: string): { streamed: string; done?: string } {
  let streamed = '';
  let done: string | undefined;
  for (const block of out.split('\n\n')) {
    const line = block.split('\n').find((l) => l.startsWith('data: {'));
    if (!line) continue;
    const o = JSON.parse(line.slice(6)) as Record<string, any>;
    if (op === 'chat') streamed += o.choices?.[0]?.delta?.content ?? '';
    else if (op === 'messages') streamed += o.type === 'content_block_delta' ? o.delta.text : '';
    else if (o.type === 'response.output_text.delta') streamed += o.delta;
    else if (o.type === 'response.output_text.done') done = o.text;
  }
  return done === undefined ? { streamed } : { streamed, done };
}

function run(op: Operation, scan: boolean, seed: number): void {
  const r = rng(seed);
  const { original, masked, vault } = scenario(r);
  const masking = compileMasking(MaskingPolicy.parse({ scanResponses: scan }));
  const t = new OutputTransform(masking, false, vault, new Tally());
  const m = new SseMasking(op, t);
  const deltas = pieces(masked, r);
  const stream =
    op === 'chat'
      ? openaiStream(deltas)
      : op === 'messages'
        ? anthropicStream(deltas)
        : responsesStream(deltas);
  const parser = new SseParser();
  const out: Buffer[] = [];
  for (const c of cutBytes(Buffer.from(stream), r))
    for (const e of parser.push(c)) out.push(...m.onEvent(e));
  out.push(...m.end());
  const got = clientText(op, Buffer.concat(out).toString('utf8'));
  assert.equal(got.streamed, original, `seed ${seed}: the client gets the exact original`);
  if (got.done !== undefined) assert.equal(got.done, original, `seed ${seed}: done event restored`);
  for (const p of masked.match(/\[[A-Z_]+_\d+\]/g) ?? [])
    assert.ok(!got.streamed.includes(p) || original.includes(p), `seed ${seed}: ${p} leaked`);
}

describe('SSE restoring (property: random chunkings, placeholders split everywhere)', () => {
  for (const op of ['chat', 'messages', 'responses'] as const) {
    for (const scan of [false, true]) {
      it(`${op}, response scanning ${scan ? 'on' : 'off'}: 150 seeds`, () => {
        for (let seed = 1; seed <= 150; seed++) run(op, scan, seed * 7919 + (scan ? 1 : 0));
      });
    }
  }

  it('holds back at most the longest placeholder when scanning is off', () => {
    const masking = compileMasking(MaskingPolicy.parse({ scanResponses: false }));
    const vault = new RequestVault();
    vault.put([{ type: 'EMAIL', value: 'a@b.example' }]);
    const ch = new OutputTransform(masking, false, vault, new Tally()).channel();
    let out = '';
    let max = 0;
    for (const c of 'hi [EMAIL_1] and [EMAIL_123456 and [IP_ADDRESS_99'.split('')) {
      out += ch.push(c);
      max = Math.max(max, ch.held);
    }
    out += ch.flush();
    assert.equal(out, 'hi a@b.example and [EMAIL_123456 and [IP_ADDRESS_99');
    assert.ok(max <= masking.maxPlaceholderLength, `held ${max}`);
    // Text that cannot start a placeholder is never held.
    assert.equal(ch.push('plain text, no bracket'), 'plain text, no bracket');
  });

  it('masks new PII split across deltas of a stream', () => {
    const masking = compileMasking(MaskingPolicy.parse({}));
    const tally = new Tally();
    const m = new SseMasking(
      'chat',
      new OutputTransform(masking, false, new RequestVault(), tally),
    );
    const stream = openaiStream(['Write to bob.s', 'mith@corp.exa', 'mple.net today', ' please']);
    const parser = new SseParser();
    const out: Buffer[] = [];
    for (const e of parser.push(Buffer.from(stream))) out.push(...m.onEvent(e));
    const got = clientText('chat', Buffer.concat(out).toString('utf8')).streamed;
    assert.equal(got, 'Write to [EMAIL] today please');
    assert.deepEqual(tally.list(), [
      { direction: 'response', type: 'EMAIL', action: 'mask', count: 1 },
    ]);
  });

  it('keeps every other byte of a changed event', () => {
    const vault = new RequestVault();
    vault.put([{ type: 'EMAIL', value: 'a@b.example' }]);
    const masking = compileMasking(MaskingPolicy.parse({ scanResponses: false }));
    const m = new SseMasking('chat', new OutputTransform(masking, false, vault, new Tally()));
    const raw =
      'id: 7\r\ndata: {"id":"c", "choices":[{"index":0,"delta":{"content":"to [EMAIL_1]"},"logprobs":null,"finish_reason":null}], "x":1.50}\r\n\r\n';
    const [e] = new SseParser().push(Buffer.from(raw));
    const out = m.onEvent(e!);
    assert.equal(Buffer.concat(out).toString(), raw.replace('to [EMAIL_1]', 'to a@b.example'));
  });
});
