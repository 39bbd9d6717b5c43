import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { HeaderList } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  sendRequest,
  startHarness,
  waitFor,
  type Harness,
} from './harness.js';

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: masking-privacy-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: anthropic
    cluster: sluice/backend/anthropic
    provider: anthropic
    credential: { value: sk-ant-backend-0003 }
routes:
  - name: masked
    models: [{ exact: gpt-masked }]
    backends: [{ name: openai }]
    policy: { name: pii, masking: { systemNote: true } }
  - name: blocking
    models: [{ exact: gpt-block }]
    backends: [{ name: openai }]
    policy: { name: strict, masking: { actions: { CREDIT_CARD: block } } }
  - name: shadow
    models: [{ exact: gpt-shadow }]
    backends: [{ name: openai }]
    policy: { name: watch, mode: shadow, masking: {} }
  - name: claude
    models: [{ prefix: 'claude-' }]
    backends: [{ name: anthropic }]
    policy: { name: pii, masking: { defaultAction: hash } }
`;

let h: Harness;
before(async () => {
  h = await startHarness(CONFIG);
});
after(async () => {
  await h.stop();
});

/** One value of every built-in type, each in a form the detectors find. */
const VALUES = [
  'jane.doe@example.com',
  '+1 415 555 0132',
  '4111 1111 1111 1111',
  'DE89 3704 0044 0532 0130 00',
  '536-22-8974',
  '192.168.17.42',
  'AKIAIOSFODNN7EXAMPLE',
];
const PROMPT = `Email ${VALUES[0]}, phone ${VALUES[1]}, card ${VALUES[2]}, IBAN ${VALUES[3]}, SSN ${VALUES[4]}, host ${VALUES[5]}, key ${VALUES[6]}.`;

function leaks(text: string): string[] {
  return VALUES.filter((v) => text.includes(v));
}

describe('privacy with masking on: values reach neither the provider nor the logs, and come back whole', () => {
  it('a run full of PII: JSON, SSE, Anthropic, blocked, shadow and failing requests', async () => {
    const session: HeaderList = [['x-sluice-session', 'privacy-run']];
    const sentToProviders: string[] = [];

    // JSON chat: the model repeats every placeholder it saw.
    const chat = await sendRequest(
      h,
      chatHeaders(session),
      { model: 'gpt-masked', messages: [{ role: 'user', content: PROMPT }] },
      'sluice/backend/openai',
    );
    const up = continued(chat.upstream).body.toString();
    sentToProviders.push(up);
    const echoed = (JSON.parse(up) as { messages: { content: string }[] }).messages.at(-1)!.content;
    const res = continued(
      await chat.router.runResponse(
        [
          [':status', '200'],
          ['content-type', 'application/json'],
        ],
        [
          Buffer.from(
            JSON.stringify({
              choices: [{ index: 0, message: { role: 'assistant', content: echoed } }],
            }),
          ),
        ],
      ),
    );
    const answer = (
      JSON.parse(res.body.toString()) as { choices: { message: { content: string } }[] }
    ).choices[0]!.message.content;
    assert.equal(answer, PROMPT, 'the client gets the exact original back');

    // Streamed chat, the echo cut into 3-byte pieces.
    const sse = await sendRequest(
      h,
      chatHeaders(session),
      { model: 'gpt-masked', stream: true, messages: [{ role: 'user', content: PROMPT }] },
      'sluice/backend/openai',
    );
    sentToProviders.push(continued(sse.upstream).body.toString());
    const words = echoed.match(/.{1,5}/g)!;
    const stream =
      words
        .map(
          (w) =>
            `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n\n`,
        )
        .join('') +
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n` +
      'data: [DONE]\n\n';
    const s = sse.router.streamResponse([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    await s.headers;
    const got: Buffer[] = [];
    const reading = (async () => {
      for await (const c of s) got.push(c.data);
    })();
    const bytes = Buffer.from(stream);
    for (let i = 0; i < bytes.length; i += 3) s.write(bytes.subarray(i, i + 3));
    s.end();
    await reading;
    const streamed = Buffer.concat(got)
      .toString()
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map(
        (e) =>
          (JSON.parse(e.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]!
            .delta.content ?? '',
      )
      .join('');
    assert.equal(streamed, PROMPT);

    // Anthropic, blocked, shadow and a failing detector: all logged, none with values.
    const a = await sendRequest(
      h,
      chatHeaders([], '/v1/messages'),
      {
        model: 'claude-x',
        max_tokens: 9,
        system: PROMPT,
        messages: [{ role: 'user', content: PROMPT }],
      },
      'sluice/backend/anthropic',
    );
    sentToProviders.push(continued(a.upstream).body.toString());
    a.router.close();
    const blocked = await sendRequest(
      h,
      chatHeaders(),
      { model: 'gpt-block', messages: [{ role: 'user', content: PROMPT }] },
      'sluice/backend/openai',
    );
    assert.equal(blocked.routed.kind, 'local-reply');
    if (blocked.routed.kind === 'local-reply')
      assert.deepEqual(leaks(blocked.routed.body.toString()), []);
    const shadow = await sendRequest(
      h,
      chatHeaders(),
      { model: 'gpt-shadow', messages: [{ role: 'user', content: PROMPT }] },
      'sluice/backend/openai',
    );
    shadow.router.close();
    await waitFor(() => h.ext.pendingRequests === 0);
    await waitFor(() => accessLines(h).length >= 5);

    for (const body of sentToProviders)
      assert.deepEqual(leaks(body), [], 'the provider sees no original value');
    const logs = h.logs.join('\n');
    assert.deepEqual(leaks(logs), [], 'no log line holds a value');
    const metrics = await h.registry.metrics();
    assert.deepEqual(leaks(metrics), []);
    const masked = accessLines(h).filter((l) => l.route === 'masked');
    assert.ok(masked.length >= 2);
    for (const l of masked)
      assert.ok((l.findings as unknown[]).length >= 7, 'findings are counted by type');
  });
});
