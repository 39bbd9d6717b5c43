// Claude on Vertex AI from both caller APIs: the Messages body without `model`, with
// anthropic_version vertex-2023-10-16, at the publisher model's rawPredict / streamRawPredict
// path; the gateway's output cap; document URLs refused; a 2xx answer untouched for Anthropic
// callers and translated for OpenAI callers (whole and streamed, cut anywhere); both error shapes
// (Google's front door, the model's own) in the caller's format.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { anthropicToAnthropicVertex } from './anthropic-to-anthropic-vertex.js';
import { openaiToAnthropicVertex } from './openai-to-anthropic-vertex.js';
import { backendApi } from './provider.js';
import { translatorFor } from './index.js';
import type { ExchangeRequest, ResponseTranslator } from './translator.js';

const CTX = { created: 1_700_000_000, maxEventBytes: 1 << 20 };

const VERTEX: ResolvedBackend = {
  name: 'ns/r/claude',
  cluster: 'c',
  provider: 'gcp-vertex',
  credential: undefined,
  modelOverride: 'claude-sonnet-4@20250514',
  gcp: { project: 'my-proj', region: 'us-east5', publisher: 'anthropic' },
};

function req(
  api: 'openai' | 'anthropic',
  body: Record<string, unknown>,
  cap?: number,
): ExchangeRequest {
  return {
    api,
    operation: api === 'openai' ? 'chat' : 'messages',
    model: String(body.model),
    body,
    stream: body.stream === true,
    forcedUsage: false,
    outputTokenCap: cap,
  };
}

function sent(up: { body: Buffer | undefined }): Record<string, unknown> {
  return JSON.parse(up.body!.toString('utf8')) as Record<string, unknown>;
}

const BASE = '/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models';

describe('Claude on Vertex AI: which translator', () => {
  it('a Vertex backend of publisher anthropic speaks anthropic-vertex; embeddings reach none', () => {
    assert.equal(backendApi(VERTEX), 'anthropic-vertex');
    assert.equal(
      backendApi({
        provider: 'gcp-vertex',
        gcp: VERTEX.gcp && { ...VERTEX.gcp, publisher: 'google' },
      }),
      'gemini',
    );
    assert.equal(
      translatorFor('anthropic', 'messages', 'anthropic-vertex'),
      anthropicToAnthropicVertex,
    );
    assert.equal(translatorFor('openai', 'chat', 'anthropic-vertex'), openaiToAnthropicVertex);
    assert.equal(translatorFor('openai', 'embeddings', 'anthropic-vertex'), undefined);
  });
});

describe('Anthropic Messages → Claude on Vertex AI', () => {
  it('rawPredict: no model in the body, the Vertex version, the rest as written', () => {
    const up = anthropicToAnthropicVertex.request(
      req('anthropic', {
        model: 'claude-x',
        max_tokens: 100,
        system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: 'hi' }],
        tools: [{ type: 'web_search_20250305', name: 'web_search' }],
      }),
      VERTEX,
    );
    assert.equal(up.path, `${BASE}/claude-sonnet-4%4020250514:rawPredict`);
    assert.deepEqual(sent(up), {
      anthropic_version: 'vertex-2023-10-16',
      max_tokens: 100,
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: 'hi' }],
      tools: [{ type: 'web_search_20250305', name: 'web_search' }],
    });
  });

  it('streamRawPredict for a stream (stream stays in the body); max_tokens held to the cap', () => {
    const up = anthropicToAnthropicVertex.request(
      req(
        'anthropic',
        { model: 'c', max_tokens: 5000, stream: true, messages: [{ role: 'user', content: 'x' }] },
        64,
      ),
      { ...VERTEX, modelOverride: undefined },
    );
    assert.equal(up.path, `${BASE}/c:streamRawPredict`);
    const b = sent(up);
    assert.equal(b.stream, true);
    assert.equal(b.max_tokens, 64);
  });

  it('the endpoint URL’s own version segment and path are kept', () => {
    const up = anthropicToAnthropicVertex.request(
      req('anthropic', { model: 'c', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] }),
      { ...VERTEX, pathPrefix: '/proxy/v1beta1', modelOverride: undefined },
    );
    assert.equal(
      up.path,
      '/proxy/v1beta1/projects/my-proj/locations/us-east5/publishers/anthropic/models/c:rawPredict',
    );
  });

  it('a document by URL is refused, naming the block (Vertex fetches none)', () => {
    assert.throws(
      () =>
        anthropicToAnthropicVertex.request(
          req('anthropic', {
            model: 'c',
            max_tokens: 1,
            messages: [
              {
                role: 'user',
                content: [
                  { type: 'text', text: 'read' },
                  { type: 'document', source: { type: 'url', url: 'https://x/y.pdf' } },
                ],
              },
            ],
          }),
          VERTEX,
        ),
      (e: unknown) =>
        e instanceof SluiceError &&
        e.code === 'unsupported_field' &&
        e.param === 'messages[0].content[1].source',
    );
  });

  it('a 2xx answer passes unread; errors of both shapes become Anthropic errors', () => {
    const rt = anthropicToAnthropicVertex.response(req('anthropic', { model: 'c' }), VERTEX, CTX)!;
    assert.equal(rt.headers(200, new Map([['content-type', 'text/event-stream']])).body, 'none');
    const rt2 = anthropicToAnthropicVertex.response(req('anthropic', { model: 'c' }), VERTEX, CTX)!;
    const start = rt2.headers(401, new Map([['content-type', 'application/json']]));
    assert.equal(start.body, 'whole');
    const google = JSON.stringify({
      error: {
        code: 401,
        message: 'Request had invalid authentication credentials.',
        status: 'UNAUTHENTICATED',
      },
    });
    assert.deepEqual(JSON.parse(rt2.error(401, Buffer.from(google)).toString()), {
      type: 'error',
      error: {
        type: 'authentication_error',
        message: 'Request had invalid authentication credentials.',
      },
    });
    const own = JSON.stringify({
      type: 'error',
      error: { type: 'overloaded_error', message: 'Overloaded' },
    });
    assert.deepEqual(JSON.parse(rt2.error(529, Buffer.from(own)).toString()), JSON.parse(own));
    assert.deepEqual(
      JSON.parse(rt2.error(502, Buffer.from('<html>bad gateway</html>')).toString()),
      {
        type: 'error',
        error: { type: 'api_error', message: 'The backend answered with status 502.' },
      },
    );
  });
});

