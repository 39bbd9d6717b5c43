// Envoy's own replies (connect failure, TLS failure, no healthy upstream, timeout) through the
// router filter's response phase, told apart from a backend's response by the response attribute
// `response.code_details` that the operator requests: `via_upstream` for a backend's response,
// the reason for a local reply.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WIRE } from '../../extproc/config/contract.js';
import type {
  ExtProcFilter,
  HeaderList,
  LocalReply,
} from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  get,
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

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };
const MESSAGES = {
  model: 'claude-test',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'hello' }],
};
const TLS_DETAILS =
  'upstream_reset_before_response_started{connection_failure,TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED}';
const TLS_BODY =
  'upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED';

async function routed(api: 'openai' | 'anthropic'): Promise<ExtProcFilter> {
  const { router, routed: r } =
    api === 'openai'
      ? await sendRequest(h, chatHeaders(), CHAT, 'sluice/backend/openai')
      : await sendRequest(
          h,
          chatHeaders([['anthropic-version', '2023-06-01']], '/v1/messages'),
          MESSAGES,
          'sluice/backend/anthropic',
        );
  continued(r);
  return router;
}

/** Envoy's local reply as its filter manager encodes it: text/plain with a content-length. */
function envoyReply(status: number, body: string): [HeaderList, Buffer[]] {
  const headers: HeaderList = [[':status', String(status)]];
  if (body) {
    headers.push(['content-length', String(Buffer.byteLength(body))]);
    headers.push(['content-type', 'text/plain']);
  }
  return [headers, body ? [Buffer.from(body)] : []];
}

function replied(r: Awaited<ReturnType<ExtProcFilter['runResponse']>>): LocalReply {
  if (r.kind !== 'local-reply') {
    throw new Error(`expected an immediate response, got ${r.kind} ${r.body.toString()}`);
  }
  return r;
}

describe('conformance: the data plane’s own replies, in the caller’s format', () => {
  it('a TLS verification failure (503) → OpenAI error object, nothing internal', async () => {
    const router = await routed('openai');
    router.response.setAttributes({ [WIRE.codeDetailsAttribute]: TLS_DETAILS });
    const r = replied(await router.runResponse(...envoyReply(503, TLS_BODY)));
    assert.deepEqual(r.violations, []);
    assert.equal(r.status, 503);
    assert.equal(get(r.headers, 'content-type'), 'application/json');
    assert.equal(get(r.headers, 'x-sluice-error-code'), 'upstream_unavailable');
    assert.equal(r.details, 'sluice_upstream_unavailable');
    const body = r.body.toString();
    const parsed = JSON.parse(body) as { error: Record<string, unknown> };
    assert.equal(parsed.error['code'], 'upstream_unavailable');
    assert.equal(parsed.error['type'], 'server_error');
    assert.equal(typeof parsed.error['message'], 'string');
    for (const leak of ['reset reason', 'UNABLE_TO_VERIFY', 'CERTIFICATE_VERIFY', 'TLS_error']) {
      assert.ok(!body.includes(leak), `${leak} leaked: ${body}`);
    }
    // Our request id, so the caller can quote it; the detail is for the operator's log.
    const id = get(r.headers, WIRE.requestIdHeader);
    assert.ok(id);
    await waitFor(() => accessLines(h).some((l) => l.request_id === id));
    const line = accessLines(h).find((l) => l.request_id === id)!;
    assert.equal(line.level, 40, 'logged at warn');
    assert.equal(line.status, 503);
    assert.equal(line.error_code, 'upstream_unavailable');
    assert.deepEqual(line.local_reply, { status: 503, details: TLS_DETAILS });
    assert.ok(!JSON.stringify(line).includes('reset reason'), 'the reply body is not logged');
  });

  it('a refused connection on /v1/messages → Anthropic error object', async () => {
    const router = await routed('anthropic');
    router.response.setAttributes({
      [WIRE.codeDetailsAttribute]:
        'upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}',
    });
    const r = replied(
      await router.runResponse(
        ...envoyReply(
          503,
          'upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111',
        ),
      ),
    );
    assert.equal(r.status, 503);
    const parsed = JSON.parse(r.body.toString()) as {
      type: string;
      error: { type: string; message: string };
    };
    assert.equal(parsed.type, 'error');
    assert.equal(parsed.error.type, 'overloaded_error');
    assert.ok(!parsed.error.message.includes('reset'));
  });

  it('an upstream timeout (504, no body) → 504 upstream_timeout', async () => {
    const router = await routed('openai');
    router.response.setAttributes({ [WIRE.codeDetailsAttribute]: 'response_timeout' });
    const r = replied(await router.runResponse(...envoyReply(504, 'upstream request timeout')));
    assert.equal(r.status, 504);
    assert.equal(get(r.headers, 'x-sluice-error-code'), 'upstream_timeout');
    const empty = await routed('openai');
    empty.response.setAttributes({ [WIRE.codeDetailsAttribute]: 'upstream_per_try_timeout' });
    const e = replied(await empty.runResponse(...envoyReply(504, '')));
    assert.equal(e.status, 504);
  });

  it('a direct response of a route is answered in the caller’s own format, code kept', async () => {
    const router = await routed('anthropic');
    router.response.setAttributes({ [WIRE.codeDetailsAttribute]: 'direct_response' });
    const openaiBody = JSON.stringify({
      error: {
        message: 'No rule of route e2e/claude matches this request.',
        type: 'invalid_request_error',
        param: 'model',
        code: 'no_matching_rule',
      },
    });
    const r = replied(
      await router.runResponse(
        [
          [':status', '404'],
          ['content-type', 'application/json'],
          ['x-sluice-error-code', 'no_matching_rule'],
        ],
        [Buffer.from(openaiBody)],
      ),
    );
    assert.equal(r.status, 404);
    const parsed = JSON.parse(r.body.toString()) as { type: string; error: { type: string } };
    assert.equal(parsed.type, 'error');
    assert.equal(parsed.error.type, 'not_found_error');
    assert.equal(get(r.headers, 'x-sluice-error-code'), 'no_matching_rule');
  });

  it("a provider's own error (via_upstream) passes through untouched", async () => {
    for (const status of ['429', '500', '503']) {
      const router = await routed('openai');
      router.response.setAttributes({ [WIRE.codeDetailsAttribute]: 'via_upstream' });
      const err = Buffer.from(
        JSON.stringify({
          error: { message: 'provider says no', type: 'x', code: 'provider_code' },
        }),
      );
      const r = continued(
        await router.runResponse(
          [
            [':status', status],
            ['content-type', 'application/json'],
            ['retry-after', '3'],
          ],
          [err],
        ),
      );
      assert.deepEqual(r.violations, []);
      assert.deepEqual(r.body, err);
      assert.equal(get(r.headers, ':status'), status);
      assert.equal(get(r.headers, 'retry-after'), '3');
      assert.equal(get(r.headers, 'x-sluice-error-code'), undefined);
    }
  });

  it('a data plane that does not send the attribute gets responses passed through', async () => {
    const router = await routed('openai');
    const r = continued(await router.runResponse(...envoyReply(503, 'no healthy upstream')));
    assert.equal(r.body.toString(), 'no healthy upstream');
  });
});
