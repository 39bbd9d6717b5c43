/**
 * The built-in catalog of context windows for well-known models, and the lookup that a route's
 * policy (`context.models`, names and globs) overrides.
 *
 * Sources. Verified against the provider's own model pages: Gemini 2.0 Flash and Flash-Lite
 * (ai.google.dev: input 1,048,576, output 8,192) and Gemini 2.5 Pro (Vertex AI model page: input
 * 1,048,576, output 65,535). Every other figure is from secondary sources (catalogs of SDKs and
 * gateways that quote the providers' pages) and is marked `verified: false`: a policy that
 * depends on one should set it in `context.models`. Providers change windows (betas, new
 * snapshots); a name the catalog does not know is not checked at all.
 *
 * `contextTokens` is the whole window (input + output). Where a provider states an input limit
 * apart from the output one (Gemini; GPT-5's 272k input), the window is their sum and
 * `maxInputTokens` bounds the input.
 */
import { compileGlob, type Matcher } from '../governance/glob.js';
import type { ContextPolicy, ModelWindow } from './schema.js';

export interface CatalogEntry extends ModelWindow {
  /** Matches a normalized model name (normalizeModel). */
  match: RegExp;
  family: string;
  verified: boolean;
}

/** An optional snapshot date: -2024-08-06, -20241022, -0125, -latest, -preview, -001. */
const D =
  '(-\\d{4}-\\d{2}-\\d{2}|-\\d{8}|-\\d{4}|-\\d{3}|-latest|-preview(-[\\w-]+)?|-exp(-[\\w-]+)?)?';
const re = (s: string): RegExp => new RegExp(`^${s}${D}$`);

const GEMINI_2_OUT = 8192;
const GEMINI_IN = 1_048_576;

export const BUILT_IN_CATALOG: readonly CatalogEntry[] = [
  // OpenAI
  {
    family: 'openai',
    match: re('gpt-4o-mini'),
    contextTokens: 128_000,
    maxOutputTokens: 16_384,
    verified: false,
  },
  {
    family: 'openai',
    match: re('(chatgpt-)?gpt-4o'),
    contextTokens: 128_000,
    maxOutputTokens: 16_384,
    verified: false,
  },
  {
    family: 'openai',
    match: re('gpt-4\\.1(-mini|-nano)?'),
    contextTokens: 1_047_576,
    maxOutputTokens: 32_768,
    verified: false,
  },
  {
    family: 'openai',
    match: re('gpt-4-turbo'),
    contextTokens: 128_000,
    maxOutputTokens: 4096,
    verified: false,
  },
  {
    family: 'openai',
    match: re('gpt-4'),
    contextTokens: 8192,
    maxOutputTokens: 8192,
    verified: false,
  },
  {
    family: 'openai',
    match: re('gpt-3\\.5-turbo'),
    contextTokens: 16_385,
    maxOutputTokens: 4096,
    verified: false,
  },
  {
    family: 'openai',
    match: re('o1-mini'),
    contextTokens: 128_000,
    maxOutputTokens: 65_536,
    verified: false,
  },
  {
    family: 'openai',
    match: re('(o1|o1-pro|o3|o3-pro|o3-mini|o4-mini)'),
    contextTokens: 200_000,
    maxOutputTokens: 100_000,
    verified: false,
  },
  {
    family: 'openai',
    match: re('gpt-5-chat'),
    contextTokens: 128_000,
    maxOutputTokens: 16_384,
    verified: false,
  },
  {
    family: 'openai',
    match: re('gpt-5(-mini|-nano)?'),
    contextTokens: 400_000,
    maxOutputTokens: 128_000,
    maxInputTokens: 272_000,
    verified: false,
  },
  // Anthropic
  {
    family: 'anthropic',
    match: re('claude-3-5-(sonnet|haiku)(-v2)?'),
    contextTokens: 200_000,
    maxOutputTokens: 8192,
    verified: false,
  },
  {
    family: 'anthropic',
    match: re('claude-3-7-sonnet'),
    contextTokens: 200_000,
    maxOutputTokens: 64_000,
    verified: false,
  },
  {
    family: 'anthropic',
    match: re('claude-3-(opus|sonnet|haiku)'),
    contextTokens: 200_000,
    maxOutputTokens: 4096,
    verified: false,
  },
  {
    family: 'anthropic',
    match: re('claude-opus-4(-0|-1)?'),
    contextTokens: 200_000,
    maxOutputTokens: 32_000,
    verified: false,
  },
  {
    family: 'anthropic',
    match: re('claude-sonnet-4(-0)?'),
    contextTokens: 200_000,
    maxOutputTokens: 64_000,
    verified: false,
  },
  {
    family: 'anthropic',
    match: re('claude-(sonnet|haiku|opus)-4-5'),
    contextTokens: 200_000,
    maxOutputTokens: 64_000,
    verified: false,
  },
  // Google
  {
    family: 'google',
    match: re('gemini-1\\.5-pro'),
    contextTokens: 2_097_152 + 8192,
    maxInputTokens: 2_097_152,
    maxOutputTokens: 8192,
    verified: false,
  },
  {
    family: 'google',
    match: re('gemini-1\\.5-flash(-8b)?'),
    contextTokens: GEMINI_IN + 8192,
    maxInputTokens: GEMINI_IN,
    maxOutputTokens: 8192,
    verified: false,
  },
  {
    family: 'google',
    match: re('gemini-2\\.0-flash(-lite)?'),
    contextTokens: GEMINI_IN + GEMINI_2_OUT,
    maxInputTokens: GEMINI_IN,
    maxOutputTokens: GEMINI_2_OUT,
    verified: true,
  },
  {
    family: 'google',
    match: re('gemini-2\\.5-pro'),
    contextTokens: GEMINI_IN + 65_535,
    maxInputTokens: GEMINI_IN,
    maxOutputTokens: 65_535,
    verified: true,
  },
  {
    family: 'google',
    match: re('gemini-2\\.5-flash(-lite)?'),
    contextTokens: GEMINI_IN + 65_535,
    maxInputTokens: GEMINI_IN,
    maxOutputTokens: 65_535,
    verified: false,
  },
  // Meta Llama (as vLLM, Ollama, Groq, Bedrock and Hugging Face name them)
  {
    family: 'meta',
    match: /^(meta-)?llama-?3[.-][123]([-.:][\w.:-]*)?$/,
    contextTokens: 131_072,
    verified: false,
  },
  {
    family: 'meta',
    match: /^(meta-)?llama-?3([-:](8b|70b)[\w.:-]*)?$/,
    contextTokens: 8192,
    verified: false,
  },
  // Mistral
  {
    family: 'mistral',
    match: /^(codestral)(-\d{4}|-latest|-2501)?$/,
    contextTokens: 262_144,
    verified: false,
  },
  {
    family: 'mistral',
    match:
      /^(mistral-(large|medium|small)|open-mistral-nemo|mistral-nemo|ministral-(3b|8b)|pixtral-large)([-:][\w.:-]*)?$/,
    contextTokens: 131_072,
    verified: false,
  },
  {
    family: 'mistral',
    match: /^(mixtral-8x22b)([-:][\w.:-]*)?$/,
    contextTokens: 65_536,
    verified: false,
  },
  {
    family: 'mistral',
    match: /^(mistral-7b|open-mistral-7b|mixtral-8x7b|open-mixtral-8x7b)([-:][\w.:-]*)?$/,
    contextTokens: 32_768,
    verified: false,
  },
];

