import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseTiktoken, rankOfAscii, rankOfChars, tableBytes, type BpeTable } from './bpe-table.js';
import type { Operation, TokenUsage } from './extract.js';
import { TextCounts } from './text-counts.js';

/**
 * Token estimates for when a provider reports no usage (stream cut, usage off, unknown backend) and
 * for budget reservations before a request is sent.
 *
 * Everything is counted with OpenAI's o200k_base encoding. For other model families (Claude,
 * Llama, ...) that is an approximation, typically within 10-20%, which is what a fallback and a
 * reservation need; exact counts always come from the provider's own usage.
 *
 * The encoding's data (its ranks and its pre-tokenizer split) comes from `gpt-tokenizer` (the
 * ranks from its `.tiktoken` data file, held compactly: bpe-table.ts); the
 * count is our own byte-pair merge over it, because estimation runs on every governed request
 * before the budget check, on caller-controlled text, and the package's own merge is both
 * quadratic in a piece's length (150 KB of `a`, one piece, took ~30 s) and costs ~5 µs per byte of
 * text that is not whole vocabulary words (random letters, ~5 s per MiB), since it decodes UTF-8
 * through TextDecoder for every pair it looks up. Here pieces are bounded (MAX_PIECE_CHARS) and
 * pairs are looked up by their bytes without decoding: linear in the text, at most ~20x the
 * per-byte cost of ordinary prose on every input we know of (`npm run bench`, section estimate).
 * The split itself is linear too: where one of its alternatives backtracks over a run (an
 * uppercase run before the lowercase part it wants, whitespace before a newline that is not
 * there), the alternative that follows takes that run whole, so each run is scanned a bounded
 * number of times. The unit tests check the counts against the package's own, token for token.
 */

interface Encoding {
  /** Every token's bytes to its rank, in flat typed arrays (bpe-table.ts). */
  table: BpeTable;
  /** The encoding's own pre-tokenizer split, sticky (a private copy: test moves lastIndex). */
  split: RegExp;
}

/**
 * Pieces of at most this many chars are first looked up whole, straight from the text (no
 * slice, no UTF-8 conversion) when they are ASCII: most words and numbers are one token.
 */
const WHOLE_TOKEN_CHARS = 16;

let encoding: Encoding | undefined;
let loadMs: number | undefined;

/**
 * The vocabulary is read on first use, not at import: processes that never estimate (or not yet)
 * start fast. It comes from the `.tiktoken` data file gpt-tokenizer ships, not from the package's
 * JavaScript table: parsing that 2.4 MB array literal cost ~70 MiB of RSS for good and its
 * strings ~20 MiB of heap (issue 16); the file parses in tens of milliseconds into ~4.5 MiB of
 * typed arrays. A synchronous read keeps estimateTokens synchronous; call warmTokenizer() at
 * startup to move the one-off cost off the first request.
 */
function load(): Encoding {
  if (!encoding) {
    const t0 = performance.now();
    const req = createRequire(import.meta.url);
    const table = parseTiktoken(
      readFileSync(req.resolve('gpt-tokenizer/data/o200k_base.tiktoken')),
    );
    const { O200K_TOKEN_SPLIT_REGEX: re } = req('gpt-tokenizer/encodingParams/constants') as {
      O200K_TOKEN_SPLIT_REGEX: RegExp;
    };
    // Sticky instead of global: estimateTokens matches at a position with test(), which
    // builds no match array per piece.
    encoding = { table, split: new RegExp(re.source, re.flags.replace('g', '') + 'y') };
    loadMs = performance.now() - t0;
  }
  return encoding;
}

/** Bytes the loaded vocabulary holds (0 before the first use). */
export function tokenizerTableBytes(): number {
  return encoding ? tableBytes(encoding.table) : 0;
}

/** Loads the tokenizer now; returns how long the load took (0 if it was already loaded). */
export function warmTokenizer(): number {
  if (encoding) return 0;
  load();
  return loadMs ?? 0;
}

/** How long the one-off tokenizer load took, if it happened. */
export function tokenizerLoadMs(): number | undefined {
  return loadMs;
}

/**
 * The longest pre-tokenizer piece (UTF-16 units) merged whole. A piece is a run of one character
 * class, so a caller controls its length, and merging is quadratic in it; longer pieces are
 * counted in parts of this size, which costs at most one extra token per part (an overestimate,
 * the safe side for a reservation) and bounds the work per input byte. 128 is o200k's longest
 * token (a run of spaces), so runs of spaces and rules of dashes are still counted exactly.
 */
