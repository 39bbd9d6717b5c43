/**
 * The prompt guard on one request: renders a named template, handles invisible characters, checks
 * allow/deny patterns, prompt size and injection heuristics, then adds the policy's decorators.
 * Pure: it returns a verdict, the reasons (rule names and counts, never content) and the body as
 * it must leave; the pipeline turns a block into its error and records the reasons.
 *
 * Only what the client or its tools wrote is inspected for patterns, invisibles and injection:
 * system and developer prompts and earlier assistant turns are the application's and the model's
 * words, and scoring them would flag every prompt that tells a model how to behave. Size limits
 * count everything the client sent.
 */
import type { RE2JS } from 're2js';
import type { Operation } from '../providers/endpoints.js';
import { compileCustomPattern } from '../masking/detect/custom.js';
import { createTextView } from '../masking/detect/text-view.js';
import { maskableSlots, type SlotList } from '../masking/fields.js';
import { inputTokensOver } from '../usage/estimate.js';
import { scoreText, type InjectionScore } from './injection.js';
import { INVISIBLE_KINDS, scanInvisible, type InvisibleScan } from './invisible.js';
import { RecentScores } from './recent-scores.js';
import {
  patternSource,
  PLACEHOLDER,
  TEMPLATE_FIELD,
  type GuardPattern,
  type PromptGuardPolicy,
  type PromptTemplate,
} from './schema.js';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export type GuardKind = 'allow_pattern' | 'deny_pattern' | 'size' | 'injection' | 'invisible';

export interface GuardReason {
  /** A pattern's name, an injection rule, `max_prompt_chars`, `invisible_tag`, ... */
  rule: string;
  kind: GuardKind;
  /** What the policy does about it (in shadow mode: what it would do). */
  action: 'block' | 'alert' | 'strip';
  /** Matches or characters found; for size, the measured size. */
  count?: number;
  /** For size: the configured limit. */
  limit?: number;
}

export interface GuardResult {
  /** `invalid`: the request misuses a template (a 400 `invalid_request`, see `invalid`). */
  verdict: 'allow' | 'block' | 'invalid';
  reasons: GuardReason[];
  /** Present when injection scoring ran, whatever the score. */
  injection?: InjectionScore;
  /** The body to send when it differs from the one given (which is never modified). */
  body?: Obj;
  /** The template the request used. */
  template?: string;
  /** For `invalid`: the field at fault and a message naming no value. */
  invalid?: { param: string; message: string };
}

export interface GuardOptions {
  /**
   * Evaluate and report only: nothing is blocked, stripped or decorated. A named template is
   * still rendered, because the request cannot be forwarded with the template field in it.
   */
  shadow?: boolean;
}

interface CompiledGuard {
  allow: { name: string; re: RE2JS }[];
  deny: { name: string; re: RE2JS }[];
}

const compiled = new WeakMap<PromptGuardPolicy, CompiledGuard>();

/** A conversation's earlier turns were scored for its previous request (recent-scores.ts). */
const recentScores = new RecentScores(scoreText);

function compile(policy: PromptGuardPolicy): CompiledGuard {
  let c = compiled.get(policy);
  if (!c) {
    const one = (p: GuardPattern): { name: string; re: RE2JS } => ({
      name: p.name,
      re: compileCustomPattern(p.name, patternSource(p)),
    });
    c = { allow: policy.allowPatterns.map(one), deny: policy.denyPatterns.map(one) };
    compiled.set(policy, c);
  }
  return c;
}

/** Matches counted per pattern stop here: the number is for the message, not a measurement. */
const MAX_COUNT = 1000;

function countMatches(re: RE2JS, text: string): number {
  const m = re.matcher(text);
  let n = 0;
  let from = 0;
  while (n < MAX_COUNT && from <= text.length && m.find(from)) {
    n++;
    from = m.end() > m.start() ? m.end() : m.start() + 1;
  }
  return n;
}