/**
 * The model as the catalog reads it: lower case, the path before the last `/` dropped (Hugging
 * Face repo ids), Bedrock's region and vendor prefixes (`us.anthropic.`) and version suffix
 * (`-v2:0`) and Vertex's `@date` removed; an Ollama tag (`llama3.1:8b`) is kept for the patterns.
 */
export function normalizeModel(model: string): string {
  let m = model.toLowerCase();
  m = m.slice(m.lastIndexOf('/') + 1);
  m = m.replace(/^((us|eu|apac|global|us-gov)\.)?(anthropic|meta|mistral|amazon)\./, '');
  m = m.replace(/-v\d+(:\d+)?$/, '').replace(/@[\w-]+$/, '');
  return m;
}

export function builtInWindow(model: string): CatalogEntry | undefined {
  const m = normalizeModel(model);
  // Names are bounded by the request's own size; the patterns have no nested repetition.
  if (m.length > 256) return undefined;
  return BUILT_IN_CATALOG.find((e) => e.match.test(m));
}

export interface CompiledCatalog {
  /** The window of the model, or undefined when neither the policy nor the catalog knows it. */
  window(model: string): ModelWindow | undefined;
}

export function compileCatalog(
  policy: Pick<ContextPolicy, 'models' | 'builtInCatalog'>,
): CompiledCatalog {
  const exact = new Map<string, ModelWindow>();
  const globs: { match: Matcher; window: ModelWindow }[] = [];
  for (const [k, w] of Object.entries(policy.models)) {
    if (k.includes('*')) globs.push({ match: compileGlob(k), window: w });
    else exact.set(k, w);
  }
  const cache = new Map<string, ModelWindow | null>();
  return {
    window(model) {
      const hit = cache.get(model);
      if (hit !== undefined) return hit ?? undefined;
      const found =
        exact.get(model) ??
        globs.find((g) => g.match(model))?.window ??
        (policy.builtInCatalog ? strip(builtInWindow(model)) : undefined);
      // Bounded: request bodies name models, so a flood of made-up names must not grow it.
      if (cache.size < 1024) cache.set(model, found ?? null);
      return found;
    },
  };
}

function strip(e: CatalogEntry | undefined): ModelWindow | undefined {
  if (!e) return undefined;
  const out: ModelWindow = { contextTokens: e.contextTokens };
  if (e.maxOutputTokens !== undefined) out.maxOutputTokens = e.maxOutputTokens;
  if (e.maxInputTokens !== undefined) out.maxInputTokens = e.maxInputTokens;
  return out;
}