describe('OpenAI Chat Completions → Claude on Vertex AI', () => {
  it('the Anthropic translation, sent the Vertex way, capped', () => {
    const up = openaiToAnthropicVertex.request(
      req(
        'openai',
        {
          model: 'gpt-ish',
          messages: [
            { role: 'system', content: 'sys' },
            { role: 'user', content: 'hello' },
          ],
          max_tokens: 900,
          stream: true,
          stream_options: { include_usage: true },
        },
        100,
      ),
      VERTEX,
    );
    assert.equal(up.path, `${BASE}/claude-sonnet-4%4020250514:streamRawPredict`);
    const b = sent(up);
    assert.equal('model' in b, false);
    assert.equal(b.anthropic_version, 'vertex-2023-10-16');
    assert.equal(b.max_tokens, 100);
    assert.equal(b.stream, true);
    assert.deepEqual(b.system, [{ type: 'text', text: 'sys' }]);
    assert.deepEqual(b.messages, [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }]);
  });

  it('the answer translated back, whole and as a stream cut at every byte', () => {
    const r = req('openai', { model: 'gpt-ish', messages: [{ role: 'user', content: 'x' }] });
    const whole = openaiToAnthropicVertex.response(r, VERTEX, CTX)!;
    whole.headers(200, new Map([['content-type', 'application/json']]));
    const out = JSON.parse(
      whole
        .json(
          Buffer.from(
            JSON.stringify({
              id: 'msg_vrtx_1',
              type: 'message',
              role: 'assistant',
              model: 'claude-sonnet-4',
              content: [{ type: 'text', text: 'hi there' }],
              stop_reason: 'end_turn',
              usage: { input_tokens: 5, output_tokens: 2 },
            }),
          ),
        )
        .toString(),
    ) as { choices: { message: { content: string } }[]; usage: { prompt_tokens: number } };
    assert.equal(out.choices[0]!.message.content, 'hi there');
    assert.equal(out.usage.prompt_tokens, 5);

    const ev = (type: string, d: Record<string, unknown>): string =>
      `event: ${type}\ndata: ${JSON.stringify({ type, ...d })}\n\n`;
    const sse =
      ev('message_start', {
        message: {
          id: 'msg_vrtx_2',
          model: 'claude',
          usage: { input_tokens: 3, output_tokens: 1 },
        },
      }) +
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Grüße' } }) +
      ev('content_block_stop', { index: 0 }) +
      ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 4 } }) +
      ev('message_stop', {});
    const rs = { ...r, stream: true, body: { ...r.body, stream: true } };
    const through = (cuts: number[]): string => {
      const rt: ResponseTranslator = openaiToAnthropicVertex.response(rs, VERTEX, CTX)!;
      rt.headers(200, new Map([['content-type', 'text/event-stream']]));
      const bytes = Buffer.from(sse);
      const parts: Buffer[] = [];
      let at = 0;
      for (const c of [...cuts, bytes.length]) {
        parts.push(rt.stream(bytes.subarray(at, c), c === bytes.length));
        at = c;
      }
      return Buffer.concat(parts).toString();
    };
    const all = through([]);
    assert.match(all, /"content":"Grüße"/);
    assert.match(all, /"finish_reason":"stop"/);
    assert.match(all, /data: \[DONE\]/);
    for (let c = 1; c < Buffer.byteLength(sse); c += 7)
      assert.equal(through([c]), all, `cut at ${c}`);
  });

  it('Google’s front-door error as an OpenAI error', () => {
    const rt = openaiToAnthropicVertex.response(
      req('openai', { model: 'm', messages: [] }),
      VERTEX,
      CTX,
    )!;
    rt.headers(429, new Map([['content-type', 'application/json']]));
    const e = JSON.parse(
      rt
        .error(
          429,
          Buffer.from(
            JSON.stringify({
              error: { code: 429, message: 'Quota exceeded.', status: 'RESOURCE_EXHAUSTED' },
            }),
          ),
        )
        .toString(),
    ) as { error: { message: string; type: string; code: string } };
    assert.equal(e.error.message, 'Quota exceeded.');
    assert.equal(e.error.code, 'rate_limit_error');
  });
});
