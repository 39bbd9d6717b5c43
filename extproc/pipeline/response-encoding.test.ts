import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { Limits, Policy } from '../config/contract.js';
import { OutputTransform, Tally } from '../masking/engine.js';
import { compilePolicy } from '../policy/policy.js';
import { newPolicyState } from '../policy/state.js';
import { RequestVault } from '../masking/vault.js';
import { SluiceError } from '../errors.js';
import type { RequestState } from './request-store.js';
import { ResponseProcessor } from './response.js';

const limits = Limits.parse({ maxResponseBodyBytes: 64 * 1024 });

function req(): RequestState {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true };
  return {
    id: 'r1',
    api: 'openai',
    operation: 'chat',
    model: 'gpt-4o-mini',
    routeName: 'r',
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: true,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
  };
}

const sse = new Map([
  [':status', '200'],
  ['content-type', 'text/event-stream'],
  ['content-encoding', 'gzip'],
]);

describe('response phase: a gzip stream is decoded under a per-chunk bound', () => {
  it('a chunk that expands past maxResponseBodyBytes stops there: response_too_large', async () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    p.headers(sse, false);
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 64, 0x20));
    await assert.rejects(
      async () => p.body(bomb, false),
      (e) => e instanceof SluiceError && e.code === 'response_too_large',
    );
  });

  it('a long stream in small chunks passes whole, past the bound in all', async () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    p.headers(sse, false);
    const chunk = (s: string) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: s } }] })}\n\n`;
    const text =
      Array.from({ length: 60 }, () => chunk('y'.repeat(3000))).join('') + 'data: [DONE]\n\n';
    const raw = gzipSync(text);
    const cut = Math.ceil(raw.length / 30);
    let out = '';
    for (let i = 0; i < raw.length; i += cut) {
      const o = await p.body(raw.subarray(i, i + cut), i + cut >= raw.length);
      if (o.kind === 'continue' && o.mutation?.body) out += o.mutation.body.toString('utf8');
    }
    assert.equal(out, text);
  });
});

describe('response phase: an encoding it cannot decode, on a masking route', () => {
  it('passes unread and is recorded as response_unscanned', async () => {
    const policy = newPolicyState(compilePolicy(Policy.parse({ name: 'p', masking: {} })));
    const vault = new RequestVault();
    vault.put([{ type: 'EMAIL', value: 'a@b.example' }]);
    policy.output = new OutputTransform(policy.policy.masking!, false, vault, new Tally());
    const p = new ResponseProcessor({ ...req(), stream: false, policy }, limits, () => 0, 0);
    p.headers(
      new Map([
        [':status', '200'],
        ['content-type', 'application/json'],
        ['content-encoding', 'zstd'],
      ]),
      false,
    );
    const o = await p.body(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), true, true);
    assert.equal(o.kind, 'continue');
    assert.deepEqual([...policy.verdicts], ['response_unscanned']);
  });
});

describe('response phase: a whole JSON answer on a masking route', () => {
  async function answer(text: string): Promise<string | undefined> {
    const policy = newPolicyState(compilePolicy(Policy.parse({ name: 'p', masking: {} })));
    const vault = new RequestVault();
    vault.put([{ type: 'EMAIL', value: 'a@b.example' }]);
    policy.output = new OutputTransform(policy.policy.masking!, false, vault, new Tally());
    const p = new ResponseProcessor({ ...req(), stream: false, policy }, limits, () => 0, 0);
    p.headers(
      new Map([
        [':status', '200'],
        ['content-type', 'application/json'],
        ['content-length', String(Buffer.byteLength(text))],
      ]),
      false,
    );
    const o = await p.body(Buffer.from(text), true, true);
    assert.equal(o.kind, 'continue');
    const body = o.kind === 'continue' ? o.mutation?.body?.toString('utf8') : undefined;
    if (body !== undefined) {
      const length = o.kind === 'continue' ? o.mutation?.setHeaders : undefined;
      assert.deepEqual(length, [['content-length', String(Buffer.byteLength(body))]]);
    }
    return body;
  }

  it('restores placeholders into the answer as the provider wrote it', async () => {
    const text =
      '{\n  "id": "c1",\n  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Write to [EMAIL_1] or \\u005bEMAIL_1]."}}],\n  "usage": {"prompt_tokens": 3, "completion_tokens": 2.0}\n}';
    assert.equal(
      await answer(text),
      '{\n  "id": "c1",\n  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Write to a@b.example or a@b.example."}}],\n  "usage": {"prompt_tokens": 3, "completion_tokens": 2.0}\n}',
    );
  });

  it('writes the answer again where the bytes do not hold what was read', async () => {
    // A repeated key: JSON.parse keeps the last one, which is what is restored and sent.
    assert.equal(
      await answer('{"id": "c1", "id": "c2", "choices": [{"message": {"content": "[EMAIL_1]"}}]}'),
      '{"id":"c2","choices":[{"message":{"content":"a@b.example"}}]}',
    );
    // Tool-call arguments: JSON in a string, written back by the walk.
    assert.equal(
      await answer(
        '{"choices": [{"message": {"tool_calls": [{"id": "t", "function": {"arguments": "{\\"to\\": \\"[EMAIL_1]\\"}"}}]}}]}',
      ),
      '{"choices":[{"message":{"tool_calls":[{"id":"t","function":{"arguments":"{\\"to\\":\\"a@b.example\\"}"}}]}}]}',
    );
  });
});