export const MAX_PIECE_CHARS = 128;

/** The most UTF-8 bytes of a piece merged at once: a UTF-16 unit is at most 3 bytes. */
const MAX_PIECE_BYTES = 3 * MAX_PIECE_CHARS;
// mergeCount's scratch arrays, reused: a piece is at most MAX_PIECE_BYTES and merging never
// re-enters. (Allocating them per piece was a third of what estimation allocated.)
const NEXT = new Int32Array(MAX_PIECE_BYTES + 1);
const PREV = new Int32Array(MAX_PIECE_BYTES + 1);
const PAIR = new Float64Array(MAX_PIECE_BYTES + 1);

/**
 * Counts of pieces that needed merging (not one vocabulary token), by their bytes: the same
 * words and placeholders recur from request to request. Bounded: cleared when full, so it keeps
 * at most MERGED_MAX pieces of at most MAX_PIECE_BYTES each (~1.5 MB).
 */
const merged = new Map<string, number>();
const MERGED_MAX = 4096;

/** Observes every piece merged (tests prove the bound structurally, without timing). */
let onMerge: ((piece: string) => void) | undefined;

/** Test hook: `fn` sees the bytes (Latin-1) of every piece merged; undefined removes it. */
export function observeMerges(fn: ((piece: string) => void) | undefined): void {
  onMerge = fn;
}

/** A string's UTF-8 bytes as a Latin-1 string: the piece itself when it is ASCII. */
function latin1(s: string): string {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.from(s, 'utf8').toString('latin1');
  }
  return s;
}

/**
 * A copy of `s` that holds nothing else. A piece is a slice of the caller's text, and V8 keeps a
 * slice of 13 characters or more as a view of its parent: kept as a key of `merged`, it kept the
 * whole text alive too, so every request's prompt outlived two young collections and was
 * promoted (~10 KiB per masking + budget request, the old generation's main intake on that path:
 * issue 16). Only a piece about to be kept pays for the copy.
 */
function ownedCopy(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'latin1').toString('latin1');
}

/** The rank of bytes[a, b) as one token; Infinity when it is none. */
function rankOf(e: Encoding, bytes: string, a: number, b: number): number {
  const r = rankOfChars(e.table, bytes, a, b);
  return r < 0 ? Infinity : r;
}

/**
 * Tokens of one piece (its bytes as Latin-1): byte-pair merging, lowest rank first and leftmost
 * on ties, as tiktoken does. Parts are a linked list over byte offsets; each merge scans the live
 * pairs, so a piece costs O(length²), which MAX_PIECE_CHARS bounds.
 */
function mergeCount(e: Encoding, bytes: string): number {
  const m = bytes.length;
  if (m <= 1 || rankOfChars(e.table, bytes, 0, m) >= 0) return Math.min(m, 1);
  const known = merged.get(bytes);
  if (known !== undefined) return known;
  onMerge?.(bytes);
  // Part boundaries are byte offsets 0..m; next[i]: the boundary after i (m: none). pair[i]: the
  // rank of the part starting at i joined with the one after it.
  const next = NEXT;
  const prev = PREV;
  const pair = PAIR;
  for (let i = 0; i <= m; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
    pair[i] = i + 2 <= m ? rankOf(e, bytes, i, i + 2) : Infinity;
  }
  let parts = m;
  for (;;) {
    let best = Infinity;
    let at = -1;
    for (let i = 0; i < m; i = next[i]!) {
      if (pair[i]! < best) {
        best = pair[i]!;
        at = i;
      }
    }
    if (at < 0) break;
    // Join the part at `at` with the one after it.
    const gone = next[at]!;
    const after = next[gone]!;
    next[at] = after;
    if (after <= m) prev[after] = at;
    parts--;
    pair[at] = after < m ? rankOf(e, bytes, at, next[after]!) : Infinity;
    const before = prev[at]!;
    if (before >= 0) pair[before] = rankOf(e, bytes, before, after);
  }
  if (merged.size >= MERGED_MAX) merged.clear();
  merged.set(ownedCopy(bytes), parts);
  return parts;
}

/**
 * text[a, b) is ASCII (its bytes are its chars) and one vocabulary token: looked up in place,
 * without slicing a string out of the text.
 */
