// The whole request path with the official SDKs: app → data plane (Envoy or envoy-sim) → extproc
// → mock providers, configured from YAML through the operator's translation and ADS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { KEYS, startHarness, until, type Harness } from './harness.js';

describe('e2e: standalone gateway with the official SDKs', () => {
  let h: Harness;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    h = await startHarness();
    openai = new OpenAI({ baseURL: `${h.gateway.url}/v1`, apiKey: KEYS.client, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: h.gateway.url, apiKey: KEYS.client, maxRetries: 0 });
  });
  after(async () => {
    await h?.close();
  });

  const accessFor = (
    pred: (e: Record<string, unknown>) => boolean,
  ): Record<string, unknown> | undefined => h.accessLog.find(pred);

  it('chat, non-streaming: answer, usage, credential injected, client key not forwarded', async () => {
    h.primary.take();
    const r = await openai.chat.completions.create({
      model: 'gpt-test',
      messages: [{ role: 'user', content: 'hello gateway' }],
    });
    assert.equal(r.choices[0]?.message.content, 'echo: hello gateway');
    assert.equal(r.usage?.prompt_tokens, 12);
    const [seen] = h.primary.take();
    assert.ok(seen);
    assert.equal(seen.path, '/v1/chat/completions');
    assert.equal(seen.headers['authorization'], `Bearer ${KEYS.primary}`);
    assert.ok(
      !JSON.stringify(seen.headers).includes(KEYS.client),
      'client key reached the provider',
    );
    assert.ok(!Object.keys(seen.headers).some((k) => k.startsWith('x-sluice-')));
  });

  it('chat, streaming with include_usage: usage arrives exactly once', async () => {
    const stream = await openai.chat.completions.create({
      model: 'gpt-test',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'count my tokens please' }],
    });
    let text = '';
    let usages = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usages++;
    }
    assert.equal(text, 'echo: count my tokens please');
    assert.equal(usages, 1);
  });

  it('chat, streaming without include_usage: the forced usage chunk stays invisible', async () => {
    h.primary.take();
    const stream = await openai.chat.completions.create({
      model: 'gpt-test',
      stream: true,
      messages: [{ role: 'user', content: 'no usage for me' }],
    });
    let text = '';
    let emptyChoiceChunks = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices.length === 0 || chunk.usage) emptyChoiceChunks++;
    }
    assert.equal(text, 'echo: no usage for me');
    assert.equal(emptyChoiceChunks, 0);
    const [seen] = h.primary.take();
    assert.deepEqual(seen?.json?.['stream_options'], { include_usage: true });
    const line = await until(() =>
      accessFor(
        (e) =>
          e['stream'] === true &&
          e['status'] === 200 &&
          (e['tokens'] as { input?: number } | undefined)?.input === 12,
      ),
    );
    assert.equal(line['outcome'], 'complete');
  });

  it('embeddings', async () => {
    const r = await openai.embeddings.create({ model: 'embed-test', input: ['a', 'b'] });
    assert.equal(r.data.length, 2);
    assert.equal(r.data[0]?.embedding.length, 4);
  });

  it('/v1/models lists the exact models the gateway serves', async () => {
    const ids: string[] = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    for (const id of ['gpt-test', 'embed-test', 'claude-test']) assert.ok(ids.includes(id), id);
  });

  it('Anthropic messages, JSON and streaming, with x-api-key injected', async () => {
    h.primary.take();
    const m = await anthropic.messages.create({
      model: 'claude-test',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi claude' }],
    });
    assert.equal(m.content[0]?.type === 'text' ? m.content[0].text : '', 'echo: hi claude');
    assert.equal(m.usage.input_tokens, 12);
    const [seen] = h.primary.take();
    assert.equal(seen?.headers['x-api-key'], KEYS.anthropic);
    assert.ok(seen?.headers['anthropic-version']);

    const stream = anthropic.messages.stream({
      model: 'claude-test',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'stream claude' }],
    });
    let text = '';
    stream.on('text', (t) => (text += t));
    const final = await stream.finalMessage();
    assert.equal(text, 'echo: stream claude');
    assert.ok(final.usage.output_tokens > 0);
  });

  it('unknown model → the SDK raises NotFoundError', async () => {
    await assert.rejects(
      openai.chat.completions.create({
        model: 'no-such-model',
        messages: [{ role: 'user', content: 'x' }],
      }),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
  });

  it('a body over the limit → 413', async () => {
    await assert.rejects(
      openai.chat.completions.create({
        model: 'gpt-test',
        messages: [{ role: 'user', content: 'x'.repeat(100 * 1024) }],
      }),
      (err: unknown) => err instanceof OpenAI.APIError && err.status === 413,
    );
  });

  it('falls back to the second backend on a 5xx', async () => {
    h.primary.take();
    h.secondary.take();
    h.primary.enqueue({ status: 500 });
    const r = await openai.chat.completions.create({
      model: 'gpt-test',
      messages: [{ role: 'user', content: 'fallback please' }],
    });
    assert.equal(r.choices[0]?.message.content, 'echo: fallback please');
    assert.equal(h.primary.take().length, 1);
    const [seen] = h.secondary.take();
    assert.equal(seen?.headers['authorization'], `Bearer ${KEYS.secondary}`);
  });

  it('falls back to the second backend when the first times out', async () => {
    h.primary.take();
    h.secondary.take();
    h.primary.enqueue({ delayMs: 3000 });
    const started = Date.now();
    const r = await openai.chat.completions.create({
      model: 'gpt-test',
      messages: [{ role: 'user', content: 'too slow' }],
    });
    assert.equal(r.choices[0]?.message.content, 'echo: too slow');
    assert.ok(Date.now() - started < 2500, 'the per-try timeout did not cut the slow attempt');
    assert.equal(h.secondary.take().length, 1);
  });

  it('client abort mid-stream → usage reconciled in the access log (aborted)', async () => {
    h.primary.enqueue({
      chunkDelayMs: 150,
      content: 'one two three four five six seven eight nine ten',
    });
    const controller = new AbortController();
    const stream = await openai.chat.completions.create(
      { model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'abort me' }] },
      { signal: controller.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) controller.abort();
      }
    } catch {
      // Aborting may end the iteration or throw, depending on where the SDK was.
    }
    assert.equal(chunks, 3);
    const line = await until(() =>
      accessFor(
        (e) =>
          e['outcome'] === 'aborted' && e['stream'] === true && e['request_model'] === 'gpt-test',
      ),
    );
    const tokens = line['tokens'] as { input: number; output: number } | undefined;
    assert.ok(tokens, 'no usage on the aborted request');
    assert.ok(tokens.output > 0);
  });

  it('a config change applies while traffic flows, without dropped requests', async () => {
    let stop = false;
    let ok = 0;
    const failures: unknown[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          await openai.chat.completions.create({
            model: 'gpt-test',
            messages: [{ role: 'user', content: 'steady' }],
          });
          ok++;
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const workers = [worker(), worker(), worker()];
    const before = h.gateway.version();
    await h.writeManifests('gpt-new');
    await until(() => h.gateway.version() !== before, 5000);
    let answer: string | null | undefined;
    const deadline = Date.now() + 5000;
    while (answer === undefined && Date.now() < deadline) {
      try {
        const r = await openai.chat.completions.create({
          model: 'gpt-new',
          messages: [{ role: 'user', content: 'new model' }],
        });
        answer = r.choices[0]?.message.content;
      } catch {
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    stop = true;
    await Promise.all(workers);
    assert.equal(answer, 'echo: new model');
    assert.deepEqual(failures, []);
    assert.ok(ok > 3);
  });
});
