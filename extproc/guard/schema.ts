/**
 * The prompt guard section of a route policy: allow/deny patterns, prompt size limits, injection
 * heuristics, invisible-character handling, system-message decorators and prompt templates.
 * Everything that can be wrong with it is refused here, at validation, so a bad pattern or a
 * template naming an undeclared variable never reaches a request.
 */
import { z } from 'zod';
import { compileCustomPattern, PatternError } from '../masking/detect/custom.js';
import { DEFAULT_INJECTION_THRESHOLD } from './injection.js';

/**
 * The body field a request names a template in, removed before the request leaves:
 * `"sluice_template": {"name": "summarize", "variables": {"tone": "formal"}}`. A body field rather
 * than a header because variables are typed JSON (numbers stay numbers), may be long, and are
 * user content: headers are size-limited and routinely logged by proxies along the way.
 */
export const TEMPLATE_FIELD = 'sluice_template';

const MAX_TEXT = 32 * 1024;

/** Names that appear in block reasons, metrics and logs. */
const RULE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const RULE_NAME_RULE =
  'lower-case letters, digits, _ . - only, at most 63, starting with a letter or digit';
const ruleName = z.string().regex(RULE_NAME, RULE_NAME_RULE);

export const GuardPattern = z
  .object({
    name: ruleName,
    /** RE2 syntax; constructs that need backtracking are refused. */
    pattern: z.string().min(1).max(4096),
    caseInsensitive: z.boolean().default(false),
  })
  .strict();
export type GuardPattern = z.infer<typeof GuardPattern>;

/** The pattern as compiled: case-insensitivity is RE2's inline flag. */
export function patternSource(p: { pattern: string; caseInsensitive: boolean }): string {
  return p.caseInsensitive ? `(?i)${p.pattern}` : p.pattern;
}

const required = z.boolean().default(true);

export const TemplateVariable = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('string'),
      /** In characters (code points). */
      maxLength: z.number().int().min(1).max(1_000_000).optional(),
      required,
    })
    .strict(),
  z
    .object({
      type: z.literal('number'),
      integer: z.boolean().default(false),
      minimum: z.number().optional(),
      maximum: z.number().optional(),
      required,
    })
    .strict(),
  z
    .object({
      type: z.literal('enum'),
      enum: z.array(z.string().min(1).max(1024)).min(1).max(256),
      required,
    })
    .strict(),
]);
export type TemplateVariable = z.infer<typeof TemplateVariable>;

/** `{{name}}`, with optional spaces inside the braces. */
export const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}/g;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export const PromptTemplate = z
  .object({
    /** The text, with `{{variable}}` placeholders. */
    text: z.string().min(1).max(MAX_TEXT),
    /**
     * `user`: the rendered text is added as the last user turn. `system`: it is put where the API
     * reads system instructions, before the client's own.
     */
    role: z.enum(['user', 'system']).default('user'),
    variables: z.record(z.string(), TemplateVariable).default({}),
  })
  .strict()
  .superRefine((t, ctx) => {
    const used = new Set<string>();
    for (const m of t.text.matchAll(PLACEHOLDER)) used.add(m[1]!);
    // Braces that do not form a placeholder are most likely a typo that would leak into prompts.
    if (t.text.replace(PLACEHOLDER, '').includes('{{')) {
      ctx.addIssue({
        code: 'custom',
        path: ['text'],
        message: 'contains "{{" that is not a {{variable}} placeholder',
      });
    }
    for (const v of used) {
      if (!(v in t.variables)) {
        ctx.addIssue({
          code: 'custom',
          path: ['text'],
          message: `uses {{${v}}}, which is not declared in variables`,
        });
      }
    }
    for (const [name, spec] of Object.entries(t.variables)) {
      // Checked here rather than as the record's key schema, whose error does not say why.
      if (!VARIABLE_NAME.test(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['variables', name],
          message:
            'a variable name is letters, digits and _, at most 64, not starting with a digit',
        });
      }
      if (!used.has(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['variables', name],
          message: `declared but not used in the text`,
        });
      }
      if (
        spec.type === 'number' &&
        spec.minimum !== undefined &&
        spec.maximum !== undefined &&
        spec.minimum > spec.maximum
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['variables', name],
          message: 'minimum is greater than maximum',
        });
      }
      if (spec.type === 'enum' && new Set(spec.enum).size !== spec.enum.length) {
        ctx.addIssue({ code: 'custom', path: ['variables', name, 'enum'], message: 'duplicates' });
      }
    }
  });
export type PromptTemplate = z.infer<typeof PromptTemplate>;

export const InjectionPolicy = z
  .object({
    enabled: z.boolean().default(true),
    /** A request is flagged when one text's score reaches this (see extproc/guard/injection.ts). */
    threshold: z.number().min(0.1).max(20).default(DEFAULT_INJECTION_THRESHOLD),
    action: z.enum(['block', 'alert']).default('block'),
  })
  .strict();
export type InjectionPolicy = z.infer<typeof InjectionPolicy>;

export const Decorators = z
  .object({
    /** System messages placed before the client's own system prompt. */
    prepend: z.array(z.string().min(1).max(MAX_TEXT)).max(16).default([]),
    /** System messages placed after the client's messages (chat) or system prompt (others). */
    append: z.array(z.string().min(1).max(MAX_TEXT)).max(16).default([]),
  })
  .strict();
export type Decorators = z.infer<typeof Decorators>;

export const PromptGuardPolicy = z
  .object({
    /** When any are given, the client's text must match at least one. */
    allowPatterns: z.array(GuardPattern).max(64).default([]),
    /** A match anywhere in the client's text blocks the request. */
    denyPatterns: z.array(GuardPattern).max(64).default([]),
    /** Characters (code points) of every text in the request, before decorators. */
    maxPromptChars: z.number().int().min(1).max(100_000_000).optional(),
    /** Estimated prompt tokens (o200k count plus message framing and images), before decorators. */
    maxPromptTokens: z.number().int().min(1).max(100_000_000).optional(),
    injection: InjectionPolicy.default(InjectionPolicy.parse({})),
    /**
     * Zero-width, bidi-override, tag and filler characters in the client's text. `strip` removes
     * them (joiners inside emoji and scripts that need them, flag sequences and RTL marks stay).
     */
    invisibleCharacters: z.enum(['block', 'strip', 'alert', 'allow']).default('strip'),
    decorators: Decorators.default(Decorators.parse({})),
    /** Selected per request with the `sluice_template` body field (TEMPLATE_FIELD). */
    templates: z.record(z.string(), PromptTemplate).default({}),
  })
  .strict()
  .superRefine((g, ctx) => {
    for (const name of Object.keys(g.templates)) {
      if (!RULE_NAME.test(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['templates', name],
          message: `a template name is ${RULE_NAME_RULE}`,
        });
      }
    }
    for (const key of ['allowPatterns', 'denyPatterns'] as const) {
      const seen = new Set<string>();
      g[key].forEach((p, i) => {
        if (seen.has(p.name)) {
          ctx.addIssue({
            code: 'custom',
            path: [key, i, 'name'],
            message: `duplicate name "${p.name}"`,
          });
        }
        seen.add(p.name);
        try {
          compileCustomPattern(p.name, patternSource(p));
        } catch (err) {
          if (!(err instanceof PatternError)) throw err;
          ctx.addIssue({ code: 'custom', path: [key, i, 'pattern'], message: err.message });
        }
      });
    }
  });
export type PromptGuardPolicy = z.infer<typeof PromptGuardPolicy>;
export type PromptGuardPolicyInput = z.input<typeof PromptGuardPolicy>;
