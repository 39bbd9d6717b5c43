/**
 * Applying a compiled masking policy: to a request body (by API shape), and to model output,
 * whole or streamed. Findings are tallied by direction, type and action; values never leave
 * this module except as replacements in the body.
 */
import type { Operation } from '../providers/endpoints.js';
import type { MaskAction } from '../config/contract.js';
import type { DetectorSet, Finding } from './detect/index.js';
import { maskableSlots, type SlotList } from './fields.js';
import { spliceValues, withValueEdit, type ValueEditMap } from './json-splice.js';
import { restore, StreamRestorer } from './placeholder.js';
import { irreversible, type CompiledMasking } from './compiled.js';
import { RecentTexts } from '../shared/recent-texts.js';
import {
  EMPTY_LOOKUP,
  PolicyUnavailableError,
  RequestVault,
  usedPlaceholderNumbers,
  type MaybePromise,
  type PlaceholderLookup,
  type Vault,
  type VaultItem,
  type VaultSession,
} from './vault.js';

export { PolicyUnavailableError };

export type Direction = 'request' | 'response';

export interface FindingCount {
  direction: Direction;
  type: string;
  /** The action taken, or `would_<action>` in shadow mode. */
  action: string;
  count: number;
}

export class Tally {
  /**
   * In the order each (direction, type, action) was first counted, searched linearly: a Map
   * keyed by a string joined from the three built and hashed that string per finding (~0.7 KiB
   * per masked request, issue 16). The entries are bounded by the policy (its types and actions,
   * two directions), never by what a request holds.
   */
  private readonly counts: FindingCount[] = [];

  add(direction: Direction, type: string, action: string): void {
    for (const c of this.counts) {
      if (c.type === type && c.action === action && c.direction === direction) {
        c.count++;
        return;
      }
    }
    this.counts.push({ direction, type, action, count: 1 });
  }

  list(): FindingCount[] {
    return [...this.counts];
  }

  get size(): number {
    return this.counts.length;
  }
}

export const SYSTEM_NOTE =
  'Some values in this conversation were replaced by placeholders such as [EMAIL_1]. ' +
  'When you refer to one, write the placeholder exactly as it appears, brackets included.';

function within<T>(v: MaybePromise<T>, ms: number): MaybePromise<T> {
  if (!(v instanceof Promise)) return v;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PolicyUnavailableError('vault timed out')), ms);
  });
  return Promise.race([v, timeout]).finally(() => clearTimeout(timer));
}

export interface RequestMasking {
  /** The body was rewritten in place. */
  changed: boolean;
  /** Types and counts that the policy blocks (enforce mode only); values are never kept. */
  blocked: { type: string; count: number }[];
  /** What restores this request's placeholders in the response. */
  lookup: PlaceholderLookup;
  /** The shared vault failed and this request was masked with a vault of its own. */
  degraded: boolean;
  /**
   * The rewritten body as it must leave, spliced into `source` (when given and the change allows
   * it); undefined otherwise: the caller serializes `body`.
   */
  bytes?: Buffer;
}

export interface RequestMaskingInput {
  masking: CompiledMasking;
  shadow: boolean;
  operation: Operation;
  body: Record<string, unknown>;
  tally: Tally;
  /** The shared vault and the conversation's scoped id; absent: placeholders live for one request. */
  vault?: Vault | undefined;
  session?: string | undefined;
  /**
   * When the shared vault fails: mask with a vault of this request only (its placeholders restore
   * in its own answer; earlier turns' do not) instead of throwing PolicyUnavailableError.
   */
  degradeOnVaultFailure?: boolean;
  /**
   * JSON text that `body` was parsed from, if the caller has it: masked values are spliced into
   * it instead of re-serializing the body (json-splice.ts spliceValues checks it holds `body`).
   */
  source?: Buffer | undefined;
}

interface Planned {
  slot: number;
  finding: Finding;
  action: MaskAction;
}

/** Findings that cannot be masked where they are: the text is signed by the provider. */
export const SIGNED_SUFFIX = ' in a signed thinking block';

export async function maskRequest(input: RequestMaskingInput): Promise<RequestMasking> {
  // A promise whatever happens, a throw included, for callers that await it anyway.
  return await maskRequestNow(input);
}

/**
 * maskRequest, answered synchronously unless the shared vault answers later (a Redis vault):
 * an async function allocates its promise and frame on every call, and the in-memory vault and
 * a request without a conversation never wait (issue 16). Throws what maskRequest rejects with.
 */
