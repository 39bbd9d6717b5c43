import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatDuration,
  parseDuration,
  rateLimitHeaders,
  retryAfterFromErrorBody,
} from './rate-limit-headers.js';

const NOW = Date.parse('2026-01-01T00:00:00Z');
const map = (pairs: Record<string, string>) => new Map(Object.entries(pairs));

describe('rate-limit headers across translation', () => {
  it('an Anthropic backend’s headers, as an OpenAI caller reads them', () => {
    const r = rateLimitHeaders(
      'openai',
      200,
      map({
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '49',
        'anthropic-ratelimit-requests-reset': '2026-01-01T00:00:01Z',
        'anthropic-ratelimit-tokens-limit': '40000',
        'anthropic-ratelimit-tokens-remaining': '39000',
        'anthropic-ratelimit-tokens-reset': '2026-01-01T00:06:00Z',
        'anthropic-ratelimit-input-tokens-limit': '30000',
      }),
      NOW,
    );
    assert.deepEqual(r.set, [
      ['x-ratelimit-limit-requests', '50'],
      ['x-ratelimit-remaining-requests', '49'],
      ['x-ratelimit-reset-requests', '1s'],
      ['x-ratelimit-limit-tokens', '40000'],
      ['x-ratelimit-remaining-tokens', '39000'],
      ['x-ratelimit-reset-tokens', '6m0s'],
    ]);
    assert.deepEqual(r.remove, [
      'anthropic-ratelimit-requests-limit',
      'anthropic-ratelimit-requests-remaining',
      'anthropic-ratelimit-requests-reset',
      'anthropic-ratelimit-tokens-limit',
      'anthropic-ratelimit-tokens-remaining',
      'anthropic-ratelimit-tokens-reset',
    ]);
  });

  it('an OpenAI backend’s headers, as an Anthropic caller reads them (resets from the backend’s date)', () => {
    const r = rateLimitHeaders(
      'anthropic',
      200,
      map({
        date: 'Thu, 01 Jan 2026 00:00:10 GMT',
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '499',
        'x-ratelimit-reset-requests': '120ms',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '29000',
        'x-ratelimit-reset-tokens': '2m59.56s',
      }),
      NOW,
    );
    assert.deepEqual(r.set, [
      ['anthropic-ratelimit-requests-limit', '500'],
      ['anthropic-ratelimit-requests-remaining', '499'],
      ['anthropic-ratelimit-requests-reset', '2026-01-01T00:00:11Z'],
      ['anthropic-ratelimit-tokens-limit', '30000'],
      ['anthropic-ratelimit-tokens-remaining', '29000'],
      ['anthropic-ratelimit-tokens-reset', '2026-01-01T00:03:10Z'],
    ]);
    assert.equal(r.remove.length, 6);
  });

  it('a 429 keeps its retry-after; one without gets it from retry-after-ms or an exhausted limit', () => {
    const kept = rateLimitHeaders('openai', 429, map({ 'retry-after': '7' }), NOW);
    assert.deepEqual(kept.set, []);
    const ms = rateLimitHeaders('anthropic', 429, map({ 'retry-after-ms': '1500' }), NOW);
    assert.deepEqual(ms.set, [['retry-after', '2']]);
    const exhausted = rateLimitHeaders(
      'anthropic',
      429,
      map({ 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '20s' }),
      NOW,
    );
    assert.deepEqual(exhausted.set.at(-1), ['retry-after', '20']);
    // Not throttled: no retry-after is invented.
    const ok = rateLimitHeaders('anthropic', 200, map({ 'retry-after-ms': '1500' }), NOW);
    assert.deepEqual(ok.set, []);
  });

  it('values that are not numbers, durations or times are dropped, never renamed', () => {
    const r = rateLimitHeaders(
      'openai',
      200,
      map({
        'anthropic-ratelimit-requests-limit': '50; drop table',
        'anthropic-ratelimit-requests-reset': 'soon',
        'anthropic-ratelimit-tokens-remaining': '-1',
      }),
      NOW,
    );
    assert.deepEqual(r.set, []);
    assert.equal(r.remove.length, 3);
  });

  it('Google’s RetryInfo in a 429 body becomes retry-after', () => {
    const body = Buffer.from(
      JSON.stringify({
        error: {
          code: 429,
          status: 'RESOURCE_EXHAUSTED',
          details: [
            { '@type': 'type.googleapis.com/google.rpc.QuotaFailure' },
            { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '31.5s' },
          ],
        },
      }),
    );
    assert.equal(retryAfterFromErrorBody(429, body), '32');
    assert.equal(retryAfterFromErrorBody(400, body), undefined);
    assert.equal(retryAfterFromErrorBody(429, Buffer.from('not json')), undefined);
  });

  it('durations: Go style both ways', () => {
    assert.equal(parseDuration('6m0s'), 360_000);
    assert.equal(parseDuration('1h2m3.5s'), 3_723_500);
    assert.equal(parseDuration('20ms'), 20);
    assert.equal(parseDuration('1.5'), undefined);
    assert.equal(parseDuration(''), undefined);
    assert.equal(formatDuration(360_000), '6m0s');
    assert.equal(formatDuration(3_723_500), '1h2m3.5s');
    assert.equal(formatDuration(999), '999ms');
    assert.equal(formatDuration(17_280), '17.28s');
  });
});