function isWholeToken(e: Encoding, text: string, a: number, b: number): boolean {
  // Every single byte is a token.
  if (b - a === 1) return text.charCodeAt(a) <= 0x7f;
  return rankOfAscii(e.table, text, a, b) >= 0;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/**
 * o200k tokens in `text`, in time linear in its length. User text may contain strings like
 * "<|endoftext|>"; they are plain text here, never control tokens.
 */
export function estimateTokens(text: string): number {
  if (text.length === 0) return 0;
  const e = load();
  const split = e.split;
  let n = 0;
  // The split is sticky: test() at each position, no match array per piece; where nothing
  // matches, one code point is skipped, as exec's search would.
  for (let at = 0; at < text.length;) {
    split.lastIndex = at;
    if (!split.test(text)) {
      at += isHighSurrogate(text.charCodeAt(at)) ? 2 : 1;
      continue;
    }
    const end = split.lastIndex;
    if (end === at) {
      // No alternative of the split matches empty; should one ever, never loop on it.
      at += isHighSurrogate(text.charCodeAt(at)) ? 2 : 1;
      continue;
    }
    if (end - at <= WHOLE_TOKEN_CHARS && isWholeToken(e, text, at, end)) {
      n++;
    } else if (end - at <= MAX_PIECE_CHARS) {
      n += mergeCount(e, latin1(text.slice(at, end)));
    } else {
      for (let i = at; i < end;) {
        let j = Math.min(i + MAX_PIECE_CHARS, end);
        // Never split a surrogate pair: half a character would count as replacement bytes.
        if (j < end && isHighSurrogate(text.charCodeAt(j - 1))) j--;
        n += mergeCount(e, latin1(text.slice(i, j)));
        i = j;
      }
    }
    at = end;
  }
  return n;
}

/**
 * Roughly what one message's framing (role, separators) costs. OpenAI documents ~3 tokens per chat
 * message plus 3 to prime the reply; other providers are similar enough for an estimate.
 */
const PER_MESSAGE_TOKENS = 3;
const REPLY_PRIMING_TOKENS = 3;
/**
 * Image cost depends on dimensions we do not decode. 765 is OpenAI's cost of a 1024x1024
 * high-detail image; a large image on Anthropic costs ~1,600. A middle value errs on neither side
 * by much for typical inputs.
 */
const IMAGE_TOKENS = 1000;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What a model sees in a request: texts to tokenize plus counts known without tokenizing. */
class Gather {
  texts: string[] = [];
  /** Tokens given directly (token-id arrays), framing overhead and image estimates. */
  extraTokens = 0;

  str(v: unknown): void {
    if (typeof v === 'string' && v.length > 0) this.texts.push(v);
  }

  json(v: unknown): void {
    if (v === undefined || v === null) return;
    if (typeof v === 'string') this.str(v);
    else this.texts.push(JSON.stringify(v));
  }

  /**
   * A prompt given as text, a list of texts, token ids, or a list of token-id lists (the shapes
   * OpenAI's completions `prompt` and embeddings `input` accept).
   */
  promptLike(v: unknown): void {
    if (typeof v === 'string') return this.str(v);
    if (!Array.isArray(v)) return;
    for (const item of v) {
      if (typeof item === 'string') this.str(item);
      else if (typeof item === 'number') this.extraTokens++;
      else if (Array.isArray(item)) this.extraTokens += item.length;
    }
  }

  /** OpenAI chat / Responses content: a string or an array of typed parts. */
  openAiContent(v: unknown): void {
    if (typeof v === 'string') return this.str(v);
    if (!Array.isArray(v)) return;
    for (const p of v) {
      if (typeof p === 'string') {
        this.str(p);
        continue;
      }
      if (!isObj(p)) continue;
      switch (p.type) {
        case 'text':
        case 'input_text':
        case 'output_text':
          this.str(p.text);
          break;
        case 'refusal':
          this.str(p.refusal);
          break;
        case 'image_url':
        case 'input_image':
          this.extraTokens += IMAGE_TOKENS;
          break;
        default:
          // Audio and files are priced by the provider in ways text cannot predict; plain `text`
          // on an unknown part type is still text the model reads.
          this.str(p.text);
      }
    }
  }

  chat(body: Obj): void {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    for (const m of messages) {
      if (!isObj(m)) continue;
      this.extraTokens += PER_MESSAGE_TOKENS;
      this.str(m.name);
      this.openAiContent(m.content);
      this.str(m.refusal);
      if (isObj(m.function_call)) {
        this.str(m.function_call.name);
        this.str(m.function_call.arguments);
      }
      if (Array.isArray(m.tool_calls)) {
        for (const tc of m.tool_calls) {
          if (isObj(tc) && isObj(tc.function)) {
            this.str(tc.function.name);
            this.str(tc.function.arguments);
          }
        }
      }
    }
    if (messages.length > 0) this.extraTokens += REPLY_PRIMING_TOKENS;
    this.json(body.tools);
    this.json(body.functions);
    if (isObj(body.response_format)) this.json(body.response_format.json_schema);
  }

  responses(body: Obj): void {
    this.str(body.instructions);
    const input = body.input;
    if (typeof input === 'string') {
      this.extraTokens += PER_MESSAGE_TOKENS;
      this.str(input);
    } else if (Array.isArray(input)) {
      for (const item of input) {
        if (typeof item === 'string') {
          this.str(item);
          continue;
        }
        if (!isObj(item)) continue;
        this.extraTokens += PER_MESSAGE_TOKENS;
        switch (item.type) {
          case 'function_call':
          case 'custom_tool_call':
            this.str(item.name);
            this.str(item.arguments);
            this.str(item.input);
            break;
          case 'function_call_output':
          case 'custom_tool_call_output':
            this.openAiContent(item.output);
            break;
          case 'reasoning':
            if (Array.isArray(item.summary)) this.openAiContent(item.summary);
            break;
          default:
            this.openAiContent(item.content);
        }
      }
    }
    this.extraTokens += REPLY_PRIMING_TOKENS;
    this.json(body.tools);
    if (isObj(body.text) && isObj(body.text.format)) this.json(body.text.format.schema);
  }

  anthropicBlocks(v: unknown): void {
    if (typeof v === 'string') return this.str(v);
    if (!Array.isArray(v)) return;
    for (const b of v) {
      if (!isObj(b)) continue;
      switch (b.type) {
        case 'text':
          this.str(b.text);
          break;
        case 'thinking':
          this.str(b.thinking);
          break;
        case 'tool_use':
        case 'server_tool_use':
          this.str(b.name);
          this.json(b.input);
          break;
        case 'tool_result':
          this.anthropicBlocks(b.content);
          break;
        case 'image':
          this.extraTokens += IMAGE_TOKENS;
          break;
        case 'document':
          // Plain-text documents are text; PDFs are priced per page and are not guessed at.
          if (isObj(b.source) && b.source.type === 'text') this.str(b.source.data);
          else if (isObj(b.source) && b.source.type === 'content')
            this.anthropicBlocks(b.source.content);
          this.str(b.title);
          this.str(b.context);
          break;
        case 'search_result':
          // Search results a tool returned (or the caller passes): the model reads them all.
          this.str(b.title);
          this.str(b.source);
          this.anthropicBlocks(b.content);
          break;
        default:
          this.str(b.text);
      }
    }
  }

  messages(body: Obj): void {
    this.anthropicBlocks(body.system);
    const messages = Array.isArray(body.messages) ? body.messages : [];
    for (const m of messages) {
      if (!isObj(m)) continue;
      this.extraTokens += PER_MESSAGE_TOKENS;
      this.anthropicBlocks(m.content);
    }
    if (messages.length > 0) this.extraTokens += REPLY_PRIMING_TOKENS;
    this.json(body.tools);
  }
}

function gather(op: Operation, body: unknown): Gather {
  const g = new Gather();
  if (!isObj(body)) return g;
  switch (op) {
    case 'chat':
      g.chat(body);
      break;
    case 'completions':
      g.promptLike(body.prompt);
      g.str(body.suffix);
      break;
    case 'embeddings':
      g.promptLike(body.input);
      break;
    case 'responses':
      g.responses(body);
      break;
    case 'messages':
      g.messages(body);
      break;
  }
  return g;
}

/** Every text the model reads in a request, newline-joined (token-id inputs are not text). */
export function promptText(op: Operation, body: unknown): string {
  return gather(op, body).texts.join('\n');
}

/** Counts of the texts recent prompts held (text-counts.ts): a conversation resends its history. */
let promptCounts = new TextCounts(estimateTokens);

/** Forgets the counts of earlier prompts (benchmarks: the cost of a prompt never seen). */
export function forgetPromptCounts(): void {
  promptCounts = new TextCounts(estimateTokens);
}

/** Estimated prompt tokens: text, message framing, token-id inputs and images. */
export function estimateRequestInputTokens(op: Operation, body: unknown): number {
  const g = gather(op, body);
  let n = g.extraTokens;
  // One tokenizer call per text: joining first would cost a copy of the whole prompt.
  for (const t of g.texts) n += promptCounts.get(t);
  return n;
}

/**
 * estimateRequestInputTokens when it is over `limit`, undefined when it is not: what a token limit
 * needs. Most requests are far below their limit, and a count is never more than the text's UTF-8
 * bytes (every piece starts as one part per byte and merging only joins parts; characters the
 * split skips count nothing), so when the bytes are within the limit no text is tokenized: for a
 * 2 KB prompt that is ~1 µs instead of a full byte-pair count. Otherwise the count is made, and
 * returned when it is over.
 */
export function inputTokensOver(op: Operation, body: unknown, limit: number): number | undefined {
  const g = gather(op, body);
  let bound = g.extraTokens;
  let chars = 0;
  for (const t of g.texts) chars += t.length;
  // A UTF-16 unit is at most 3 UTF-8 bytes: most requests are decided without measuring bytes.
  if (bound + 3 * chars > limit) {
    for (const t of g.texts) bound += Buffer.byteLength(t, 'utf8');
    if (bound > limit) {
      let n = g.extraTokens;
      for (const t of g.texts) n += estimateTokens(t);
      if (n > limit) return n;
    }
  }
  return undefined;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : undefined;
}

/** The request's own cap on generated tokens, if it sets one (per choice). */
export function maxOutputTokens(op: Operation, body: unknown): number | undefined {
  if (!isObj(body)) return undefined;
  switch (op) {
    case 'chat':
      return positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens);
    case 'completions':
    case 'messages':
      return positiveInt(body.max_tokens);
    case 'responses':
      return positiveInt(body.max_output_tokens);
    case 'embeddings':
      return undefined;
  }
}

