import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { builtInWindow, compileCatalog, normalizeModel } from './catalog.js';
import { ContextPolicy } from './schema.js';

describe('built-in context catalog', () => {
  const cases: [string, number | undefined][] = [
    ['gpt-4o', 128_000],
    ['gpt-4o-2024-08-06', 128_000],
    ['gpt-4o-mini-2024-07-18', 128_000],
    ['gpt-4.1-nano', 1_047_576],
    ['o3-mini', 200_000],
    ['o1-mini-2024-09-12', 128_000],
    ['gpt-5', 400_000],
    ['gpt-5-mini-2025-08-07', 400_000],
    // A later generation is not taken for an earlier one: unknown, so not checked.
    ['gpt-5.4', undefined],
    ['claude-3-5-sonnet-20241022', 200_000],
    ['us.anthropic.claude-3-5-sonnet-20241022-v2:0', 200_000],
    ['claude-3-7-sonnet-latest', 200_000],
    ['claude-sonnet-4-20250514', 200_000],
    ['claude-opus-4-1-20250805', 200_000],
    ['claude-3-5-haiku@20241022', 200_000],
    ['gemini-2.0-flash-001', 1_048_576 + 8192],
    ['gemini-2.5-pro', 1_048_576 + 65_535],
    ['meta-llama/Llama-3.1-8B-Instruct', 131_072],
    ['llama3.1:8b', 131_072],
    ['meta.llama3-1-70b-instruct-v1:0', 131_072],
    ['llama3-70b-8192', 8192],
    ['mistral-large-latest', 131_072],
    ['mistralai/Mistral-7B-Instruct-v0.3', 32_768],
    ['mistral-7b-instruct', 32_768],
    ['codestral-latest', 262_144],
    ['my-private-model', undefined],
  ];
  for (const [model, want] of cases) {
    it(`${model} → ${want ?? 'unknown'}`, () => {
      assert.equal(builtInWindow(model)?.contextTokens, want);
    });
  }

  it('output and input limits come with the window', () => {
    assert.deepEqual(
      [builtInWindow('gpt-5')?.maxOutputTokens, builtInWindow('gpt-5')?.maxInputTokens],
      [128_000, 272_000],
    );
    assert.equal(builtInWindow('claude-3-7-sonnet-20250219')?.maxOutputTokens, 64_000);
  });

  it('normalizes provider spellings', () => {
    assert.equal(
      normalizeModel('eu.anthropic.claude-3-7-sonnet-20250219-v1:0'),
      'claude-3-7-sonnet-20250219',
    );
    assert.equal(normalizeModel('Qwen/Qwen2.5-7B'), 'qwen2.5-7b');
  });
});

describe('policy catalog', () => {
  it('exact names beat globs, globs beat the built-ins; the built-ins can be turned off', () => {
    const policy = ContextPolicy.parse({
      models: {
        'gpt-4o': { contextTokens: 1000 },
        'gpt-*': { contextTokens: 2000 },
        'local-*': { contextTokens: 4096, maxOutputTokens: 512 },
      },
    });
    const c = compileCatalog(policy);
    assert.equal(c.window('gpt-4o')?.contextTokens, 1000);
    assert.equal(c.window('gpt-4o-mini')?.contextTokens, 2000);
    assert.deepEqual(c.window('local-llama'), { contextTokens: 4096, maxOutputTokens: 512 });
    assert.equal(c.window('claude-3-5-haiku-latest')?.contextTokens, 200_000);
    const off = compileCatalog(ContextPolicy.parse({ builtInCatalog: false }));
    assert.equal(off.window('gpt-4o'), undefined);
  });

  it('refuses windows that are not positive whole numbers, and unknown fields', () => {
    assert.equal(ContextPolicy.safeParse({ models: { m: { contextTokens: 0 } } }).success, false);
    assert.equal(ContextPolicy.safeParse({ contextOverflow: 'drop' }).success, false);
    assert.equal(ContextPolicy.safeParse({ surprise: 1 }).success, false);
    assert.equal(ContextPolicy.parse({}).contextOverflow, 'reject');
  });
});
