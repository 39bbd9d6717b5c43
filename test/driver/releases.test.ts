// What changed between Envoy releases (shared/ENVOY-EXTPROC.md §0, ext-proc/release.ts), as the
// driver models it: the newest release by default, older ones with `envoyRelease`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FakeCall } from './fake-server.js';
import { releaseBehaviour } from '../../operator/envoy-sim/ext-proc/release.js';
import type { FilterConfig } from '../../operator/envoy-sim/ext-proc/config.js';
import { cont, getHeaders, postHeaders, sleep, withServer } from './helpers.js';

const BODY = Buffer.from('{"model":"m"}');

/** Waits until the client half-closes, or `ms` pass; says which. */
async function halfClosedWithin(call: FakeCall, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (call.halfClosed || call.cancelled) return true;
    await sleep(5);
  }
  return call.halfClosed || call.cancelled;
}

test('releases: only 1.34 up to the newest are modelled', () => {
  assert.equal(releaseBehaviour().release, '1.40');
  assert.equal(releaseBehaviour('1.37.2').minor, 37);
  assert.throws(() => releaseBehaviour('1.33'), /not modelled/);
  assert.throws(() => releaseBehaviour('2.0'), /not modelled/);
  const b36 = releaseBehaviour('1.36');
  assert.deepEqual(
    [b36.upstreamLocalReplies, b36.streamCloseOptimization, b36.statusOnError],
    [false, false, true],
  );
  assert.equal(releaseBehaviour('1.34').spuriousFailClose, false);
});

// ext_proc.cc closeGrpcStreamIfLastRespReceived (1.37+, ext_proc_stream_close_optimization).
const UPSTREAM_LIKE: FilterConfig = {
  processingMode: { responseHeaderMode: 'SKIP', requestBodyMode: 'NONE' },
};

test('1.37+: the stream is closed right after the last expected answer', async () => {
  let closedEarly: Promise<boolean> | undefined;
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('request_headers'));
      closedEarly = halfClosedWithin(call, 500);
      await call.closed();
    },
    async (h) => {
      const f = h.filter(UPSTREAM_LIKE);
      // The body goes on unprocessed (mode NONE) and the response is skipped: nothing more will be
      // sent, so Envoy closes before the request has even ended.
      const d = f.request;
      d.headers(postHeaders(), false);
      await d.headersAnswered();
      assert.equal(await closedEarly, true);
      d.data(BODY, true);
      const r = await d.result();
      assert.equal(r.kind, 'continue');
      assert.deepEqual(f.violations, []);
    },
  );
});

test('1.36: the stream stays open until the HTTP stream ends', async () => {
  let early: Promise<boolean> | undefined;
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('request_headers'));
      early = halfClosedWithin(call, 100);
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ ...UPSTREAM_LIKE, envoyRelease: '1.36' });
      const d = f.request;
      d.headers(postHeaders(), false);
      await d.headersAnswered();
      assert.equal(await early, false);
      d.data(BODY, true);
      await d.result();
      f.close();
    },
  );
});

test('1.37+: never closed early in BUFFERED mode, even after the last body answer', async () => {
  let early: Promise<boolean> | undefined;
  await withServer(
    async (call) => {
      call.send(cont((await call.expect()).request!));
      call.send(cont((await call.expect()).request!));
      early = halfClosedWithin(call, 100);
      await call.closed();
    },
    async (h) => {
      const f = h.filter({
        processingMode: { responseHeaderMode: 'SKIP', requestBodyMode: 'BUFFERED' },
      });
      const r = await f.runRequest(postHeaders(), [BODY]);
      assert.equal(r.kind, 'continue');
      assert.equal(await early, false, 'isLastBodyResponse is false in BUFFERED');
      f.close();
    },
  );
});

test('1.37+: STREAMED closes after the answer to the chunk that ended the stream', async () => {
  let early: Promise<boolean> | undefined;
  await withServer(
    async (call) => {
      call.send(cont((await call.expect()).request!));
      const last = await call.expect();
      assert.equal(last.request_body?.end_of_stream, true);
      call.send(cont('request_body'));
      early = halfClosedWithin(call, 500);
      await call.closed();
    },
    async (h) => {
      const f = h.filter({
        processingMode: { responseHeaderMode: 'SKIP', requestBodyMode: 'STREAMED' },
      });
      const r = await f.runRequest(postHeaders(), [BODY]);
      assert.equal(r.kind, 'continue');
      assert.equal(await early, true);
    },
  );
});

// effectiveModeOverride (1.34+, PR #38254): DEFAULT header modes keep the configured mode.
test('mode_override: a DEFAULT response header mode keeps the configured SKIP', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        request_headers: {},
        // Only body modes asked for; header modes left DEFAULT.
        mode_override: { request_body_mode: 'NONE', response_body_mode: 'NONE' },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter({
        processingMode: {
          responseHeaderMode: 'SKIP',
          requestBodyMode: 'NONE',
          responseBodyMode: 'BUFFERED',
        },
        allowModeOverride: true,
      });
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind, 'continue');
      assert.equal(f.response.sendHeaders, false, 'DEFAULT does not mean SEND (1.33 did)');
      assert.equal(f.response.bodyMode, 'NONE', 'body modes are copied from the override');
      const res = await f.runResponse([[':status', '200']], [Buffer.from('{}')]);
      assert.equal(res.kind, 'continue');
      assert.equal(h.server.calls[0]!.received.length, 1, 'no response message was sent');
    },
  );
});

// onGrpcError / handleErrorResponse: status_on_error from 1.36, 500 before.
test('status_on_error is honoured from 1.36 only', async () => {
  for (const [release, status] of [
    ['1.40', 503],
    ['1.36', 503],
    ['1.35', 500],
  ] as const) {
    await withServer(
      async (call) => {
        await call.expect();
        call.send(cont('response_headers'));
        await call.closed();
      },
      async (h) => {
        const f = h.filter({ statusOnError: 503, envoyRelease: release });
        const r = await f.runRequest(getHeaders());
        assert.equal(r.kind, 'local-reply', release);
        assert.equal(r.kind === 'local-reply' && r.status, status, release);
      },
    );
  }
});

// onReceiveMessage: setDecoderDynamicMetadata precedes sendImmediateResponse.
test('dynamic metadata sent with an immediate response is kept (for local_reply_config)', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send({
        immediate_response: { status: { code: 403 }, body: Buffer.from('no') },
        dynamic_metadata: {
          fields: {
            sluice: { structValue: { fields: { reply: { stringValue: 'extproc' } } } },
          },
        },
      });
      await call.closed();
    },
    async (h) => {
      const f = h.filter({ receivingNamespaces: ['sluice'] });
      const r = await f.runRequest(getHeaders());
      assert.equal(r.kind, 'local-reply');
      assert.equal(f.dynamicMetadata['sluice']?.fields?.['reply']?.stringValue, 'extproc');
      assert.deepEqual(f.violations, []);
    },
  );
});