export function maskRequestNow(input: RequestMaskingInput): MaybePromise<RequestMasking> {
  const { masking: m, shadow, tally } = input;
  const list = maskableSlots(input.operation, input.body);
  const slots = list.slots;
  // A loop rather than map(): no closure per request.
  const texts = new Array<string>(slots.length);
  for (let i = 0; i < slots.length; i++) texts[i] = slots[i]!.text;
  const plans: Planned[] = [];
  // Made when a type is blocked (rarely): a Map per request otherwise.
  let blocked: Map<string, number> | undefined;
  const foundPerText = detectAll(m.detectors, texts, m.findingsScope);
  for (let i = 0; i < foundPerText.length; i++) {
    const found = foundPerText[i]!;
    if (found.length === 0) continue;
    const signed = slots[i]!.signed === true;
    for (const f of found) {
      let action = m.action(f.type);
      tally.add('request', f.type, shadow ? `would_${action}` : action);
      // A signed text cannot be rewritten (the provider would refuse it): refused instead.
      if (signed && action !== 'alert') {
        action = 'block';
        const k = `${f.type}${SIGNED_SUFFIX}`;
        blocked ??= new Map();
        blocked.set(k, (blocked.get(k) ?? 0) + 1);
      } else if (action === 'block') {
        blocked ??= new Map();
        blocked.set(f.type, (blocked.get(f.type) ?? 0) + 1);
      }
      plans.push({ slot: i, finding: f, action });
    }
  }
  const sessionVault = m.reversible && input.vault && input.session !== undefined;
  if (shadow) return { changed: false, blocked: [], lookup: EMPTY_LOOKUP, degraded: false };
  if (blocked) {
    return {
      changed: false,
      blocked: [...blocked].map(([type, count]) => ({ type, count })),
      lookup: EMPTY_LOOKUP,
      degraded: false,
    };
  }

  const items: VaultItem[] = [];
  for (const p of plans) {
    if (p.action === 'mask') {
      const s = texts[p.slot]!;
      items.push({ type: p.finding.type, value: s.slice(p.finding.start, p.finding.end) });
    }
  }
  const planned: Plan = { input, list, texts, plans, items };
  if (!sessionVault) return rewrite(planned, undefined, false);
  let opened: MaybePromise<VaultSession>;
  try {
    // Even without new values: the lookup restores placeholders of earlier turns.
    opened = within(input.vault!.open(input.session!, items, m.timeoutMs), m.timeoutMs);
  } catch (err) {
    return rewrite(planned, undefined, vaultFailed(input, err));
  }
  // Any thenable waits, as `await` did: only a session object goes on at once.
  if (typeof (opened as Partial<PromiseLike<VaultSession>>).then !== 'function')
    return rewrite(planned, opened as VaultSession, false);
  return Promise.resolve(opened).then(
    (s) => rewrite(planned, s, false),
    (err: unknown) => rewrite(planned, undefined, vaultFailed(input, err)),
  );
}

/** What maskRequestNow decided before the vault answered. */
interface Plan {
  input: RequestMaskingInput;
  list: SlotList;
  texts: string[];
  plans: Planned[];
  items: VaultItem[];
}

/** True when the request goes on with a vault of its own; throws when it may not. */
function vaultFailed(input: RequestMaskingInput, err: unknown): true {
  if (!(err instanceof PolicyUnavailableError) || !input.degradeOnVaultFailure) throw err;
  // Masking never depends on the shared vault: only restoring earlier turns is lost.
  return true;
}

/**
 * The planned changes written into the body: `opened` is the conversation's vault session, if
 * there is one and it answered; `degraded`: it failed and the request masks on its own.
 */
