/**
 * JSON answers larger than Envoy buffers (issue 11, item 4): switched to STREAMED at the headers,
 * passed on chunk by chunk untouched, and billed from the usage they report.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Limits } from '../config/contract.js';
import type { GovernanceState } from './governance.js';
import type { Mutation, Outcome } from '../wire/mutation.js';
import type { RequestState } from './request-store.js';
import { ResponseProcessor } from './response.js';

const limits = Limits.parse({ maxResponseBodyBytes: 64 * 1024 });

function req(): RequestState {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Write a lot' }] };
  return {
    id: 'r1',
    api: 'openai',
    operation: 'chat',
    model: 'gpt-4o-mini',
    routeName: 'r',
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: false,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
  };
}

function mutationOf(o: Outcome): Mutation | undefined {
  assert.equal(o.kind, 'continue');
  return o.kind === 'continue' ? o.mutation : undefined;
}

/** An answer of about `bytes` bytes reporting a large usage after its content. */
function bigAnswer(bytes: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-big',
      object: 'chat.completion',
      model: 'gpt-4o-mini-2024-07-18',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'word '.repeat(Math.ceil(bytes / 5)) },
          finish_reason: 'length',
        },
      ],
      usage: { prompt_tokens: 11, completion_tokens: 2_000_000, total_tokens: 2_000_011 },
    }),
  );
}

const jsonHeaders = (extra: [string, string][] = []) =>
  new Map<string, string>([[':status', '200'], ['content-type', 'application/json'], ...extra]);

describe('response: JSON answers over the buffer limit', () => {
  for (const [label, length] of [
    ['larger than the limit', (b: Buffer) => String(b.length)],
    ['of unknown length', () => undefined],
  ] as const) {
    it(`an answer ${label} is streamed through unchanged and billed from its usage`, async () => {
      const body = bigAnswer(300 * 1024);
      const declared = length(body);
      const p = new ResponseProcessor(req(), limits, () => 0, 0);
      const m = mutationOf(
        p.headers(jsonHeaders(declared === undefined ? [] : [['content-length', declared]]), false),
      );
      assert.deepEqual(m?.modeOverride, { requestBody: 'BUFFERED', responseBody: 'STREAMED' });
      // The bytes are not changed, so a declared length stays true.
      assert.ok(!m?.removeHeaders?.includes('content-length'));
      // Chunks as the network cuts them; the router filter's configured mode is BUFFERED.
      for (let at = 0; at < body.length; at += 16 * 1024) {
        const piece = body.subarray(at, at + 16 * 1024);
        const o = await p.body(piece, at + 16 * 1024 >= body.length, true);
        assert.equal(mutationOf(o), undefined, 'each chunk goes on as it came');
      }
      const r = p.result();
      assert.equal(r.usage?.estimated, false);
      assert.equal(r.usage?.outputTokens, 2_000_000);
      assert.equal(r.usage?.inputTokens, 11);
      assert.equal(r.model, 'gpt-4o-mini-2024-07-18');
    });
  }

  it('an answer whose declared length fits keeps the BUFFERED mode', () => {
    const p = new ResponseProcessor(req(), limits, () => 0, 0);
    const m = mutationOf(p.headers(jsonHeaders([['content-length', '1000']]), false));
    assert.equal(m?.modeOverride, undefined);
    for (const bad of ['-1', '1e3', ' 1', '99999999999999999999']) {
      const q = new ResponseProcessor(req(), limits, () => 0, 0);
      const n = mutationOf(q.headers(jsonHeaders([['content-length', bad]]), false));
      assert.equal(n?.modeOverride?.responseBody, 'STREAMED', bad);
    }
  });

  it('an answer without usage is charged its prompt estimate and the output reserved for it', async () => {
    const answer = Buffer.from('{"choices":[{"message":{"content":"hi"}}]}');
    const unlimited = new ResponseProcessor(req(), limits, () => 0, 0);
    unlimited.headers(jsonHeaders(), false);
    await unlimited.body(answer, true, true);
    const prompt = unlimited.result().usage!;
    assert.equal(prompt.estimated, true);
    assert.equal(prompt.outputTokens, 0, 'nothing was reserved, so nothing is assumed');

    const governed = { ...req(), governance: { outputReserved: 1500 } as GovernanceState };
    const p = new ResponseProcessor(governed, limits, () => 0, 0);
    p.headers(jsonHeaders(), false);
    await p.body(answer, true, true);
    const u = p.result().usage!;
    assert.deepEqual(
      {
        estimated: u.estimated,
        input: u.inputTokens,
        output: u.outputTokens,
        total: u.totalTokens,
      },
      {
        estimated: true,
        input: prompt.inputTokens,
        output: 1500,
        total: prompt.inputTokens + 1500,
      },
    );
    // An encoding the gateway cannot decode is not read at all: charged the same way.
    const z = new ResponseProcessor(governed, limits, () => 0, 0);
    z.headers(jsonHeaders([['content-encoding', 'zstd']]), false);
    await z.body(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), true, true);
    assert.equal(z.result().usage?.outputTokens, 1500);
  });
});
