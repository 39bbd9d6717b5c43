// The driver as an upstream (cluster) ext_proc filter. Up to Envoy 1.36 (`envoyRelease: '1.36'`
// here) such a filter never sends a local reply: Filter::sendImmediateResponse
// (source/extensions/filters/http/ext_proc/ext_proc.cc) returns early when
// config_->isUpstream(), counting send_immediate_resp_upstream_ignored, after the caller set
// processing_complete_, stopped the timers and closed the stream — and nothing resumes the
// request, so the attempt waits for the router. From 1.37 (PR #41231; the default, newest
// release) they go downstream (UpstreamFilterManager::sendLocalReply in
// source/common/router/upstream_request.cc).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FakeCall } from './fake-server.js';
import type { FilterConfig } from '../../operator/envoy-sim/ext-proc/config.js';
import { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/filter.js';
import type { LocalReply } from '../../operator/envoy-sim/ext-proc/processor-state.js';
import type { HeaderList } from '../../operator/envoy-sim/ext-proc/headers.js';
import { cont, grpc, postHeaders, withServer, type Harness } from './helpers.js';

const UPSTREAM: FilterConfig = {
  processingMode: {
    requestHeaderMode: 'SEND',
    responseHeaderMode: 'SKIP',
    requestBodyMode: 'NONE',
    responseBodyMode: 'NONE',
  },
  upstream: true,
  // Generous: a loaded machine must not turn the server's answer into a message timeout.
  messageTimeoutMs: 5000,
};
/** The same filter on an out-of-support release that ignores upstream local replies. */
const LEGACY: FilterConfig = { ...UPSTREAM, envoyRelease: '1.36' };

const BODY = Buffer.from('{"model":"m"}');

/** A filter with its stall and local-reply events as promises, and whether its result settled. */
function watched(h: Harness, config: FilterConfig) {
  let stalled!: (d: string) => void;
  let replied!: (r: LocalReply) => void;
  const stall = new Promise<string>((r) => (stalled = r));
  const reply = new Promise<LocalReply>((r) => (replied = r));
  const f = new ExtProcFilter(h.client, config, { stalled, localReply: replied });
  const passed: HeaderList[] = [];
  f.request.observe({ headers: (hs) => passed.push(hs) });
  return { f, stall, reply, passed };
}

/** Runs the request as Envoy's router feeds an attempt: headers, then the buffered body at once. */
function attempt(f: ExtProcFilter) {
  const state = { settled: false };
  const result = f.runRequest(postHeaders(), [BODY], undefined, { dataWithHeaders: true });
  void result.then(() => (state.settled = true));
  return { result, state };
}

async function immediate501(call: FakeCall): Promise<void> {
  await call.expect();
  call.send({
    immediate_response: { status: { code: 501 }, body: Buffer.from('refused'), details: 'no' },
  });
  await call.closed();
}

test('upstream filter (1.36): an immediate_response is ignored and counted; the attempt is held', async () => {
  await withServer(immediate501, async (h) => {
    const { f, stall, passed } = watched(h, LEGACY);
    const { state } = attempt(f);
    assert.equal(await stall, 'no');
    // Envoy closed the stream (half-close, then reset) although it sent nothing downstream.
    await h.server.calls[0]!.closed();
    assert.equal(f.stats.send_immediate_resp_upstream_ignored, 1);
    assert.equal(f.stalled, 'no');
    assert.equal(f.reply, undefined);
    assert.equal(state.settled, false, 'neither continued nor answered');
    assert.deepEqual(passed, [], 'nothing reached the upstream codec');
    assert.match(f.violations.join(), /send_immediate_resp_upstream_ignored/);
    f.close();
  });
});

test('upstream filter (1.36): fail-closed errors go the same way (gRPC error, message timeout)', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.fail(grpc.status.INTERNAL, 'boom');
    },
    async (h) => {
      const { f, stall } = watched(h, LEGACY);
      attempt(f);
      assert.equal(await stall, 'ext_proc_error_gRPC_error_13{boom}');
      assert.equal(f.stats.send_immediate_resp_upstream_ignored, 1);
      f.close();
    },
  );
  await withServer(
    async (call) => {
      await call.expect();
      await call.closed();
    },
    async (h) => {
      const { f, stall } = watched(h, { ...LEGACY, messageTimeoutMs: 20 });
      attempt(f);
      assert.equal(await stall, 'ext_proc_error_per-message_timeout_exceeded');
      f.close();
    },
  );
});

test('upstream filter (1.36): a spurious answer with fail-close is ignored too', async () => {
  await withServer(
    async (call) => {
      await call.expect();
      call.send(cont('response_headers'));
      await call.closed();
    },
    async (h) => {
      const { f, stall } = watched(h, LEGACY);
      attempt(f);
      assert.equal(await stall, 'ext_proc_error_spurious_message');
      f.close();
    },
  );
});

test('upstream filter (1.36): body data after the stall resumes the request, unprocessed', async () => {
  // Envoy's filter manager continues headers and data when a later data callback returns
  // Continue, which ext_proc does once processing is complete: the attempt goes out as the
  // router handed it over. Envoy's router hands the body over with the headers, so this only
  // happens to a body that arrives late.
  await withServer(immediate501, async (h) => {
    const { f, stall } = watched(h, LEGACY);
    const late = f.runRequest(postHeaders(), [BODY]);
    await stall;
    const r = await late;
    assert.equal(r.kind, 'continue');
    assert.equal(r.kind === 'continue' && r.body.toString(), BODY.toString());
    f.close();
  });
});

test('upstream filter (newest release): the immediate_response goes downstream', async () => {
  await withServer(immediate501, async (h) => {
    const { f } = watched(h, UPSTREAM);
    const r = await attempt(f).result;
    assert.equal(r.kind, 'local-reply');
    assert.equal(r.kind === 'local-reply' && r.status, 501);
    assert.equal(r.kind === 'local-reply' && r.details, 'no');
    assert.equal(f.stats.send_immediate_resp_upstream_ignored, 0);
    assert.equal(f.stalled, undefined);
  });
});

test('downstream filter: an immediate_response sent unasked after the request phase ends the request', async () => {
  await withServer(
    async (call) => {
      call.send(cont((await call.expect()).request!));
      call.send(cont((await call.expect()).request!));
      // Nothing is pending (the router is waiting for the upstream); the server ends the request.
      call.send({
        immediate_response: { status: { code: 501 }, body: Buffer.from('{}'), details: 'why' },
      });
      await call.closed();
    },
    async (h) => {
      const { f, reply } = watched(h, {
        processingMode: { requestBodyMode: 'BUFFERED', responseBodyMode: 'BUFFERED' },
      });
      const r = await f.runRequest(postHeaders(), [BODY]);
      assert.equal(r.kind, 'continue');
      const local = await reply;
      assert.equal(local.status, 501);
      assert.equal(local.details, 'why');
      assert.equal(local.responseStarted, false);
      assert.deepEqual(f.violations, []);
      // The response the router would have produced meets a finished filter.
      const res = await f.runResponse([[':status', '200']], [Buffer.from('x')]);
      assert.equal(res, local);
    },
  );
});
