import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  attemptHeaders,
  loadTraceContext,
  PresetIdGenerator,
  requestTrace,
} from './trace-context.js';

// Started tracing loads these first (tracing.ts); here by hand.
before(() => loadTraceContext());

const CALLER = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const ENVOY = '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01';

describe('the trace of a request', () => {
  it("continues Envoy's ext_proc span from the stream metadata before the caller's header", () => {
    const t = requestTrace(
      [{ traceparent: ENVOY, tracestate: 'envoy=1' }, { traceparent: CALLER }],
      1,
    );
    assert.equal(t.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(t.parent?.traceparent, ENVOY);
    assert.equal(t.sampled, true);
    assert.equal(t.tracestate, 'envoy=1');
    assert.match(t.spanId, /^[0-9a-f]{16}$/);
  });

  it("falls back to the caller's header, and skips an invalid traceparent", () => {
    const t = requestTrace([{ traceparent: 'garbage' }, { traceparent: CALLER }], 0);
    assert.equal(t.parent?.traceparent, CALLER);
    assert.equal(t.sampled, true, "the caller's sampled flag wins over the ratio");
    const unsampled = requestTrace([{ traceparent: CALLER.replace(/-01$/, '-00') }], 1);
    assert.equal(unsampled.sampled, false);
  });

  it('starts a new trace sampled at the ratio when nobody sent one', () => {
    const on = requestTrace([undefined, {}], 1);
    assert.equal(on.parent, undefined);
    assert.match(on.traceId, /^[0-9a-f]{32}$/);
    assert.equal(on.sampled, true);
    assert.equal(requestTrace([], 0).sampled, false);
  });

  it("hands the provider the attempt's own span id in a W3C traceparent", () => {
    const t = requestTrace([{ traceparent: CALLER, tracestate: 'vendor=x' }], 1);
    assert.deepEqual(attemptHeaders(t, '1111111111111111'), [
      ['traceparent', '00-0af7651916cd43dd8448eb211c80319c-1111111111111111-01'],
      ['tracestate', 'vendor=x'],
    ]);
    const off = requestTrace([], 0);
    assert.match(attemptHeaders(off, '2222222222222222')[0]![1], /-2222222222222222-00$/);
  });

  it('gives a preset id once, then random ids', () => {
    const g = new PresetIdGenerator();
    g.preset('aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb');
    assert.equal(g.generateSpanId(), 'aaaaaaaaaaaaaaaa');
    assert.equal(g.generateTraceId(), 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb');
    assert.notEqual(g.generateSpanId(), 'aaaaaaaaaaaaaaaa');
    assert.match(g.generateTraceId(), /^[0-9a-f]{32}$/);
  });
});
