/**
 * Does a request fit its model's context window, and if not, what is left after trimming?
 *
 * The input is counted with the gateway's token estimate (usage/estimate.ts: o200k, linear in
 * the text) one message at a time, so trimming never counts anything twice: the whole request is
 * the fixed part (system prompt, instructions, tools, schemas) plus each message, and dropping a
 * message subtracts its count. A request fits when its estimated input plus the output it asks
 * for (its own limit, or the one the gateway will set) is within the window, and its input
 * within the model's input limit if the provider states one. That is the providers' own rule
 * (OpenAI counts max_tokens against the window; Anthropic requires max_tokens and counts it).
 *
 * Trimming drops whole turns: a turn starts at a user message (an Anthropic user message that
 * only carries tool results continues the turn before it) and runs to the next one, so an
 * assistant's tool calls always leave together with their results (OpenAI `tool_calls` and
 * `tool` messages, Anthropic `tool_use` and `tool_result` blocks, Responses `function_call` and
 * `function_call_output` items), and the remaining messages still alternate as Anthropic wants.
 * System and developer messages are never dropped, wherever they are; the last turn (the one
 * being asked) always stays. `trim-oldest` drops turns from the start; `trim-middle` keeps the
 * first turn (the task as first stated) and drops from the second on, the first last of all.
 * A trimmed request leaves room for the answer: its own output limit, else the policy's reserve.
 */
import type { Operation } from '../providers/endpoints.js';
import { estimateRequestInputTokens } from '../usage/estimate.js';
import type { ContextOverflow, ModelWindow } from './schema.js';

type Obj = Record<string, unknown>;

/**
 * What usage/estimate.ts adds once to a chat or messages request that has any message (OpenAI's
 * reply priming). The unit tests check that the parts below add up to its whole estimate.
 */
const REPLY_PRIMING_TOKENS = 3;

export interface FitInput {
  operation: Operation;
  body: Obj;
  window: ModelWindow;
  overflow: ContextOverflow;
  /** The output limit the request carries upstream (its own, else the gateway's), if any. */
  outputLimit: number | undefined;
  /** Room left for the answer by a trimmed request without an output limit. */
  reserveOutputTokens: number;
}

export type FitResult =
  | { kind: 'fits'; inputTokens: number; outputTokens: number }
  | {
      kind: 'trimmed';
      body: Obj;
      /** Messages (input items) removed. */
      dropped: number;
      inputTokensBefore: number;
      inputTokens: number;
      outputTokens: number;
    }
  | {
      kind: 'exceeded';
      inputTokens: number;
      outputTokens: number;
      contextTokens: number;
      maxInputTokens?: number | undefined;
      /** The least input trimming could reach (trim modes): system, fixed parts and last turn. */
      trimmedInputTokens?: number | undefined;
    };

/** The operations whose requests are checked: those that generate. */
export function checksContext(op: Operation): boolean {
  return op === 'chat' || op === 'messages' || op === 'responses' || op === 'completions';
}

interface Parts {
  /** Where the items are: `messages`, or `input` (Responses); undefined: nothing to trim. */
  key: 'messages' | 'input' | undefined;
  items: unknown[];
  itemTokens: number[];
  fixed: number;
  total: number;
}

function parts(op: Operation, body: Obj): Parts {
  const key =
    op === 'chat' || op === 'messages'
      ? 'messages'
      : op === 'responses' && Array.isArray(body.input)
        ? 'input'
        : undefined;
  const items = key && Array.isArray(body[key]) ? (body[key] as unknown[]) : [];
  if (!key || items.length === 0) {
    const total = estimateRequestInputTokens(op, body);
    return { key: undefined, items: [], itemTokens: [], fixed: total, total };
  }
  const fixed = estimateRequestInputTokens(op, { ...body, [key]: [] });
  const emptyItems = op === 'responses' ? estimateRequestInputTokens(op, { [key]: [] }) : 0;
  const priming = op === 'responses' ? 0 : REPLY_PRIMING_TOKENS;
  // One estimate per item: each text is tokenized once, as for the whole request.
  const itemTokens = items.map(
    (it) => estimateRequestInputTokens(op, { [key]: [it] }) - emptyItems - priming,
  );
  const total = fixed + itemTokens.reduce((s, n) => s + n, 0) + priming;
  return { key, items, itemTokens, fixed, total };
}