function rewrite(plan: Plan, opened: VaultSession | undefined, degraded: boolean): RequestMasking {
  const { input, list, texts, plans, items } = plan;
  const m = input.masking;
  let placeholders: string[] = opened ? opened.placeholders : [];
  let lookup: PlaceholderLookup = opened ? opened.lookup : EMPTY_LOOKUP;
  if (opened === undefined && items.length > 0) {
    // No conversation: the placeholders live for this request only, and its response comes back
    // through the same extproc stream, so no other replica ever needs them. They stay in memory
    // even when the shared vault is Redis: a round trip would buy nothing and cost latency.
    // Numbers already written in the request (placeholders of earlier turns) are not reused, so
    // the answer never restores an earlier turn's placeholder to this request's value.
    const vault = new RequestVault(usedPlaceholderNumbers(texts));
    placeholders = vault.put(items);
    if (m.reversible) lookup = vault;
  }

  // What changed, by where it sits in the body, while each change is a plain value's: then the
  // new values can be spliced into the source text (a key renamed, or a value inside JSON carried
  // in a string, rewrites something else, and the body is re-serialized).
  let spliced: ValueEditMap | undefined;
  let splicing = input.source !== undefined;
  let changedSlots = 0;
  let next = 0;
  // Plans come by slot, and within a slot by position: each slot's run of plans is written in
  // one pass, left to right, with no Map of edits per slot and no intermediate text per edit
  // (cutting a text already joined flattened it first). Findings that overlap (possible only
  // where normalization mapped two back onto one character) are written as before, right to left.
  for (let a = 0; a < plans.length;) {
    const i = plans[a]!.slot;
    const from = texts[i]!;
    let b = a + 1;
    let ordered = true;
    for (; b < plans.length && plans[b]!.slot === i; b++)
      if (plans[b]!.finding.start < plans[b - 1]!.finding.end) ordered = false;
    let text = '';
    let at = 0;
    let edited = false;
    let edits: { f: Finding; with: string }[] | undefined;
    for (let k = a; k < b; k++) {
      const p = plans[k]!;
      const replacement =
        p.action === 'mask'
          ? placeholders[next++]!
          : irreversible(m, p.action, p.finding.type, from.slice(p.finding.start, p.finding.end));
      if (replacement === undefined) continue;
      edited = true;
      if (ordered) {
        text += from.slice(at, p.finding.start) + replacement;
        at = p.finding.end;
      } else (edits ??= []).push({ f: p.finding, with: replacement });
    }
    a = b;
    // Only alerts here: the slot is left as it is.
    if (!edited) continue;
    if (edits) {
      text = from;
      for (let k = edits.length - 1; k >= 0; k--) {
        const e = edits[k]!;
        text = text.slice(0, e.f.start) + e.with + text.slice(e.f.end);
      }
    } else text += from.slice(at);
    changedSlots++;
    const slot = list.slots[i]!;
    slot.set(text);
    if (splicing) {
      spliced = withValueEdit(spliced, slot, from, text);
      splicing = spliced !== undefined;
    }
  }
  // A JSON document in a string that repeats a key is written back even without findings.
  const committed = list.commit();
  const changed = committed || changedSlots > 0;
  if (changed && m.systemNote && m.reversible && placeholders.length > 0) {
    addSystemNote(input.operation, input.body);
    spliced = undefined;
  }
  const bytes =
    spliced && !committed ? spliceValues(input.source!, input.body, spliced) : undefined;
  return bytes
    ? { changed, blocked: [], lookup, degraded, bytes }
    : { changed, blocked: [], lookup, degraded };
}

/**
 * Separates texts detected in one pass. No built-in detector takes a NUL inside a value, so a
 * finding never spans one; a custom pattern that does is re-run on each text it touched.
 */
const JOIN = '\n\u0000\n';

const NO_FINDINGS: readonly Finding[] = Object.freeze([]);

/**
 * The findings (places and types, no values) of recent request texts, for every policy: one
 * bound for all of them (two generations of 4,096 texts), each policy's apart (its
 * findingsScope).
 */
const RECENT_FINDINGS = new RecentTexts<readonly Finding[]>();

/**
 * Findings per text, with offsets into each text. With a `scope` (the policy's findingsScope,
 * set when its detectors cost more than a digest), a text of 64 characters or more is detected on
 * its own, once while it recurs (RECENT_FINDINGS): a conversation resends its history with every
 * turn. The others go through one detector pass over all of them: a body holds many short strings
 * (keys, roles, ids), and a pass has a fixed cost per call. Findings kept are shared and frozen:
 * read, never changed.
 */
export function detectAll(
  detectors: DetectorSet,
  texts: readonly string[],
  scope?: string,
): (readonly Finding[])[] {
  // Most texts of a body have no finding: they share one empty list, never written.
  const out = new Array<readonly Finding[]>(texts.length).fill(NO_FINDINGS);
  if (scope === undefined) {
    if (texts.length > 0) detectJoined(detectors, texts, undefined, out);
    return out;
  }
  let joined: number[] | undefined;
  for (let k = 0; k < texts.length; k++) {
    const text = texts[k]!;
    if (RECENT_FINDINGS.holds(text))
      out[k] = RECENT_FINDINGS.get(text, detectAlone, detectors, scope);
    else (joined ??= []).push(k);
  }
  if (joined) detectJoined(detectors, texts, joined, out);
  return out;
}

/** A text's findings as `recent` keeps them: frozen, shared by every request that sends it. */
function detectAlone(text: string, detectors: DetectorSet): readonly Finding[] {
  const found = detectors.detect(text);
  if (found.length === 0) return NO_FINDINGS;
  for (const f of found) Object.freeze(f);
  return Object.freeze(found);
}

