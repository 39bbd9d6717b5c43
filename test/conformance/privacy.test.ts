import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  chatHeaders,
  ROUTER,
  sendRequest,
  startHarness,
  waitFor,
  type Harness,
} from './harness.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.stop();
});

/** Values that must never appear in any log line, whatever happens to the request. */
const SENSITIVE = [
  'jane.doe@example.com',
  '4111 1111 1111 1111',
  'DE89370400440532013000',
  '078-05-1120',
  'AKIAIOSFODNN7EXAMPLE',
  'client-virtual-key-zzz',
  'sk-backend-openai-0001',
  'azure-backend-key-0002',
  'sk-ant-backend-0003',
  'my-session-cookie-value',
];

const prompt = `Email ${SENSITIVE[0]}, card ${SENSITIVE[1]}, IBAN ${SENSITIVE[2]}, SSN ${SENSITIVE[3]}, key ${SENSITIVE[4]}`;

describe('privacy: nothing sensitive reaches the logs', () => {
  it('logs no body content, credential or PII across successes, errors and aborts', async () => {
    const extra: [string, string][] = [['cookie', SENSITIVE[9]!]];
    // A successful request, with PII in the prompt and the answer.
    const ok = await sendRequest(
      h,
      chatHeaders(extra),
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] },
      'sluice/backend/openai',
    );
    await ok.router.runResponse(
      [
        [':status', '200'],
        ['content-type', 'application/json'],
      ],
      [
        Buffer.from(
          JSON.stringify({
            id: 'x',
            object: 'chat.completion',
            model: 'gpt-4o-mini',
            choices: [{ message: { role: 'assistant', content: prompt } }],
            usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
          }),
        ),
      ],
    );
    // Upstream phases for every backend (credentials are injected there).
    for (const cluster of ['sluice/backend/azure', 'sluice/backend/vllm']) {
      const r = await sendRequest(
        h,
        chatHeaders(extra),
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] },
        cluster,
      );
      r.router.close();
    }
    const a = await sendRequest(
      h,
      chatHeaders([['x-api-key', SENSITIVE[5]!]], '/v1/messages'),
      { model: 'claude-x', max_tokens: 5, messages: [{ role: 'user', content: prompt }] },
      'sluice/backend/anthropic',
    );
    a.router.close();
    // Errors whose natural messages would quote the input.
    const bad = [
      `{"model": "gpt-4o-mini", "messages": [{"content": "${prompt}"`,
      `{"model": "${SENSITIVE[0]}"}`,
      JSON.stringify({ model: 5, note: prompt }),
    ];
    for (const b of bad)
      await new ExtProcFilter(h.client, ROUTER).runRequest(chatHeaders(extra), [Buffer.from(b)]);
    // A stream aborted mid-way, with PII in the generated text.
    const s = await sendRequest(
      h,
      chatHeaders(extra),
      { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: prompt }] },
      'sluice/backend/openai',
    );
    const st = s.router.streamResponse([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    await st.headers;
    st.write(
      Buffer.from(`data: ${JSON.stringify({ choices: [{ delta: { content: prompt } }] })}\n\n`),
    );
    await st[Symbol.asyncIterator]().next();
    s.router.close();
    await waitFor(() => h.ext.pendingRequests === 0);

    const all = h.logs.join('\n');
    assert.ok(h.logs.length >= 8, `expected access lines for every request, got ${h.logs.length}`);
    for (const value of SENSITIVE)
      assert.ok(!all.includes(value), `a log line contains ${value.slice(0, 4)}…`);
    // The model name a client sent is shown only when it is one we serve (bounded, not free text).
    assert.ok(!all.includes('example.com'));
  });
});