/** Code points, which is what people mean by characters (an emoji is one, not two). */
export function charCount(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// The client's part of a request, found with the masking walker (every string, keys and JSON in
// strings included, at any depth up to the limit masking enforces) on a view of the body that
// leaves out what the application or the model wrote. The view shares the message objects, so a
// slot's `set` writes into the body; top-level strings the view copied are written back by `sync`.
// Throws NestingTooDeep like masking: nothing deeper passes unread.

const NOT_CLIENT_ROLES = new Set(['system', 'developer', 'assistant']);

function clientSlots(op: Operation, body: Obj): { list: SlotList; sync: () => void } {
  const none = (): void => undefined;
  switch (op) {
    case 'chat': {
      const messages = Array.isArray(body.messages)
        ? body.messages.filter((m) => !(isObj(m) && NOT_CLIENT_ROLES.has(String(m.role))))
        : [];
      return { list: maskableSlots(op, { messages }), sync: none };
    }
    case 'responses': {
      const input = body.input;
      const view: Obj = {};
      if (typeof input === 'string') view.input = input;
      else if (Array.isArray(input)) {
        view.input = input.filter((item) => {
          if (!isObj(item)) return false;
          const type = item.type ?? 'message';
          if (type === 'message') return !NOT_CLIENT_ROLES.has(String(item.role));
          return type === 'function_call_output' || type === 'custom_tool_call_output';
        });
      }
      return {
        list: maskableSlots(op, view),
        sync: () => {
          if (typeof view.input === 'string') body.input = view.input;
        },
      };
    }
    case 'messages': {
      const messages = Array.isArray(body.messages)
        ? body.messages.filter((m) => isObj(m) && m.role === 'user')
        : [];
      return { list: maskableSlots(op, { messages }), sync: none };
    }
    case 'completions':
    case 'embeddings':
      return { list: maskableSlots(op, body), sync: none };
  }
}

// ---------------------------------------------------------------------------------------------
// Templates.

class TemplateError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
  }
}

interface TemplateUse {
  name: string;
  template: PromptTemplate;
  /** Values by variable; strings are the client's text and are inspected like messages. */
  values: Record<string, string | number>;
}

function takeTemplate(policy: PromptGuardPolicy, body: Obj): TemplateUse | undefined {
  if (!(TEMPLATE_FIELD in body)) return undefined;
  const field = body[TEMPLATE_FIELD];
  delete body[TEMPLATE_FIELD];
  const p = TEMPLATE_FIELD;
  if (!isObj(field)) throw new TemplateError(p, `${p} must be an object {name, variables}.`);
  for (const k of Object.keys(field)) {
    if (k !== 'name' && k !== 'variables')
      throw new TemplateError(`${p}.${k}`, `${p} accepts only "name" and "variables".`);
  }
  const name = field.name;
  if (typeof name !== 'string' || !Object.hasOwn(policy.templates, name)) {
    // The name is the client's input: it is not repeated, and the known names are not listed.
    throw new TemplateError(`${p}.name`, 'No such prompt template is configured for this route.');
  }
  const template = policy.templates[name]!;
  const given = field.variables ?? {};
  if (!isObj(given)) throw new TemplateError(`${p}.variables`, `${p}.variables must be an object.`);
  for (const k of Object.keys(given)) {
    if (!Object.hasOwn(template.variables, k)) {
      throw new TemplateError(
        `${p}.variables`,
        `Template "${name}" has no variable by one of the given names; only declared variables are accepted.`,
      );
    }
  }
  const values: Record<string, string | number> = {};
  for (const [v, spec] of Object.entries(template.variables)) {
    const param = `${p}.variables.${v}`;
    const value = given[v];
    if (value === undefined || value === null) {
      if (spec.required) throw new TemplateError(param, `Template variable "${v}" is required.`);
      continue;
    }
    switch (spec.type) {
      case 'string':
        if (typeof value !== 'string')
          throw new TemplateError(param, `Template variable "${v}" must be a string.`);
        if (spec.maxLength !== undefined && charCount(value) > spec.maxLength) {
          throw new TemplateError(
            param,
            `Template variable "${v}" is longer than ${spec.maxLength} characters.`,
          );
        }
        values[v] = value;
        break;
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value))
          throw new TemplateError(param, `Template variable "${v}" must be a number.`);
        if (spec.integer && !Number.isInteger(value))
          throw new TemplateError(param, `Template variable "${v}" must be an integer.`);
        if (spec.minimum !== undefined && value < spec.minimum)
          throw new TemplateError(
            param,
            `Template variable "${v}" must be at least ${spec.minimum}.`,
          );
        if (spec.maximum !== undefined && value > spec.maximum)
          throw new TemplateError(
            param,
            `Template variable "${v}" must be at most ${spec.maximum}.`,
          );
        values[v] = value;
        break;
      case 'enum':
        if (typeof value !== 'string' || !spec.enum.includes(value)) {
          throw new TemplateError(
            param,
            `Template variable "${v}" must be one of: ${spec.enum.join(', ')}.`,
          );
        }
        values[v] = value;
        break;
    }
  }
  return { name, template, values };
}

