/**
 * Evaluates a CRD's x-kubernetes-validations offline, the way the apiserver does: walk the
 * structural schema and the object together, bind `self` to each node that carries rules, type
 * integers as CEL int (the schema says which), ignore fields the schema does not declare, and
 * report failures with the apiserver's field paths and wording.
 */
import { celEnv, isCelError, parse, plan } from '@bufbuild/cel';
import type { CelResult } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import type { StructuralSchema, ValidationRule } from '../crdgen/structural.js';

export interface RuleViolation {
  /** apiserver field path, e.g. spec.backends[0].credential */
  field: string;
  rule: ValidationRule;
  message: string;
  /** The apiserver's rendering: `<field>: Invalid value: "object": <message>`. */
  detail: string;
}

type Program = (self: unknown) => CelResult;

// The apiserver's environment includes the strings extension; rules must use nothing beyond
// it (the kube tier proves every rule gives the same verdict on both sides).
const env = celEnv({ funcs: strings });
const programs = new Map<string, Program | Error>();

function compile(expr: string): Program | Error {
  let program = programs.get(expr);
  if (!program) {
    try {
      const run = plan(env, parse(expr));
      program = (self: unknown) => run({ self: self as never });
    } catch (err) {
      program = err instanceof Error ? err : new Error(String(err));
    }
    programs.set(expr, program);
  }
  return program;
}

/** The apiserver's limits on a messageExpression result before it falls back to `message`. */
const MAX_MESSAGE = 5000;

/** All rule failures in `value` (the object at `field`, e.g. a spec) against its schema. */
export function evaluateRules(
  schema: StructuralSchema,
  value: unknown,
  field: string,
): RuleViolation[] {
  const out: RuleViolation[] = [];
  walk(schema, toCel(schema, value), field, out);
  return out;
}

function walk(schema: StructuralSchema, value: unknown, field: string, out: RuleViolation[]): void {
  if (value === undefined || value === null) return;
  for (const rule of schema['x-kubernetes-validations'] ?? []) {
    const failure = check(rule, value);
    if (failure === undefined) continue;
    const at = rule.fieldPath ? field + rule.fieldPath : field;
    out.push({ field: at, rule, message: failure, detail: render(at, schema.type, rule, failure) });
  }
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => walk(schema.items!, item, `${field}[${i}]`, out));
    return;
  }
  if (typeof value !== 'object') return;
  const obj = value as Record<string, unknown>;
  if (schema.properties) {
    for (const [name, child] of Object.entries(schema.properties)) {
      walk(child, obj[name], `${field}.${name}`, out);
    }
  } else if (schema.additionalProperties) {
    for (const [key, child] of Object.entries(obj)) {
      walk(schema.additionalProperties, child, `${field}[${key}]`, out);
    }
  }
}

/** undefined when the rule holds, else the message to report. */
function check(rule: ValidationRule, self: unknown): string | undefined {
  const program = compile(rule.rule);
  if (program instanceof Error) return `compilation failed: ${program.message}`;
  const result = program(self);
  if (result === true) return undefined;
  if (isCelError(result)) return `${result.message} evaluating rule: ${rule.rule}`;
  if (result !== false) return `rule did not evaluate to a bool: ${rule.rule}`;
  if (rule.messageExpression) {
    const message = compile(rule.messageExpression);
    const text = message instanceof Error ? undefined : message(self);
    if (typeof text === 'string' && text.trim() !== '' && text.length <= MAX_MESSAGE) {
      if (!/[\r\n]/.test(text)) return text;
    }
  }
  return rule.message ?? `failed rule: ${rule.rule}`;
}

function render(field: string, type: string, rule: ValidationRule, message: string): string {
  switch (rule.reason) {
    case 'FieldValueRequired':
      return `${field}: Required value: ${message}`;
    case 'FieldValueForbidden':
      return `${field}: Forbidden: ${message}`;
    default:
      return `${field}: Invalid value: "${type}": ${message}`;
  }
}

/**
 * The CEL view of a JSON value under a structural schema: undeclared fields pruned, integers
 * as bigint (CEL int) and other numbers as double, as the apiserver's decoder types them.
 */
export function toCel(schema: StructuralSchema, value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (schema['x-kubernetes-preserve-unknown-fields'] && !schema.properties) return freeForm(value);
  switch (schema.type) {
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : value;
    case 'array':
      return Array.isArray(value) && schema.items
        ? value.map((v) => toCel(schema.items!, v))
        : value;
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) return value;
      const obj = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      if (schema.properties) {
        for (const [name, child] of Object.entries(schema.properties)) {
          if (obj[name] !== undefined) out[name] = toCel(child, obj[name]);
        }
      } else if (schema.additionalProperties) {
        for (const [key, v] of Object.entries(obj)) {
          out[key] = toCel(schema.additionalProperties, v);
        }
      }
      return out;
    }
    default:
      return value;
  }
}

function freeForm(value: unknown): unknown {
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(freeForm);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, freeForm(v)]));
  }
  return value;
}
