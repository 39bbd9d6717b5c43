// Envoy's own replies (no healthy upstream, connect failure, TLS failure, timeouts, no route, an
// ext_proc failure) never reach the router filter on any release since 1.34 (Filter::onLocalReply
// in source/extensions/filters/http/ext_proc/ext_proc.cc sets processing_complete_; the
// CVE-2025-30157 fix): Envoy shapes them itself with the operator's local_reply_config, tested in
// operator/envoy-sim/local-reply.test.ts and, through `sluice run`, test/e2e/upstream-errors.test.ts.
// What that needs from the extproc, checked here with the driver:
// - every immediate response it writes, in any phase, carries the reply mark in a receiving
//   namespace (Envoy stores it before it sends the reply), so the mappers leave it as it is;
// - a request whose stream Envoy ends without a response (its local reply went straight to the
//   caller) is still settled and logged, and leaves nothing behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WIRE } from '../../extproc/config/contract.js';
import { ExtProcFilter, type PhaseResult } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  get,
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

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };

function marked(f: ExtProcFilter): string | undefined {
  const ns = f.dynamicMetadata[WIRE.replyMetadataNamespace];
  return ns?.fields?.[WIRE.replyMetadataKey]?.stringValue;
}

function replyOf(r: PhaseResult) {
  assert.equal(r.kind, 'local-reply');
  return r;
}

describe('conformance: the extproc’s own replies are marked for local_reply_config', () => {
  it('a refusal in the request headers phase (unknown path)', async () => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const r = replyOf(await f.runRequest(chatHeaders([], '/v1/nope')));
    assert.equal(r.status, 404);
    assert.deepEqual(f.violations, []);
    assert.equal(marked(f), WIRE.replyMetadataValue);
  });

  it('a refusal in the request body phase (invalid JSON), in the caller’s format', async () => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const r = replyOf(
      await f.runRequest(chatHeaders([['anthropic-version', '2023-06-01']], '/v1/messages'), [
        Buffer.from('{not json'),
      ]),
    );
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body.toString()).type, 'error');
    assert.equal(marked(f), WIRE.replyMetadataValue);
  });

  it('an answer Envoy would send as a 200 local reply (the models list)', async () => {
    const f = new ExtProcFilter(h.client, ROUTER);
    const r = replyOf(
      await f.runRequest([
        [':method', 'GET'],
        [':path', '/v1/models'],
        [':scheme', 'http'],
        [':authority', 'gw'],
      ]),
    );
    assert.equal(r.status, 200);
    assert.equal(marked(f), WIRE.replyMetadataValue);
  });

  it('a filter without the receiving namespace would drop the mark (the operator configures it)', async () => {
    const f = new ExtProcFilter(h.client, { ...ROUTER, receivingNamespaces: [] });
    replyOf(await f.runRequest(chatHeaders([], '/v1/nope')));
    assert.equal(marked(f), undefined);
    assert.match(f.violations.join(), /not a receiving namespace/);
  });
});

describe('conformance: Envoy answered the caller itself', () => {
  it('the stream ends without a response: the request is settled and logged', async () => {
    const before = accessLines(h).length;
    const { router, routed } = await sendRequest(h, chatHeaders(), CHAT, 'sluice/backend/openai');
    const id = get(continued(routed).headers, 'x-sluice-request-id');
    assert.ok(id);
    // Envoy's 503/504 went to the caller; the router filter only sees its stream end.
    router.close();
    await waitFor(() => accessLines(h).length > before);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.request_id, id);
    assert.equal(line.outcome, 'aborted');
    assert.equal(line.status, 0);
  });
});