/** detectAll's one pass over the texts at `which` (all of them when undefined), into `out`. */
function detectJoined(
  detectors: DetectorSet,
  texts: readonly string[],
  which: readonly number[] | undefined,
  out: (readonly Finding[])[],
): void {
  // Without `which` the texts are used as they are: no index or copy per request.
  let parts = texts;
  if (which) {
    parts = new Array<string>(which.length);
    for (let j = 0; j < which.length; j++) (parts as string[])[j] = texts[which[j]!]!;
  }
  if (parts.length === 1) {
    out[which ? which[0]! : 0] = detectors.detect(parts[0]!);
    return;
  }
  // Sized once: pushing grew it (and copied it) a few times per request.
  const starts = new Array<number>(parts.length);
  let at = 0;
  for (let j = 0; j < parts.length; j++) {
    starts[j] = at;
    at += parts[j]!.length + JOIN.length;
  }
  let redo: Set<number> | undefined;
  // Findings come sorted by start (DetectorSet.detect), so the text each one starts in only
  // moves forward; one that did not would be looked up from the first text again.
  let j = 0;
  for (const f of detectors.detect(parts.join(JOIN))) {
    if (starts[j]! > f.start) j = 0;
    while (j + 1 < starts.length && starts[j + 1]! <= f.start) j++;
    const base = starts[j]!;
    if (f.end - base > parts[j]!.length) {
      // Across a separator: each text it touched is detected again on its own.
      redo ??= new Set();
      for (let m = j; m < parts.length && starts[m]! < f.end; m++) redo.add(which ? which[m]! : m);
      continue;
    }
    // A text detected again below gets a new list, so what was added to it here is dropped.
    const k = which ? which[j]! : j;
    let list = out[k]!;
    if (list === NO_FINDINGS) out[k] = list = [];
    // The set's findings are its own, made for this call: moved to the text's offsets in place.
    f.start -= base;
    f.end -= base;
    (list as Finding[]).push(f);
  }
  if (redo) for (const k of redo) out[k] = detectors.detect(texts[k]!);
}

/** Asks the model to keep placeholders verbatim, in the place each API reads instructions from. */
export function addSystemNote(op: Operation, body: Record<string, unknown>): void {
  switch (op) {
    case 'chat': {
      if (Array.isArray(body.messages))
        body.messages = [{ role: 'system', content: SYSTEM_NOTE }, ...(body.messages as unknown[])];
      return;
    }
    case 'responses': {
      const ins = body.instructions;
      body.instructions =
        typeof ins === 'string' && ins !== '' ? `${ins}\n\n${SYSTEM_NOTE}` : SYSTEM_NOTE;
      return;
    }
    case 'messages': {
      const sys = body.system;
      if (typeof sys === 'string' && sys !== '') body.system = `${sys}\n\n${SYSTEM_NOTE}`;
      else if (Array.isArray(sys))
        body.system = [...(sys as unknown[]), { type: 'text', text: SYSTEM_NOTE }];
      else body.system = SYSTEM_NOTE;
      return;
    }
    case 'completions':
    case 'embeddings':
      return;
  }
}

/**
 * Model output: new findings replaced per policy (never restorable: a value the client did not
 * send must not come back through a placeholder), then this conversation's placeholders restored.
 */
export class OutputTransform {
  constructor(
    readonly masking: CompiledMasking,
    private readonly shadow: boolean,
    readonly lookup: PlaceholderLookup,
    private readonly tally: Tally,
  ) {}

  get scans(): boolean {
    return this.masking.scanResponses;
  }

  get restores(): boolean {
    return this.lookup.size > 0;
  }

  /** Replaces findings in `text[from..]`; `text[..from]` is only context already sent. */
  scan(
    text: string,
    from = 0,
    upTo = text.length,
    found: readonly Finding[] = this.masking.detectors.detect(text),
    count = true,
  ): string {
    const m = this.masking;
    let out = '';
    let at = from;
    for (const f of found) {
      if (f.start < from || f.start >= upTo) continue;
      const action = m.action(f.type);
      if (count) this.tally.add('response', f.type, this.shadow ? `would_${action}` : action);
      if (this.shadow) continue;
      // Blocking is no longer possible once a response is under way: the value is redacted.
      const r = irreversible(
        m,
        action === 'block' ? 'redact' : action,
        f.type,
        text.slice(f.start, f.end),
      );
      if (r === undefined) continue;
      out += text.slice(at, f.start) + r;
      at = f.end;
    }
    return at === from ? text.slice(from, upTo) : out + text.slice(at, upTo);
  }