function role(item: unknown): string | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  const r = (item as Obj).role;
  return typeof r === 'string' ? r : undefined;
}

function pinned(item: unknown): boolean {
  const r = role(item);
  return r === 'system' || r === 'developer';
}

/** Where a new turn starts: a user message, unless it only answers tool calls (Anthropic). */
export function startsTurn(op: Operation, item: unknown): boolean {
  if (role(item) !== 'user') return false;
  if (op !== 'messages') return true;
  const content = (item as Obj).content;
  if (!Array.isArray(content)) return true;
  return !content.some(
    (b) => typeof b === 'object' && b !== null && (b as Obj).type === 'tool_result',
  );
}

export function fitContext(input: FitInput): FitResult {
  const { window: w, body, operation: op } = input;
  const p = parts(op, body);
  const asked = input.outputLimit ?? 0;
  const inputOk = (n: number) => w.maxInputTokens === undefined || n <= w.maxInputTokens;
  if (p.total + asked <= w.contextTokens && inputOk(p.total)) {
    return { kind: 'fits', inputTokens: p.total, outputTokens: asked };
  }
  const exceeded = (trimmedInputTokens?: number): FitResult => ({
    kind: 'exceeded',
    inputTokens: p.total,
    outputTokens: asked,
    contextTokens: w.contextTokens,
    maxInputTokens: w.maxInputTokens,
    ...(trimmedInputTokens !== undefined ? { trimmedInputTokens } : {}),
  });
  if (input.overflow === 'reject' || p.key === undefined) return exceeded();

  const room =
    input.outputLimit ??
    Math.min(input.reserveOutputTokens, w.maxOutputTokens ?? input.reserveOutputTokens);
  const budget = Math.min(w.contextTokens - room, w.maxInputTokens ?? Infinity);

  // Turns: [start, end) ranges of items; items before the first user message form turn 0.
  const turns: { start: number; end: number }[] = [];
  p.items.forEach((it, i) => {
    if (turns.length === 0 || startsTurn(op, it)) {
      if (turns.length > 0) turns[turns.length - 1]!.end = i;
      turns.push({ start: i, end: p.items.length });
    }
  });
  const droppable = turns.slice(0, -1);
  // trim-middle: the first turn the user started is dropped last (what comes before it, such as
  // an assistant's greeting, is not the task).
  const first = droppable.findIndex((t) => startsTurn(op, p.items[t.start]));
  const order =
    input.overflow === 'trim-middle' && first >= 0
      ? [...droppable.filter((_, i) => i !== first), droppable[first]!]
      : droppable;
  const dropped = new Array<boolean>(p.items.length).fill(false);
  let total = p.total;
  let count = 0;
  for (const t of order) {
    if (total <= budget) break;
    for (let i = t.start; i < t.end; i++) {
      if (pinned(p.items[i])) continue;
      dropped[i] = true;
      total -= p.itemTokens[i]!;
      count++;
    }
  }
  if (total > budget) return exceeded(total);
  const kept = p.items.filter((_, i) => !dropped[i]);
  return {
    kind: 'trimmed',
    body: { ...body, [p.key]: kept },
    dropped: count,
    inputTokensBefore: p.total,
    inputTokens: total,
    outputTokens: room,
  };
}

/** The 400's message: the counts, never the content. */
export function exceededMessage(
  model: string,
  r: Extract<FitResult, { kind: 'exceeded' }>,
): string {
  const shown = model.length > 200 ? `${model.slice(0, 200)}…` : model;
  const inputOver = r.maxInputTokens !== undefined && r.inputTokens > r.maxInputTokens;
  let m = inputOver
    ? `The model "${shown}" reads at most ${r.maxInputTokens} input tokens; this request has about ${r.inputTokens}.`
    : `The model "${shown}" has a context window of ${r.contextTokens} tokens; this request needs about ${r.inputTokens + r.outputTokens} (${r.inputTokens} estimated input + ${r.outputTokens} output limit).`;
  if (r.trimmedInputTokens !== undefined) {
    m += ` Even with every earlier turn dropped it would need ${r.trimmedInputTokens} input tokens.`;
  }
  return `${m} Shorten the conversation or lower the output limit.`;
}
