/**
 * Prompt-injection heuristics: a fixed set of named, weighted rules over the text a caller (or a
 * tool the caller ran) put in front of the model. A text's score is the sum of the weights of the
 * rules it triggers; the result names the rules and never carries the matched text, so it can go
 * to logs, metrics and error messages as is.
 *
 * Weights are set so that one unambiguous signal (an instruction override, a request for the
 * hidden prompt, hidden tag text) reaches the default threshold of 1 on its own, while the weak
 * signals that ordinary prompts also produce (a transcript with "Assistant:" lines, "from now on",
 * a base64 blob that decodes to text, "developer mode" on an Android phone) only block together.
 *
 * The phrase rules work on a normalized copy: NFKC (full-width and compatibility forms), format
 * characters removed (zero-width splitting), accents folded and lower case, so "Ｉｇｎｏｒｅ",
 * "ig\u200bnore" and "précédentes"/"precedentes" read the same. They are then run again on what
 * attackers hide: base64 and hex blobs, rot13 (when the text mentions it), digit-for-letter
 * spelling, tag-character text and right-to-left overrides.
 *
 * Matching is over word tokens with small, fixed windows (no backtracking over the input), so the
 * cost is linear in the text.
 */
import { scanInvisible, type InvisibleScan } from './invisible.js';

export interface InjectionRule {
  readonly name: string;
  readonly weight: number;
  readonly description: string;
}

const RULE_LIST = [
  {
    name: 'instruction_override',
    weight: 1,
    description:
      'tells the model to ignore, forget or replace the instructions it was given (EN, DE, FR, ES)',
  },
  {
    name: 'prompt_leak',
    weight: 1,
    description: 'asks the model to reveal or repeat its system prompt or hidden instructions',
  },
  {
    name: 'hidden_tag_text',
    weight: 1,
    description: 'text written in Unicode tag characters, invisible to readers but not to models',
  },
  {
    name: 'restriction_bypass',
    weight: 0.6,
    description: 'asks for no rules, filters or safety, or declares them off',
  },
  {
    name: 'jailbreak_persona',
    weight: 0.6,
    description: 'a known jailbreak persona or mode (DAN, developer mode, stay in character)',
  },
  {
    name: 'encoded_instructions',
    weight: 0.5,
    description: 'an encoded payload (base64, hex, rot13) that decodes to one of these patterns',
  },
  {
    name: 'role_marker',
    weight: 0.5,
    description: 'a fake conversation turn: a system/assistant label or a chat-template role',
  },
  {
    name: 'chat_template_token',
    weight: 0.5,
    description: 'control tokens of chat templates (<|im_start|>, [INST], <<SYS>>, ...)',
  },
  {
    name: 'new_instructions',
    weight: 0.5,
    description: 'announces new instructions or a new task ("from now on", "your real task")',
  },
  {
    name: 'delimiter_escape',
    weight: 0.5,
    description: 'pretends the user input ended or a system section begins',
  },
  {
    name: 'authority_claim',
    weight: 0.4,
    description: 'claims to be the developer, administrator or provider of the model',
  },
  {
    name: 'bidi_override',
    weight: 0.4,
    description: 'bidirectional override or isolate characters that reorder what a reader sees',
  },
  {
    name: 'zero_width_splitting',
    weight: 0.4,
    description: 'zero-width characters inside Latin words, which break up keywords',
  },
  {
    name: 'fake_dialogue',
    weight: 0.4,
    description: 'many scripted assistant turns in one message (many-shot priming)',
  },
  {
    name: 'excessive_repetition',
    weight: 0.4,
    description: 'the same line or short phrase repeated many times',
  },
  {
    name: 'encoded_text',
    weight: 0.3,
    description: 'a long base64 or hex blob that decodes to readable text',
  },
  {
    name: 'obfuscated_text',
    weight: 0.3,
    description: 'a pattern above spelled with digits for letters (1gn0r3)',
  },
] as const satisfies readonly InjectionRule[];

export type InjectionRuleName = (typeof RULE_LIST)[number]['name'];

export const INJECTION_RULES: readonly InjectionRule[] = RULE_LIST;

const WEIGHT = new Map<string, number>(RULE_LIST.map((r) => [r.name, r.weight]));

export const DEFAULT_INJECTION_THRESHOLD = 1;

export interface InjectionScore {
  /** Sum of the weights of `rules`, rounded to two decimals. */
  score: number;
  /** Rule names, in the order of INJECTION_RULES. */
  rules: InjectionRuleName[];
}

// ---------------------------------------------------------------------------------------------
// Normalization and tokens.

