/**
 * Offline validation of Sluice documents with the cluster's semantics: the zod schema (the same
 * one the CRD's OpenAPI schema is generated from) and then the CRD's CEL rules, evaluated on the
 * same pruned, typed value the apiserver would see (validateDocument). What the operator and the
 * extproc refuse beyond that is compile.ts's: this file is the apiserver's part alone, which the
 * YAML source also applies, so it stays below translation.
 */
import type { z } from 'zod';
import { AIPolicySchema, AIRouteSchema } from '../api/schema.js';
import { API_VERSION, GROUP } from '../api/types.js';
import type { AIPolicy, AIRoute } from '../api/types.js';
import { openAPISchema, SLUICE_KINDS } from '../crdgen/crds.js';
import type { SluiceKind } from '../crdgen/crds.js';
import { evaluateRules } from './cel.js';

export interface FieldError {
  /** apiserver-style field path, e.g. spec.backends[0].endpoint.url */
  field: string;
  message: string;
  /** `<field>: <message>` the way the apiserver words it (identical for CEL rules). */
  detail: string;
  /** The CEL rule that failed, when a rule failed. */
  rule?: string;
}

export type DocumentOutcome = 'valid' | 'invalid' | 'skipped';

export interface DocumentResult {
  outcome: DocumentOutcome;
  apiVersion?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  errors: FieldError[];
  /** The parsed object, present when valid. */
  object?: AIRoute | AIPolicy;
}

const SCHEMAS: Record<SluiceKind, z.ZodType<AIRoute | AIPolicy>> = {
  AIRoute: AIRouteSchema,
  AIPolicy: AIPolicySchema,
};

// Issues that mean the value does not have the schema's shape: the apiserver skips CEL then,
// since rules over mistyped data mean nothing. Range, length and pattern failures do not block,
// nor do unknown fields (pruned before the rules run).
const NON_BLOCKING = new Set([
  'too_big',
  'too_small',
  'invalid_format',
  'not_multiple_of',
  'unrecognized_keys',
]);

export function validateDocuments(docs: readonly unknown[]): DocumentResult[] {
  return docs.map(validateDocument);
}

export function validateDocument(doc: unknown): DocumentResult {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return invalid({}, [fieldError('', 'a document must be an object with apiVersion and kind')]);
  }
  const d = doc as Record<string, unknown>;
  const meta = (typeof d.metadata === 'object' && d.metadata !== null ? d.metadata : {}) as Record<
    string,
    unknown
  >;
  const head = {
    ...(typeof d.apiVersion === 'string' ? { apiVersion: d.apiVersion } : {}),
    ...(typeof d.kind === 'string' ? { kind: d.kind } : {}),
    ...(typeof meta.name === 'string' ? { name: meta.name } : {}),
    namespace: typeof meta.namespace === 'string' ? meta.namespace : 'default',
  };
  if (head.apiVersion === undefined || head.kind === undefined) {
    return invalid(head, [fieldError('', 'apiVersion and kind are required')]);
  }
  const group = head.apiVersion.includes('/') ? head.apiVersion.split('/')[0] : '';
  if (group !== GROUP) return { outcome: 'skipped', ...head, errors: [] };
  if (head.apiVersion !== API_VERSION) {
    return invalid(head, [
      fieldError(
        'apiVersion',
        `unsupported version "${head.apiVersion}"; supported: ${API_VERSION}`,
      ),
    ]);
  }
  if (!(SLUICE_KINDS as string[]).includes(head.kind)) {
    return invalid(head, [
      fieldError('kind', `unknown kind "${head.kind}"; known: ${SLUICE_KINDS.join(', ')}`),
    ]);
  }
  const kind = head.kind as SluiceKind;
  const parsed = SCHEMAS[kind].safeParse(doc);
  const errors = parsed.success ? [] : parsed.error.issues.flatMap(toFieldErrors);
  const blocked = !parsed.success && parsed.error.issues.some((i) => !NON_BLOCKING.has(i.code));
  if (!blocked) {
    const spec = parsed.success ? parsed.data.spec : d.spec;
    const specSchema = openAPISchema(kind).properties?.spec;
    if (specSchema) {
      for (const v of evaluateRules(specSchema, spec, 'spec')) {
        errors.push({ field: v.field, message: v.message, detail: v.detail, rule: v.rule.rule });
      }
    }
  }
  if (errors.length > 0 || !parsed.success) return invalid(head, errors);
  return { outcome: 'valid', ...head, errors, object: parsed.data };
}

/** The message the apiserver answers a create of this invalid document with. */
export function apiserverMessage(result: DocumentResult): string {
  const details = result.errors.map((e) => e.detail);
  const list = details.length === 1 ? details[0] : `[${details.join(', ')}]`;
  return `${result.kind}.${GROUP} "${result.name}" is invalid: ${list}`;
}

function invalid(head: Omit<DocumentResult, 'outcome' | 'errors'>, errors: FieldError[]) {
  return { outcome: 'invalid' as const, ...head, errors };
}

/** A FieldError worded as the apiserver words it: `<field>: <message>`. */
export function fieldError(field: string, message: string): FieldError {
  return { field, message, detail: field ? `${field}: ${message}` : message };
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

function toFieldErrors(issue: z.core.$ZodIssue): FieldError[] {
  const field = fieldPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => {
      const f = field ? `${field}.${k}` : k;
      // YAML 1.1 (kubectl, helm) reads an unquoted on/off/yes/no key as a boolean.
      const message =
        k === 'true' || k === 'false'
          ? `unknown field (an unquoted on, off, yes or no key reads as ${k} in YAML; quote it)`
          : 'unknown field';
      return { field: f, message, detail: `${f}: ${message}` };
    });
  }
  return [fieldError(field, issue.message)];
}