/**
 * One pass over the operator's text: a value containing `{{x}}` is inserted as is, never expanded
 * again, so a client cannot reach variables (or anything else) through another variable.
 */
export function renderTemplate(
  template: PromptTemplate,
  values: Readonly<Record<string, string | number>>,
): string {
  return template.text.replace(PLACEHOLDER, (_, v: string) => {
    const value = values[v];
    return value === undefined ? '' : String(value);
  });
}

function joinText(parts: readonly (string | undefined)[]): string {
  return parts.filter((s): s is string => s !== undefined && s !== '').join('\n\n');
}

function placeTemplate(op: Operation, body: Obj, role: 'user' | 'system', text: string): void {
  const p = TEMPLATE_FIELD;
  if (role === 'system') {
    if (op === 'completions' || op === 'embeddings')
      throw new TemplateError(`${p}.name`, 'This API has no system prompt for a system template.');
    prependSystem(op, body, [text]);
    return;
  }
  switch (op) {
    case 'chat':
    case 'messages': {
      const messages = Array.isArray(body.messages) ? body.messages : [];
      body.messages = [...(messages as unknown[]), { role: 'user', content: text }];
      return;
    }
    case 'responses': {
      const input = body.input;
      if (input === undefined || input === null || input === '') body.input = text;
      else if (typeof input === 'string')
        body.input = [
          { role: 'user', content: input },
          { role: 'user', content: text },
        ];
      else if (Array.isArray(input))
        body.input = [...(input as unknown[]), { type: 'message', role: 'user', content: text }];
      else throw new TemplateError('input', 'input must be a string or a list of items.');
      return;
    }
    case 'completions':
    case 'embeddings': {
      const key = op === 'completions' ? 'prompt' : 'input';
      if (body[key] !== undefined && body[key] !== null)
        throw new TemplateError(key, `A templated request must not also carry ${key}.`);
      body[key] = text;
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decorators.

function systemMessages(texts: readonly string[]): Obj[] {
  return texts.map((content) => ({ role: 'system', content }));
}

function prependSystem(op: Operation, body: Obj, texts: readonly string[]): void {
  if (texts.length === 0) return;
  switch (op) {
    case 'chat':
      body.messages = [
        ...systemMessages(texts),
        ...(Array.isArray(body.messages) ? (body.messages as unknown[]) : []),
      ];
      return;
    case 'responses':
      body.instructions = joinText([
        ...texts,
        typeof body.instructions === 'string' ? body.instructions : undefined,
      ]);
      return;
    case 'messages': {
      const sys = body.system;
      if (Array.isArray(sys))
        body.system = [...texts.map((text) => ({ type: 'text', text })), ...(sys as unknown[])];
      else body.system = joinText([...texts, typeof sys === 'string' ? sys : undefined]);
      return;
    }
    case 'completions':
    case 'embeddings':
      return;
  }
}

function appendSystem(op: Operation, body: Obj, texts: readonly string[]): void {
  if (texts.length === 0) return;
  switch (op) {
    case 'chat':
      // Some OpenAI-compatible servers accept a system message only first; an operator who
      // targets one should use prepend.
      body.messages = [
        ...(Array.isArray(body.messages) ? (body.messages as unknown[]) : []),
        ...systemMessages(texts),
      ];
      return;
    case 'responses':
      body.instructions = joinText([
        typeof body.instructions === 'string' ? body.instructions : undefined,
        ...texts,
      ]);
      return;
    case 'messages': {
      // Anthropic has no system turn inside the conversation: the end of `system` is the closest.
      const sys = body.system;
      if (Array.isArray(sys))
        body.system = [...(sys as unknown[]), ...texts.map((text) => ({ type: 'text', text }))];
      else body.system = joinText([typeof sys === 'string' ? sys : undefined, ...texts]);
      return;
    }
    case 'completions':
    case 'embeddings':
      return;
  }
}

/** Whether applyDecorators changes a body of this operation. */
function decorates(op: Operation, policy: PromptGuardPolicy): boolean {
  const { prepend, append } = policy.decorators;
  if (op === 'completions' || op === 'embeddings') return false;
  return prepend.length > 0 || append.length > 0;
}

/** Adds the policy's system messages; exported for callers that decorate without guarding. */
export function applyDecorators(op: Operation, body: Obj, policy: PromptGuardPolicy): boolean {
  const { prepend, append } = policy.decorators;
  if (!decorates(op, policy)) return false;
  prependSystem(op, body, prepend);
  appendSystem(op, body, append);
  return true;
}

// ---------------------------------------------------------------------------------------------

export function evaluateGuard(
  policy: PromptGuardPolicy,
  op: Operation,
  body: Obj,
  opts: GuardOptions = {},
): GuardResult {
  const shadow = opts.shadow === true;
  const c = compile(policy);
  const mode = policy.invisibleCharacters;
  // The body is read in place and copied only when something will change it (a template, the
  // decorators, invisible characters to strip); most requests change nothing, and the copy was
  // a deep clone of the whole body per request.
  let out = body;
  let copied = false;
  const copy = (): void => {
    if (copied) return;
    out = structuredClone(body);
    copied = true;
  };
  if (TEMPLATE_FIELD in body || (!shadow && decorates(op, policy))) copy();
  let changed = false;
  const reasons: GuardReason[] = [];

  let use: TemplateUse | undefined;
  try {
    use = takeTemplate(policy, out);
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    return {
      verdict: 'invalid',
      reasons,
      invalid: { param: err.param, message: err.message },
    };
  }
  if (TEMPLATE_FIELD in body) changed = true;

  let { list, sync } = clientSlots(op, out);
  const vars: Obj = use ? { ...use.values } : {};
  if (use) {
    for (const [k, v] of Object.entries(use.values)) {
      if (use.template.variables[k]?.type === 'string' && typeof v === 'string')
        list.field(vars, k);
    }
  }
  let slots = list.slots;
  const originals = slots.map((s) => s.text);
  const scans: InvisibleScan[] = originals.map((t) => scanInvisible(t));
  const strips = mode === 'strip' && !shadow;
  if (!copied && strips && scans.some((scan, i) => scan.total > 0 && slots[i]!.signed !== true)) {
    // The same walk over the copy finds the same slots in the same order (no template here: a
    // template was copied for above, so there are no template variables among the slots).
    copy();
    ({ list, sync } = clientSlots(op, out));
    slots = list.slots;
  }

  // Invisible characters.
  if (mode !== 'allow') {
    const counts = new Map<string, number>();
    scans.forEach((scan, i) => {
      if (scan.total === 0) return;
      for (const k of INVISIBLE_KINDS) {
        const n = scan.counts[k];
        if (n !== undefined) counts.set(k, (counts.get(k) ?? 0) + n);
      }
      // A signed thinking block cannot change; it is counted, and the provider checks it.
      if (strips && slots[i]!.signed !== true) {
        slots[i]!.set(scan.stripped);
        changed = true;
      }
    });
    if (copied) {
      list.commit();
      sync();
    }
    for (const k of INVISIBLE_KINDS) {
      const n = counts.get(k);
      if (n !== undefined)
        reasons.push({ rule: `invisible_${k}`, kind: 'invisible', action: mode, count: n });
    }
  }

  // Patterns see through Unicode tricks the way the masking detectors do.
  if (c.deny.length > 0 || c.allow.length > 0) {
    const views = originals.map((t) => createTextView(t).text);
    for (const d of c.deny) {
      let n = 0;
      for (const v of views) n += countMatches(d.re, v);
      if (n > 0) reasons.push({ rule: d.name, kind: 'deny_pattern', action: 'block', count: n });
    }
    if (c.allow.length > 0 && !c.allow.some((a) => views.some((v) => a.re.matcher(v).find()))) {
      reasons.push({ rule: 'allow_patterns', kind: 'allow_pattern', action: 'block' });
    }
  }

  if (use) {
    const values = { ...use.values };
    // Stripped string values are what gets rendered.
    for (const k of Object.keys(values)) if (typeof vars[k] === 'string') values[k] = vars[k];
    try {
      placeTemplate(op, out, use.template.role, renderTemplate(use.template, values));
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err;
      return {
        verdict: 'invalid',
        reasons,
        template: use.name,
        invalid: { param: err.param, message: err.message },
      };
    }
    changed = true;
  }

  // Size: everything the model will read from the client, templates included, decorators not.
  if (policy.maxPromptChars !== undefined) {
    const texts = maskableSlots(op, out).slots;
    let units = 0;
    for (const s of texts) units += s.text.length;
    // A character is one or two UTF-16 units: within the limit in units, no text is read.
    let chars = units;
    if (units > policy.maxPromptChars) {
      chars = 0;
      for (const s of texts) chars += charCount(s.text);
    }
    if (chars > policy.maxPromptChars) {
      reasons.push({
        rule: 'max_prompt_chars',
        kind: 'size',
        action: 'block',
        count: chars,
        limit: policy.maxPromptChars,
      });
    }
  }
  if (policy.maxPromptTokens !== undefined) {
    // Counted only when the text could be over the limit (usage/estimate.ts).
    const tokens = inputTokensOver(op, out, policy.maxPromptTokens);
    if (tokens !== undefined) {
      reasons.push({
        rule: 'max_prompt_tokens',
        kind: 'size',
        action: 'block',
        count: tokens,
        limit: policy.maxPromptTokens,
      });
    }
  }

  // An embedding model follows no instructions; scoring what is being indexed would only cost
  // false positives.
  let injection: InjectionScore | undefined;
  if (policy.injection.enabled && op !== 'embeddings') {
    let best: InjectionScore = { score: 0, rules: [] };
    for (let i = 0; i < originals.length; i++) {
      const s = recentScores.get(originals[i]!, scans[i]!);
      if (s.score > best.score) best = s;
    }
    injection = best;
    if (injection.score >= policy.injection.threshold) {
      for (const rule of injection.rules)
        reasons.push({ rule, kind: 'injection', action: policy.injection.action });
    }
  }

  const template = use?.name;
  const blocked = reasons.some((r) => r.action === 'block');
  if (blocked && !shadow) {
    return {
      verdict: 'block',
      reasons,
      ...(injection && { injection }),
      ...(template && { template }),
    };
  }
  if (!shadow && applyDecorators(op, out, policy)) changed = true;
  return {
    verdict: 'allow',
    reasons,
    ...(injection && { injection }),
    ...(template && { template }),
    ...(changed && { body: out }),
  };
}

const KIND_LABEL: Record<GuardKind, string> = {
  allow_pattern: 'allow patterns',
  deny_pattern: 'deny pattern',
  size: 'size limit',
  injection: 'prompt injection heuristics',
  invisible: 'invisible characters',
};

/**
 * The message of the 403 `prompt_blocked` error: which rules and how many matches, never what
 * matched. `policyName` is the route policy's name.
 */
export function guardBlockMessage(policyName: string, result: GuardResult): string {
  const parts: string[] = [];
  const blocking = result.reasons.filter((r) => r.action === 'block');
  const injection = blocking.filter((r) => r.kind === 'injection').map((r) => r.rule);
  if (injection.length > 0) {
    const score = result.injection ? `, score ${result.injection.score}` : '';
    parts.push(`${KIND_LABEL.injection} (${injection.join(', ')}${score})`);
  }
  for (const r of blocking) {
    switch (r.kind) {
      case 'deny_pattern':
        parts.push(`${KIND_LABEL.deny_pattern} "${r.rule}" (${r.count ?? 1})`);
        break;
      case 'allow_pattern':
        parts.push('no allow pattern matched');
        break;
      case 'size':
        parts.push(
          r.rule === 'max_prompt_tokens'
            ? `about ${r.count} prompt tokens, over the limit of ${r.limit}`
            : `${r.count} prompt characters, over the limit of ${r.limit}`,
        );
        break;
      case 'invisible':
        parts.push(
          `${KIND_LABEL.invisible}: ${r.rule.replace(/^invisible_/, '')} (${r.count ?? 1})`,
        );
        break;
      case 'injection':
        break;
    }
  }
  return `The request was blocked by the gateway's prompt guard (policy "${policyName}"): ${parts.join('; ')}.`;
}
