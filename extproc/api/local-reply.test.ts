import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SluiceError } from '../errors.js';
import { errorBody } from './error-body.js';
import { localReplyError, localReplyOf } from './local-reply.js';

const TLS_RESET =
  'upstream_reset_before_response_started{connection_failure,TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED}';

describe('local replies: which responses are the data plane’s own', () => {
  it('a backend’s response is never one, whatever its status', () => {
    for (const status of [200, 400, 429, 500, 503, 504]) {
      assert.equal(localReplyOf(status, 'via_upstream'), undefined);
    }
  });

  it('without the attribute nothing is rewritten: a provider error must not be mistaken', () => {
    assert.equal(localReplyOf(503, undefined), undefined);
    assert.equal(localReplyOf(503, ''), undefined);
  });

  it('only error statuses are rewritten', () => {
    assert.equal(localReplyOf(200, 'direct_response'), undefined);
    assert.equal(localReplyOf(302, 'direct_response'), undefined);
    assert.deepEqual(localReplyOf(503, 'no_healthy_upstream'), {
      status: 503,
      details: 'no_healthy_upstream',
    });
  });

  it('the extproc’s own immediate responses are already in the caller’s format', () => {
    assert.equal(localReplyOf(501, 'sluice_unsupported_backend'), undefined);
  });

  it('keeps Envoy’s details for the log, bounded and printable', () => {
    assert.equal(localReplyOf(503, TLS_RESET)?.details, TLS_RESET);
    const odd = localReplyOf(503, `a b\nc${'x'.repeat(400)}`)!.details;
    assert.ok(odd.startsWith('a_b_c'));
    assert.ok(odd.length <= 257);
  });
});

describe('local replies: the error the caller gets', () => {
  const cases: [number, string, string, number][] = [
    [503, TLS_RESET, 'upstream_unavailable', 503],
    [
      503,
      'upstream_reset_before_response_started{connection_failure}',
      'upstream_unavailable',
      503,
    ],
    [503, 'no_healthy_upstream', 'upstream_unavailable', 503],
    [503, 'upstream_reset_before_response_started{overflow}', 'upstream_unavailable', 503],
    [502, 'filter_removed_required_response_headers{…}', 'upstream_unavailable', 502],
    [504, 'response_timeout', 'upstream_timeout', 504],
    [504, 'upstream_per_try_timeout', 'upstream_timeout', 504],
    [404, 'route_not_found', 'model_not_found', 404],
    [413, 'request_payload_too_large', 'request_too_large', 413],
    [408, 'request_overall_timeout', 'gateway_error', 408],
    [500, 'something_else', 'gateway_error', 500],
  ];
  for (const [status, details, code, want] of cases) {
    it(`${status} ${details.slice(0, 40)} → ${want} ${code}`, () => {
      const e = localReplyError({ status, details }, undefined);
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, code);
      assert.equal(e.status, want);
    });
  }

  it('names no internals: no reset reason, TLS error or Envoy wording', () => {
    for (const [status, details] of cases) {
      const e = localReplyError({ status, details }, undefined);
      for (const api of ['openai', 'anthropic'] as const) {
        const body = errorBody(api, e);
        for (const leak of ['reset', 'TLS', 'CERTIFICATE', 'upstream connect', details]) {
          assert.ok(!body.includes(leak), `${body} contains ${leak}`);
        }
      }
    }
  });

  it('a direct response keeps the code the operator gave it', () => {
    const rule = localReplyError({ status: 404, details: 'direct_response' }, 'no_matching_rule');
    assert.equal(rule.code, 'no_matching_rule');
    assert.equal(rule.status, 404);
    assert.equal(rule.param, 'model');
    const none = localReplyError({ status: 404, details: 'direct_response' }, 'model_not_found');
    assert.equal(none.code, 'model_not_found');
    // A code it does not know is not trusted: the status decides.
    const other = localReplyError({ status: 404, details: 'direct_response' }, 'made_up');
    assert.equal(other.code, 'model_not_found');
  });

  it('in each API format: OpenAI error object, Anthropic error object', () => {
    const e = localReplyError({ status: 503, details: TLS_RESET }, undefined);
    const oa = JSON.parse(errorBody('openai', e)) as { error: Record<string, unknown> };
    assert.equal(oa.error['code'], 'upstream_unavailable');
    assert.equal(oa.error['type'], 'server_error');
    assert.equal(typeof oa.error['message'], 'string');
    const an = JSON.parse(errorBody('anthropic', e)) as {
      type: string;
      error: Record<string, unknown>;
    };
    assert.equal(an.type, 'error');
    assert.equal(an.error['type'], 'overloaded_error');
    assert.equal(typeof an.error['message'], 'string');
  });
});

describe('SluiceError status override', () => {
  it('replaces the code’s status within 400–599 and refuses anything else', () => {
    assert.equal(new SluiceError('upstream_unavailable', 'm', { status: 502 }).status, 502);
    assert.equal(new SluiceError('upstream_unavailable', 'm').status, 503);
    for (const bad of [200, 399, 600, 502.5, Number.NaN]) {
      assert.throws(
        () => new SluiceError('gateway_error', 'm', { status: bad }),
        /an error status must be an integer from 400 to 599/,
      );
    }
  });
});