const APOSTROPHES = /[\u2018\u2019\u02bc\u0060\u00b4]/g;
const FORMAT_CHARS = /[\p{Cf}\u{fe00}-\u{fe0f}\u{e0100}-\u{e01ef}]/gu;
const MARKS = /\p{M}/gu;

export function normalizeForRules(text: string): string {
  if (Buffer.byteLength(text, 'utf8') === text.length) return text.toLowerCase();
  return text
    .normalize('NFKC')
    .replace(FORMAT_CHARS, '')
    .normalize('NFD')
    .replace(MARKS, '')
    .toLowerCase()
    .replace(APOSTROPHES, "'");
}

const TOKEN = /[\p{L}\p{N}]+/gu;

function tokenize(text: string): string[] {
  return text.match(TOKEN) ?? [];
}

/**
 * Every lexicon's index keys (the first three letters of an entry's first word, all ASCII),
 * numbered once for all of them, so a text's tokens are keyed once and only the lexicons with an
 * entry under a token's key look at it. Looking each token up in each lexicon by a fresh 3-letter
 * slice cost ~20 slices and map lookups per token, most of the guard's time on ordinary prose.
 */
const KEY_IDS = new Map<number, number>();
/** By key number, the lexicons with an entry under that key. */
const LEXICONS_BY_KEY: Lexicon[][] = [];
let lexiconCount = 0;

/**
 * A word's key as a small integer: its first three chars (fewer if it is shorter) and its length
 * class; -1 when one of them is not ASCII, which no key is. No string is made.
 */
function keyCode(word: string): number {
  const n = Math.min(word.length, 3);
  let code = n;
  for (let i = 0; i < n; i++) {
    const c = word.charCodeAt(i);
    if (c > 0x7f) return -1;
    code = (code << 7) | c;
  }
  return code;
}

/**
 * A word list whose entries may span several tokens ("do not follow") and whose words may be
 * prefixes ("ignor*" for ignore, ignoring, ignorieren, ignorez, ignora).
 */
class Lexicon {
  /** Numbers the lexicon's marks in Words. */
  readonly id = lexiconCount++;
  /** Entries by their first word's key number (KEY_IDS). */
  private readonly index = new Map<number, { word: string; prefix: boolean }[][]>();

  constructor(entries: readonly string[]) {
    for (const e of entries) {
      const words = e.split(' ').map((w) => ({
        word: w.endsWith('*') ? w.slice(0, -1) : w,
        prefix: w.endsWith('*'),
      }));
      const first = words[0]!;
      if (first.prefix && first.word.length < 3) throw new Error(`prefix too short: ${e}`);
      const code = keyCode(first.word);
      if (code < 0) throw new Error(`not ASCII: ${e}`);
      let id = KEY_IDS.get(code);
      if (id === undefined) KEY_IDS.set(code, (id = KEY_IDS.size));
      const list = this.index.get(id);
      if (list) list.push(words);
      else {
        this.index.set(id, [words]);
        (LEXICONS_BY_KEY[id] ??= []).push(this);
      }
    }
  }

  /** Tokens matched by the longest entry starting at `i`, whose key number is `key`; 0 if none. */
  at(tokens: readonly string[], key: number, i: number): number {
    const cands = this.index.get(key);
    if (!cands) return 0;
    let best = 0;
    for (const words of cands) {
      if (words.length <= best) continue;
      let ok = true;
      for (let k = 0; k < words.length && ok; k++) {
        const t = tokens[i + k];
        const w = words[k]!;
        ok = t !== undefined && (w.prefix ? t.startsWith(w.word) : t === w.word);
      }
      if (ok) best = words.length;
    }
    return best;
  }
}

/**
 * A text's word tokens and, for every lexicon, the length of its longest entry starting at each
 * token (0: none): found in one pass, visiting a token only for the lexicons that have an entry
 * under its key. A lexicon with no entry in the text keeps no array.
 */
class Words {
  private readonly marks: (Uint8Array | undefined)[] = [];

  constructor(readonly tokens: readonly string[]) {
    const n = tokens.length;
    for (let i = 0; i < n; i++) {
      const code = keyCode(tokens[i]!);
      const key = code < 0 ? undefined : KEY_IDS.get(code);
      if (key === undefined) continue;
      for (const lex of LEXICONS_BY_KEY[key]!) {
        const len = lex.at(tokens, key, i);
        if (len > 0) (this.marks[lex.id] ??= new Uint8Array(n))[i] = len;
      }
    }
  }

  /** Tokens matched by `lex`'s longest entry starting at token i (0 <= i < tokens.length). */
  at(lex: Lexicon, i: number): number {
    const m = this.marks[lex.id];
    return m === undefined ? 0 : m[i]!;
  }