  /** `count: false` for texts that repeat ones already counted (a stream's done events). */
  whole(text: string, json = false, count = true): string {
    const scanned = this.scans
      ? this.scan(text, 0, text.length, this.masking.detectors.detect(text), count)
      : text;
    return restore(scanned, this.lookup, json);
  }

  channel(json = false): TextChannel {
    return new TextChannel(this, json);
  }
}

/** Left context kept for the detectors after text was sent, so a sent number's tail is not a new finding. */
const LEFT_CONTEXT = 48;
/** Beyond this much text without a safe cut, the scanner cuts anyway (TTFT bound on odd output). */
const MAX_SCAN_HOLD = 4096;
const RIGHT_CONTEXT = 96;

function isDigitCode(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isLowerOrPunct(c: number): boolean {
  return (c >= 97 && c <= 122) || c === 40 || c === 34 || c === 39;
}

/**
 * One streamed text (a choice's content, a tool call's arguments, a content block): the scanner
 * holds text back only until a cut where no value can span (a space between a non-digit and a
 * lower-case word), then the restorer holds back only an unfinished placeholder. Each character
 * is scanned about twice at most, so the work per chunk is proportional to the chunk.
 */
export class TextChannel {
  private pending = '';
  private left = '';
  private readonly restorer: StreamRestorer;
  private searchFrom = 0;

  constructor(
    private readonly t: OutputTransform,
    json: boolean,
  ) {
    this.restorer = new StreamRestorer(t.lookup, t.masking.maxPlaceholderLength, json);
  }

  push(text: string): string {
    if (!this.t.scans) return this.restorer.push(text);
    this.pending += text;
    const cut = this.safeCut();
    if (cut <= 0) return '';
    return this.restorer.push(this.release(cut));
  }

  flush(): string {
    const rest =
      this.t.scans && this.pending.length > 0 ? this.release(this.pending.length, true) : '';
    return this.restorer.push(rest) + this.restorer.flush();
  }

  /** Characters not yet given to the client. */
  get held(): number {
    return this.pending.length + this.restorer.held;
  }

  private safeCut(): number {
    const s = this.pending;
    let cut = -1;
    for (let i = s.length - 2; i >= Math.max(1, this.searchFrom); i--) {
      if (
        s.charCodeAt(i) === 32 &&
        !isDigitCode(s.charCodeAt(i - 1)) &&
        isLowerOrPunct(s.charCodeAt(i + 1))
      ) {
        cut = i + 1;
        break;
      }
    }
    this.searchFrom = Math.max(0, s.length - 1);
    if (cut > 0) return cut;
    if (s.length <= MAX_SCAN_HOLD) return -1;
    return s.length - RIGHT_CONTEXT;
  }

  /** Scans the pending text with its contexts, sends everything before `cut`, keeps the rest. */
  private release(cut: number, final = false): string {
    const s = this.left + this.pending;
    const from = this.left.length;
    let upTo = from + cut;
    const found = this.t.masking.detectors.detect(s);
    // A finding across the cut is sent whole with a later release, never half now; only a
    // finding longer than the whole hold-back is cut.
    if (!final) {
      for (const f of found) {
        if (f.start < upTo && f.end > upTo && f.start >= from) upTo = f.start;
      }
      if (upTo === from && this.pending.length > MAX_SCAN_HOLD) upTo = from + cut;
    }
    const out = this.t.scan(s, from, upTo, found);
    const sent = s.slice(from, upTo);
    this.pending = s.slice(upTo);
    this.left = (this.left + sent).slice(-LEFT_CONTEXT);
    // The text kept was searched already: only what arrives next can hold a new cut.
    this.searchFrom = Math.max(0, this.pending.length - 1);
    return out;
  }
}

/**
 * One text masked on its own (`sluice mask`): placeholders numbered within the text, findings
 * with offsets into the input.
 */
export function maskString(
  m: CompiledMasking,
  text: string,
  shadow = false,
): { text: string; findings: Finding[] } {
  const findings = m.detectors.detect(text);
  if (shadow || findings.length === 0) return { text, findings };
  const vault = new RequestVault();
  let out = '';
  let at = 0;
  for (const f of findings) {
    const action = m.action(f.type);
    const value = text.slice(f.start, f.end);
    const r =
      action === 'mask'
        ? vault.put([{ type: f.type, value }])[0]!
        : irreversible(m, action, f.type, value);
    if (r === undefined) continue;
    out += text.slice(at, f.start) + r;
    at = f.end;
  }
  return { text: out + text.slice(at), findings };
}
