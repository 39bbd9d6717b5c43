/** The extproc config the benchmark runs. */
import { createHash } from 'node:crypto';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { CONFIG as HARNESS_CONFIG } from '../conformance/harness.js';
import { BUILTIN_TYPES } from '../../extproc/masking/detect/index.js';
import { VIRTUAL_KEY } from './payloads.js';

/** The model the policy scenario asks for: its route has masking and a governance policy. */
export const POLICY_MODEL = 'gpt-4o-mini-governed';

/**
 * The model of issue 16's "every feature on" route: masking with every built-in detector (the
 * name and address lists included), the prompt guard (injection heuristics, invisible
 * characters, a deny pattern, a token limit, so the tokenizer runs) and the same budgets.
 */
export const EVERYTHING_MODEL = 'gpt-4o-mini-everything';

/**
 * The conformance harness's config (four providers, three routes, accounting on), plus one route
 * with everything DESIGN §7's target names switched on: masking with every built-in detector,
 * and a governance policy with virtual-key identity, a tokens-per-minute limit and a daily spend
 * budget (in-process memory store). The limits are far above what a run consumes, so every
 * request is admitted and each one pays for a reservation and its settlement.
 */
export function benchConfig(): string {
  const doc = parseYaml(HARNESS_CONFIG) as {
    version: string;
    routes: object[];
    consumers?: object[];
    policies?: object[];
  };
  doc.version = 'bench-1';
  doc.consumers = [
    {
      name: 'analytics-bot',
      team: 'analytics',
      keyHashes: [createHash('sha256').update(VIRTUAL_KEY).digest('hex')],
    },
  ];
  doc.policies = [
    {
      name: 'bench-governance',
      identity: { keys: {} },
      limits: {
        rules: [
          { name: 'tpm', per: ['consumer'], tokensPerMinute: 1e12 },
          { name: 'daily-spend', per: ['team'], spendPerDayUsd: 1e9 },
        ],
      },
      pricing: { models: { 'gpt-4o-mini*': { inputPerMTok: 0.15, outputPerMTok: 0.6 } } },
    },
  ];
  doc.routes.unshift({
    name: 'governed',
    models: [{ exact: POLICY_MODEL }],
    backends: [{ name: 'openai' }],
    policy: { name: 'pii', masking: {} },
    governance: 'bench-governance',
  });
  doc.routes.unshift({
    name: 'everything',
    models: [{ exact: EVERYTHING_MODEL }],
    backends: [{ name: 'openai' }],
    policy: {
      name: 'everything',
      masking: { detectors: [...BUILTIN_TYPES] },
      guard: {
        maxPromptTokens: 1_000_000,
        denyPatterns: [{ name: 'no-exfil', pattern: 'exfiltrate the (system )?prompt' }],
      },
    },
    governance: 'bench-governance',
  });
  return stringifyYaml(doc);
}