  /** Whether an entry of `lex` starts at a token in [from, to] (clamped to the text). */
  any(lex: Lexicon, from: number, to: number): boolean {
    const m = this.marks[lex.id];
    if (m === undefined) return false;
    const a = Math.max(0, from);
    const b = Math.min(m.length - 1, to);
    for (let j = a; j <= b; j++) if (m[j]! > 0) return true;
    return false;
  }

  /** Whether `lex` has an entry anywhere in the text. */
  has(lex: Lexicon): boolean {
    return this.marks[lex.id] !== undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Instruction override: a verb of dismissal near a qualified object ("all previous instructions"),
// in either word order, since German puts the verb last and French and Spanish put the adjective
// after the noun.

const OVERRIDE_VERB = new Lexicon([
  'ignor*',
  'disregard*',
  'forget*',
  'forgot',
  'overrid*',
  'bypass*',
  'discard*',
  'abandon*',
  'neglect*',
  'set aside',
  'do not follow',
  'don t follow',
  'dont follow',
  'stop following',
  'no longer follow',
  'vergiss',
  'vergesse*',
  'vergessen',
  'missacht*',
  'ubergeh*',
  'verwirf',
  'verwerf*',
  'nicht befolgen',
  'nicht mehr befolgen',
  'ausser acht',
  'oubli*',
  'tiens pas compte',
  'tenez pas compte',
  'tenir compte',
  'fais abstraction',
  'faites abstraction',
  'outrepass*',
  'contourn*',
  'passe outre',
  'passez outre',
  'olvid*',
  'omit*',
  'descart*',
  'caso omiso',
  'pasa por alto',
  'no sigas',
  'deja de seguir',
]);

const QUALIFIER = new Lexicon([
  'previous*',
  'prior',
  'above',
  'earlier',
  'preceding',
  'foregoing',
  'initial*',
  'original*',
  'old',
  'existing',
  'system',
  'all',
  'any',
  'every',
  'your',
  'yours',
  'user',
  'users',
  'vorherig*',
  'bisherig*',
  'obig*',
  'vorig*',
  'vorangegangen*',
  'vorausgegangen*',
  'ursprunglich*',
  'fruher*',
  'alle',
  'allen',
  'aller',
  'dein*',
  'system*',
  'precedent*',
  'anterieur*',
  'dessus',
  'originel*',
  'toutes',
  'tous',
  'tes',
  'vos',
  'ton',
  'votre',
  'systeme',
  'anterior*',
  'previa*',
  'previo*',
  'inicial*',
  'todas',
  'todos',
  'tus',
  'sus',
  'arriba',
  'sistema',
  'usuario',
]);

const INSTRUCTION_NOUN = new Lexicon([
  'instruction*',
  'rule',
  'rules',
  'guideline*',
  'directive*',
  'direction',
  'directions',
  'prompt',
  'prompts',
  'command',
  'commands',
  'guidance',
  'constraint*',
  'programming',
  'policy',
  'policies',
  'guardrail*',
  'orders',
  'restrictions',
  'anweisung*',
  'instruktion*',
  'regel',
  'regeln',
  'vorgabe*',
  'befehl*',
  'richtlinie*',
  'einschrankung*',
  'systemprompt*',
  'consigne*',
  'regle',
  'regles',
  'ordres',
  'instruccion*',
  'regla',
  'reglas',
  'indicacion*',
  'directriz',
  'directrices',
  'ordenes',
  'normas',
  'restricciones',
]);

// "Forget the previous instructions I gave you", "ignore my earlier rules": people correct
// themselves with the same words; what they withdraw is their own, not the application's.
const FIRST_PERSON_POSSESSIVE = new Lexicon([
  'my',
  'mine',
  'our',
  'mein*',
  'unser*',
  'mes',
  'mon',
  'ma',
  'nos',
  'notre',
  'mis',
  'mi',
  'nuestr*',
]);

const FIRST_PERSON_AFTER = new Lexicon([
  'i gave',
  'i wrote',
  'i sent',
  'i told',
  'i mentioned',
  'i provided',
  'i just',
  'i had',
  'i added',
  'from me',
  'ich dir',
  'ich ihnen',
  'ich vorhin',
  'ich gerade',
  'que je',
  'je t',
  'je vous',
  'que te di',
  'que te he',
  'que yo',
  'te di',
]);

const INVALIDATED = new Lexicon([
  'is void',
  'are void',
  'no longer apply',
  'no longer applies',
  'no longer valid',
  'do not apply',
  'don t apply',
  'are cancelled',
  'are canceled',
  'are revoked',
  'are suspended',
  'are lifted',
  'have been lifted',
  'are gone',
  'are removed',
  'are obsolete',
  'is obsolete',
  'gelten nicht',
  'sind ungultig',
  'ist ungultig',
  'sind aufgehoben',
  'ne s appliquent plus',
  'sont annulees',
  'ne sont plus',
  'ya no aplican',
  'ya no son',
  'quedan anuladas',
]);

const EVERYTHING = new Lexicon(['everything', 'anything', 'alles', 'tout', 'todo']);
const BEFORE = new Lexicon([
  'before',
  'above',
  'earlier',
  'previously',
  'so far',
  'until now',
  'told',
  'vorher',
  'zuvor',
  'bisher',
  'oben',
  'gesagt',
  'avant',
  'precedemment',
  'dessus',
  'dit',
  'antes',
  'anteriormente',
  'arriba',
  'dicho',
]);
const FIRST_PERSON = new Lexicon(['i', 'ich', 'je', 'j', 'yo', 'we', 'wir', 'nous']);

function instructionOverride(w: Words): boolean {
  const n = w.tokens.length;
  if (n < 2) return false;
  if (w.has(INSTRUCTION_NOUN) && w.has(QUALIFIER)) {
    for (let i = 0; i < n; i++) {
      if (w.at(INSTRUCTION_NOUN, i) === 0) continue;
      if (!w.any(QUALIFIER, i - 3, i - 1) && !w.any(QUALIFIER, i + 1, i + 3)) continue;
      if (w.any(FIRST_PERSON_POSSESSIVE, i - 3, i - 1) || w.any(FIRST_PERSON_AFTER, i + 1, i + 4))
        continue;
      if (w.any(OVERRIDE_VERB, i - 8, i + 6) || w.any(INVALIDATED, i + 1, i + 6)) return true;
    }
  }
  // "Forget everything you were told before": no noun, the whole past is dismissed.
  if (!w.has(OVERRIDE_VERB) || !w.has(EVERYTHING) || !w.has(BEFORE)) return false;
  for (let i = 0; i < n; i++) {
    const verb = w.at(OVERRIDE_VERB, i);
    if (verb === 0) continue;
    for (let j = i + verb; j <= i + verb + 1 && j < n; j++) {
      if (w.at(EVERYTHING, j) === 0) continue;
      for (let k = j + 1; k <= j + 8 && k < n; k++) {
        if (w.at(FIRST_PERSON, k) > 0) break;
        if (w.at(BEFORE, k) > 0) return true;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Prompt extraction: a verb of showing near the system prompt or hidden instructions. Asking
// about system prompts in general ("how do I write a system prompt") is not extraction; the
// object has to be the model's own (a second-person possessive), or the verb one that only
// makes sense for extraction (reveal, print, dump).

const SHOW_STRONG = new Lexicon([
  'reveal*',
  'print*',
  'output*',
  'dump*',
  'leak*',
  'expose*',
  'repeat*',
  'recite*',
  'display*',
  'spell out',
  'write out',
  'verrat*',
  'ausgeb*',
  'wiederhol*',
  'revel*',
  'affich*',
  'repet*',
  'repit*',
  'imprim*',
]);
const SHOW_WEAK = new Lexicon([
  'show*',
  'tell',
  'give',
  'list',
  'share',
  'paste',
  'copy',
  'zeig*',
  'gib',
  'nenn*',
  'sag',
  'montr*',
  'donne*',
  'dis',
  'ecri*',
  'muestr*',
  'dime',
  'escrib*',
  'dame',
]);
const SYSTEM_PROMPT = new Lexicon([
  'system prompt*',
  'system message*',
  'system instruction*',
  'systemprompt*',
  'systemanweisung*',
  'systemnachricht*',
  'system anweisung*',
  'prompt systeme',
  'invite systeme',
  'instructions systeme',
  'message systeme',
  'prompt del sistema',
  'prompt de sistema',
  'mensaje del sistema',
  'instrucciones del sistema',
  'pre prompt',
  'preprompt',
  'meta prompt',
]);
const SECRET_ADJ = new Lexicon([
  'hidden',
  'secret*',
  'confidential',
  'geheim*',
  'verborgen*',
  'versteckt*',
  'vertraulich*',
  'cache',
  'caches',
  'cachee*',
  'confidentiel*',
  'ocult*',
  'secret*',
  'confidencial*',
]);
const ORIGINAL_ADJ = new Lexicon([
  'initial*',
  'original*',
  'internal',
  'ursprunglich*',
  'anfanglich*',
  'originel*',
  'inicial*',
]);
const PROMPT_NOUN = new Lexicon([
  'instruction*',
  'prompt',
  'prompts',
  'rule',
  'rules',
  'anweisung*',
  'regel',
  'regeln',
  'vorgabe*',
  'consigne*',
  'regle',
  'regles',
  'directive*',
  'instruccion*',
  'regla',
  'reglas',
  'indicacion*',
  'directriz',
  'directrices',
]);
const CONFIG_NOUN = new Lexicon(['configuration*', 'config', 'konfiguration*', 'configuracion*']);
const SECOND_PERSON_POSSESSIVE = new Lexicon([
  'your',
  'yours',
  'dein*',
  'ton',
  'ta',
  'tes',
  'votre',
  'vos',
  'tu',
  'tus',
]);
const TEXT_NOUN = new Lexicon([
  'text',
  'texts',
  'everything',
  'words',
  'content',
  'texto',
  'todo',
  'tout',
  'alles',
  'inhalt',
  'contenu',
  'contenido',
]);
const ABOVE = new Lexicon([
  'above',
  'preceding',
  'uber',
  'oben',
  'dessus',
  'avant',
  'antes',
  'arriba',
]);
const GIVEN_TO_YOU = new Lexicon([
  'you were',
  'you have been',
  'you ve been',
  'on t a',
  'que te dieron',
  'que te han',
  'que tu as',
  'die du',
  'die dir',
]);

function promptLeak(w: Words): boolean {
  if (!w.has(SHOW_STRONG) && !w.has(SHOW_WEAK)) return false;
  const tokens = w.tokens;
  for (let i = 0; i < tokens.length; i++) {
    // Every verdict below needs one of these objects at i.
    const isSystemPrompt = w.at(SYSTEM_PROMPT, i) > 0;
    const isPromptNoun = w.at(PROMPT_NOUN, i) > 0;
    const isConfig = w.at(CONFIG_NOUN, i) > 0;
    const isText = w.at(TEXT_NOUN, i) > 0;
    if (!isSystemPrompt && !isPromptNoun && !isConfig && !isText) continue;
    const hasStrong = w.any(SHOW_STRONG, i - 6, i + 4);
    const hasAny = hasStrong || w.any(SHOW_WEAK, i - 6, i + 4);
    if (!hasAny) continue;
    if (w.any(FIRST_PERSON_POSSESSIVE, i - 2, i - 1)) continue;
    const owned = w.any(SECOND_PERSON_POSSESSIVE, i - 2, i - 1);
    const object =
      isSystemPrompt ||
      (isPromptNoun && (w.any(SECRET_ADJ, i - 2, i + 2) || w.any(ORIGINAL_ADJ, i - 2, i + 2))) ||
      (isConfig && w.any(SECRET_ADJ, i - 2, i + 2));
    if (object && (hasStrong || owned)) return true;
    if (isPromptNoun && owned && /^(?:prompt|instruc|anweis|consig)/.test(tokens[i]!)) return true;
    if (isPromptNoun && w.any(GIVEN_TO_YOU, i + 1, i + 3)) return true;
    if (isText && w.any(ABOVE, i + 1, i + 4)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Phrase rules written as regular expressions over the normalized text. Every repetition in them
// is bounded, so they cannot backtrack more than a constant per position.

const RESTRICTION_BYPASS: readonly RegExp[] = [
  /\b(?:no|without|ohne|keine?|sans|aucune?|sin|ni|ningun[ao]?)\s+(?:(?:any|more|jegliche|weitere|aucune?)\s+)?(?:[\p{L}]+\s+)?(?:rules?|restrictions?|limits?|limitations?|filters?|guidelines?|censorship|boundaries|guardrails|einschrankungen|regeln|grenzen|zensur|filtres?|regles?|limites?|censure|restricciones|filtros?|reglas?|censura)\b/u,
  /\b(?:unfiltered|uncensored|unrestricted|jailbroken|unzensiert|sin censura)\b/,
  /\b(?:ignore|bypass|disable|circumvent|deactivate|turn off|switch off|umgehe\w{0,3}|deaktivier\w{0,3}|desactiv\w{0,6}|contourn\w{0,4})\s+(?:[\p{L}]+\s+){0,2}(?:safety|content polic(?:y|ies)|content filters?|filters|guardrails|moderation|censorship|sicherheit\w{0,10}|filtros?|filtres?)\b/u,
  /\b(?:guardrails|safety (?:rules|filters|guidelines|measures)|filters|restrictions|content polic(?:y|ies))\s+(?:are|is|have been|has been)\s+(?:now\s+)?(?:off|disabled|lifted|removed|suspended|deactivated)\b/,
];

const JAILBREAK_PERSONA: readonly RegExp[] = [
  /\bdo anything now\b/,
  /\b(?:you are|you're|youre|du bist|tu es|tu eres|eres|act as|become)\s+(?:now\s+|ab sofort\s+|jetzt\s+|maintenant\s+|ahora\s+)?dan\b/,
  /\b(?:developer|dev|god|debug|jailbreak|unrestricted|evil) mode\b/,
  /\bentwicklermodus\b|\bmode (?:developpeur|dieu)\b|\bmodo (?:desarrollador|dios)\b/,
  /\bjailbreak(?:ed|ing)?\b|\bstay in character\b/,
];

const NEW_INSTRUCTIONS: readonly RegExp[] = [
  /\bnew instructions?\b|\bneue (?:anweisung|anweisungen|instruktionen|regeln)\b/,
  /\bnouvelles? (?:instructions?|consignes?|regles?)\b|\bnuevas? (?:instrucciones|reglas|indicaciones)\b/,
  /\bfrom now on\b|\bvon nun an\b|\bab (?:jetzt|sofort)\b|\ba partir de maintenant\b|\bdesormais\b|\ba partir de ahora\b|\bde ahora en adelante\b/,
  /\byour (?:new|real|actual|true) (?:task|goal|job|instructions|purpose|role)\b/,
  /\bdeine (?:neue|eigentliche|wahre) aufgabe\b|\bta (?:nouvelle|vraie|veritable) (?:tache|mission)\b|\btu (?:nueva|verdadera|autentica) (?:tarea|mision)\b/,
];

const DELIMITER_ESCAPE: readonly RegExp[] = [
  /\bend of (?:the )?(?:user )?(?:input|prompt|conversation|instructions)\b/,
  /<\/?(?:system|user|assistant|instructions?)>/,
  /\b(?:begin|start) (?:of )?(?:new |the )?(?:system|admin|developer) (?:prompt|instructions|message)\b/,
  /\b(?:system|admin) override\b/,
];

const AUTHORITY_CLAIM: readonly RegExp[] = [
  /\b(?:i am|i'm|as)\s+(?:your|the)\s+(?:system\s+)?(?:developer|creator|administrator|admin|owner|operator|maker|programmer)s?\b/,
  /\bauthori[sz]ed (?:override|request|test|bypass)\b/,
  /\b(?:openai|anthropic)\s+(?:staff|employee|team|admin|engineer)\b/,
  /\bich bin (?:dein|der|ihr)\s+(?:entwickler|administrator|admin|ersteller)\b|\bvom (?:administrator|admin|entwickler)\b/,
  /\bje suis (?:ton|votre|le) (?:developpeur|administrateur|createur)\b|\bsoy (?:tu|el) (?:desarrollador|administrador|creador)\b/,
];

const CHAT_TEMPLATE_TOKEN =
  /<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|end_of_text)\|>|\[\/?inst\]|<<\/?sys>>|<\/?(?:start|end)_of_turn>/;

const ROLE_WORDS = 'system|systeme|sistema|assistant|assistent|asistente|developer|human';
const ROLE_MARKER: readonly RegExp[] = [
  // A label opening a line (or a quoted string): "system:", "### System:", "**Assistant**:".
  new RegExp(
    `(?:^|\\n|["'{(])[ \\t]{0,8}(?:#{1,6}[ \\t]{0,4}|\\*\\*|\\[|<)?(?:${ROLE_WORDS})(?:\\*\\*)?[ \\t]{0,4}[\\]>]?[ \\t]{0,4}:(?!/)`,
  ),
  /(?:^|\n)[ \t]{0,8}[[<](?:system|assistant)[\]>]/,
  /(?:<\|im_start\|>|<\|start_header_id\|>|<start_of_turn>)\s{0,4}(?:system|assistant|developer|model)\b|<<sys>>|<\|system\|>/,
];
const ASSISTANT_TURN =
  /(?:^|\n)[ \t]{0,8}(?:assistant|assistent|asistente|ai|bot|chatbot)[ \t]{0,4}:/g;
const FAKE_DIALOGUE_TURNS = 5;

/**
 * One regex that matches wherever one of `res` does: each rule scans the text once instead of
 * once per regex (a test() of an alternation finds a match iff one of its parts has one). The
 * parts have no flags but `u`, under which they mean the same (no `i`, `.` or negated class).
 */
function anyOf(res: readonly RegExp[]): RegExp {
  for (const re of res) {
    if (re.flags !== '' && re.flags !== 'u') throw new Error(`flags ${re.flags}: ${re.source}`);
  }
  const flags = res.some((re) => re.unicode) ? 'u' : '';
  return new RegExp(res.map((re) => `(?:${re.source})`).join('|'), flags);
}

/** The phrase rules, each one regex. */
const PHRASE_RULES: readonly [InjectionRuleName, RegExp][] = [
  ['restriction_bypass', anyOf(RESTRICTION_BYPASS)],
  ['jailbreak_persona', anyOf(JAILBREAK_PERSONA)],
  ['new_instructions', anyOf(NEW_INSTRUCTIONS)],
  ['delimiter_escape', anyOf(DELIMITER_ESCAPE)],
  ['authority_claim', anyOf(AUTHORITY_CLAIM)],
  ['chat_template_token', CHAT_TEMPLATE_TOKEN],
  ['role_marker', anyOf(ROLE_MARKER)],
];

// ---------------------------------------------------------------------------------------------
// Encodings.

/**
 * 40 or more base64 digits and their padding. A match can only start where a run of digits
 * starts (inside a shorter run every position fails, inside a longer one the run's start matched
 * first), so the lookbehind changes no match; it lets the scan reject every other position of a
 * word at once instead of re-reading the rest of the word there (half the rule's cost on prose).
 */
export const BASE64_BLOB = /(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{40,}={0,2}/g;
const HEX_BLOB = /\b(?:[0-9a-fA-F]{2}){20,}\b/g;
const MAX_BLOBS = 16;
const MAX_BLOB_CHARS = 64 * 1024;
const ROT13_HINT = /\brot[ -]?13\b|\bcaesar\b|\bcesar\b|\bcasar\b/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decoded text when the bytes are UTF-8 prose: printable, and with word breaks. */
function asProse(bytes: Buffer): string | undefined {
  if (bytes.length < 16) return undefined;
  let s: string;
  try {
    s = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  let printable = 0;
  let spaces = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 32 || c === 10) spaces++;
    if (c === 9 || c === 10 || c === 13 || (c >= 32 && c !== 127 && !(c >= 0x80 && c < 0xa0)))
      printable++;
  }
  const len = [...s].length;
  return printable / len >= 0.95 && spaces > 0 ? s : undefined;
}

/** The first MAX_BLOBS matches of a global regex, cut to MAX_BLOB_CHARS (matchAll's order). */
function firstBlobs(re: RegExp, s: string): string[] {
  const out: string[] = [];
  re.lastIndex = 0;
  for (let m; out.length < MAX_BLOBS && (m = re.exec(s)) !== null;) {
    out.push(m[0].slice(0, MAX_BLOB_CHARS));
  }
  re.lastIndex = 0;
  return out;
}

function decodedBlobs(raw: string): string[] {
  const base64 = firstBlobs(BASE64_BLOB, raw);
  // A hex blob is 40 or more base64 digits in a row too: without a base64 blob there is none,
  // and most text has neither.
  const hex = base64.length === 0 ? [] : firstBlobs(HEX_BLOB, raw);
  const out: string[] = [];
  for (const blob of hex) {
    const s = asProse(Buffer.from(blob, 'hex'));
    if (s !== undefined) out.push(s);
  }
  for (const blob of base64) {
    // A hex run is also valid base64; it was decoded as hex above.
    if (/^[0-9a-fA-F]+$/.test(blob)) continue;
    const url = /[-_]/.test(blob);
    const s = asProse(Buffer.from(blob, url ? 'base64url' : 'base64'));
    if (s !== undefined) out.push(s);
  }
  return out;
}

function rot13(s: string): string {
  return s.replace(/[a-z]/g, (c) => String.fromCharCode(((c.charCodeAt(0) - 97 + 13) % 26) + 97));
}

const LEET: Record<string, string> = {
  '0': 'o',
  '1': 'i',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '@': 'a',
  $: 's',
};
export const LEET_WORD = /\b(?=[a-z0-9@$]*[a-z])(?=[a-z0-9@$]*[0-9@$])[a-z0-9@$]{3,}\b/g;
const LEET_PAIR = /[a-z][0-9@$]|[0-9@$][a-z]/g;
const LEET_CHAR = /[0-9@$]/;

/**
 * Whether `s` has `n` letters next to a digit, @ or $. A LEET_WORD match lies in a run of
 * [a-z0-9@$] holding both kinds, so with such a pair; a run holds at most one match (the greedy
 * match ends at the run's last word boundary). With fewer pairs there are fewer matches, and the
 * regex's two lookaheads at every word are not run: most prose has no such pair.
 */
export function hasLeetPairs(s: string, n: number): boolean {
  // Each pair holds one of these; a scan for one character class is the cheaper reject.
  if (n > 0 && !LEET_CHAR.test(s)) return false;
  LEET_PAIR.lastIndex = 0;
  let found = 0;
  while (found < n && LEET_PAIR.test(s)) found++;
  return found >= n;
}

function deleet(s: string): string | undefined {
  if (!hasLeetPairs(s, 3)) return undefined;
  const words = s.match(LEET_WORD);
  if (!words || words.length < 3) return undefined;
  return s.replace(/[013457@$]/g, (c) => LEET[c] ?? c);
}

// ---------------------------------------------------------------------------------------------
// Repetition.

const MIN_LINE_REPEATS = 20;
const MIN_PERIODIC_TOKENS = 40;

function excessiveRepetition(text: string, tokens: readonly string[]): boolean {
  if (text.includes('\n')) {
    const counts = new Map<string, number>();
    for (const line of text.split('\n')) {
      const t = line.trim();
      if (t.length < 3) continue;
      const n = (counts.get(t) ?? 0) + 1;
      if (n >= MIN_LINE_REPEATS) return true;
      counts.set(t, n);
    }
  }
  for (let p = 1; p <= 6; p++) {
    let run = 0;
    for (let i = p; i < tokens.length; i++) {
      run = tokens[i] === tokens[i - p] ? run + 1 : 0;
      if (run >= Math.max(MIN_PERIODIC_TOKENS, 10 * p)) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Scoring.

/** The rules that read meaning, run on the text and again on every decoded or revealed form. */
function phraseRules(
  norm: string,
  fired: Set<InjectionRuleName>,
  tokens: readonly string[] = tokenize(norm),
): void {
  const words = new Words(tokens);
  if (instructionOverride(words)) fired.add('instruction_override');
  if (promptLeak(words)) fired.add('prompt_leak');
  for (const [rule, re] of PHRASE_RULES) if (re.test(norm)) fired.add(rule);
}

function phraseRulesOf(text: string): Set<InjectionRuleName> {
  const s = new Set<InjectionRuleName>();
  phraseRules(normalizeForRules(text), s);
  return s;
}

const ZERO_WIDTH_IN_WORD = /[A-Za-z][\u200b-\u200d\u2060\ufeff]+[A-Za-z]/;

/** Scores one text. `scan` may be passed when the caller already scanned it for invisibles. */
export function scoreText(text: string, scan: InvisibleScan = scanInvisible(text)): InjectionScore {
  const fired = new Set<InjectionRuleName>();
  const norm = normalizeForRules(text);
  const tokens = tokenize(norm);
  phraseRules(norm, fired, tokens);

  if (scan.counts.tag !== undefined) fired.add('hidden_tag_text');
  if (scan.counts.bidi_control !== undefined) fired.add('bidi_override');
  if (ZERO_WIDTH_IN_WORD.test(text)) fired.add('zero_width_splitting');
  // What a reader cannot see but a model reads is scored like visible text.
  for (const hidden of [scan.hiddenTagText, ...scan.reversedSpans]) {
    if (hidden.length > 0) for (const r of phraseRulesOf(hidden)) fired.add(r);
  }

  const decoded = decodedBlobs(text);
  if (decoded.length > 0) fired.add('encoded_text');
  const encodedForms = ROT13_HINT.test(norm) ? [...decoded, rot13(norm)] : decoded;
  for (const d of encodedForms) {
    const inner = phraseRulesOf(d);
    if (inner.size > 0) {
      fired.add('encoded_instructions');
      for (const r of inner) fired.add(r);
    }
  }

  const leet = deleet(norm);
  if (leet !== undefined) {
    const inner = new Set<InjectionRuleName>();
    phraseRules(leet, inner);
    for (const r of inner) {
      if (!fired.has(r)) {
        fired.add(r);
        fired.add('obfuscated_text');
      }
    }
  }

  if ((norm.match(ASSISTANT_TURN)?.length ?? 0) >= FAKE_DIALOGUE_TURNS) fired.add('fake_dialogue');
  if (excessiveRepetition(norm, tokens)) fired.add('excessive_repetition');

  const rules = RULE_LIST.map((r) => r.name).filter((n) => fired.has(n));
  const score = rules.reduce((s, n) => s + (WEIGHT.get(n) ?? 0), 0);
  return { score: Math.round(score * 100) / 100, rules };
}

/**
 * Scores each text on its own and reports the highest: weak signals from unrelated messages of a
 * long conversation do not add up to a block.
 */
export function scoreInjection(texts: readonly string[]): InjectionScore {
  let best: InjectionScore = { score: 0, rules: [] };
  for (const t of texts) {
    const s = scoreText(t);
    if (s.score > best.score) best = s;
  }
  return best;
}