/**
 * An upper-bound-ish estimate for reserving budget before the call: prompt tokens plus the
 * request's output cap times the number of choices. Without a cap, `defaultMaxOutputTokens` (0 if
 * not given) stands in, since the real bound is the model's, which this module does not know.
 */
export function estimateRequestTokens(
  op: Operation,
  body: unknown,
  opts: { defaultMaxOutputTokens?: number } = {},
): number {
  const input = estimateRequestInputTokens(op, body);
  if (op === 'embeddings') return input;
  const cap = maxOutputTokens(op, body) ?? opts.defaultMaxOutputTokens ?? 0;
  const choices =
    (op === 'chat' || op === 'completions') && isObj(body) ? (positiveInt(body.n) ?? 1) : 1;
  return input + cap * choices;
}

/**
 * Usage estimated from the request and the generated text the stream showed. Hidden reasoning
 * tokens (OpenAI o-series) never appear in the stream, so output is a lower bound there.
 *
 * `outputTextBytes` (StreamUsage's count of all text seen) scales the count up when outputText
 * was truncated at its byte cap. `reported` carries partial provider numbers (Anthropic's
 * message_start): its exact input counts replace the estimate, and its output count is a floor.
 */
export function estimateUsage(
  op: Operation,
  requestBody: unknown,
  outputText: string,
  opts: { outputTextBytes?: number; reported?: TokenUsage } = {},
): TokenUsage {
  const r = opts.reported;
  let input: number;
  let cached = 0;
  let cacheCreation = 0;
  if (r && r.inputTokens > 0) {
    input = r.inputTokens;
    cached = r.cachedInputTokens;
    cacheCreation = r.cacheCreationInputTokens;
  } else {
    input = estimateRequestInputTokens(op, requestBody);
  }
  let output = op === 'embeddings' ? 0 : estimateTokens(outputText);
  if (output > 0 && opts.outputTextBytes !== undefined) {
    const shown = Buffer.byteLength(outputText);
    if (opts.outputTextBytes > shown && shown > 0) {
      output = Math.ceil((output * opts.outputTextBytes) / shown);
    }
  }
  if (r) output = Math.max(output, r.outputTokens);
  return {
    inputTokens: input,
    outputTokens: output,
    totalTokens: input + output,
    cachedInputTokens: cached,
    cacheCreationInputTokens: cacheCreation,
    reasoningTokens: 0,
    estimated: true,
  };
}
