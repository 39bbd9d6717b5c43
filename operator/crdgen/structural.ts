/**
 * zod schema → Kubernetes structural OpenAPI v3 schema. zod's own JSON Schema output is the
 * starting point; this module reshapes it into what the apiserver accepts as structural (a type
 * on every node, no additionalProperties:false, maps as additionalProperties, free-form objects
 * as x-kubernetes-preserve-unknown-fields) and refuses anything it cannot express faithfully
 * (unions, refs, defaults) instead of emitting a schema that validates differently from zod.
 */
import { z } from 'zod';
import { celRegistry, openAPIRegistry } from '../api/schema.js';
import type { CelRule } from '../api/schema.js';

/** An apiextensions.k8s.io/v1 JSONSchemaProps, restricted to the keywords Sluice emits. */
export interface StructuralSchema {
  description?: string;
  type: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  enum?: (string | number)[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  items?: StructuralSchema;
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema;
  required?: string[];
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-preserve-unknown-fields'?: true;
  'x-kubernetes-validations'?: ValidationRule[];
}

/** A CEL rule as the CRD carries it (without Sluice's fixture id). */
export interface ValidationRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
  fieldPath?: string;
}

type Json = Record<string, unknown>;

// Key order of every emitted node, so output is stable whatever order zod produces keys in.
const KEY_ORDER: (keyof StructuralSchema)[] = [
  'description',
  'type',
  'format',
  'enum',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'maxProperties',
  'items',
  'properties',
  'additionalProperties',
  'required',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-validations',
];

// Keywords copied as they are; anything else zod emits is either rewritten below or refused.
const COPIED = new Set<string>([
  'description',
  'format',
  'enum',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'required',
]);
const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);
const X_RULES = 'x-sluice-cel';

export function toValidationRule(r: CelRule): ValidationRule {
  const out: ValidationRule = { rule: r.rule };
  if (r.message !== undefined) out.message = r.message;
  if (r.messageExpression !== undefined) out.messageExpression = r.messageExpression;
  if (r.reason !== undefined) out.reason = r.reason;
  if (r.fieldPath !== undefined) out.fieldPath = r.fieldPath;
  return out;
}

/** The structural schema of a zod schema; throws on constructs that have no faithful form. */
export function structuralSchema(schema: z.ZodType): StructuralSchema {
  const json = z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    // The CRD validates what users write, so the input side of transforms and defaults.
    io: 'input',
    reused: 'inline',
    cycles: 'throw',
    unrepresentable: 'throw',
    override: ({ zodSchema, jsonSchema }) => {
      const target = jsonSchema as Json;
      const rules = celRegistry.get(zodSchema)?.rules;
      if (rules && rules.length > 0) target[X_RULES] = rules.map(toValidationRule);
      const extras = openAPIRegistry.get(zodSchema);
      if (extras) Object.assign(target, extras);
    },
  }) as Json;
  return convert(json, '');
}

function convert(node: Json, at: string): StructuralSchema {
  const where = at === '' ? '<root>' : at;
  for (const bad of ['$ref', 'anyOf', 'oneOf', 'allOf', 'not', 'default', 'nullable', 'const']) {
    if (bad in node) throw new Error(`${where}: "${bad}" has no structural form`);
  }
  const out: Partial<StructuralSchema> & Json = {};
  const type = node.type;
  if (typeof type !== 'string' || !TYPES.has(type)) {
    throw new Error(`${where}: every node needs a single type, got ${JSON.stringify(type)}`);
  }
  out.type = type as StructuralSchema['type'];
  for (const [key, value] of Object.entries(node)) {
    if (COPIED.has(key)) {
      out[key] = value;
      continue;
    }
    switch (key) {
      case 'type':
      case '$schema':
      case 'propertyNames':
        break;
      case 'properties':
        out.properties = Object.fromEntries(
          Object.entries(value as Record<string, Json>).map(([name, child]) => [
            name,
            convert(child, `${at}.${name}`),
          ]),
        );
        break;
      case 'items':
        out.items = convert(value as Json, `${at}[]`);
        break;
      case 'additionalProperties':
        if (value === false) break;
        if (typeof value === 'object' && value !== null && Object.keys(value).length === 0) {
          // z.record(z.string(), z.unknown()): free-form content owned by someone else.
          out['x-kubernetes-preserve-unknown-fields'] = true;
          break;
        }
        out.additionalProperties = convert(value as Json, `${at}{}`);
        break;
      case 'maxProperties':
      case 'x-kubernetes-list-type':
      case 'x-kubernetes-list-map-keys':
        (out as Json)[key] = value;
        break;
      case X_RULES:
        out['x-kubernetes-validations'] = value as ValidationRule[];
        break;
      default:
        throw new Error(`${where}: unexpected keyword "${key}"`);
    }
  }
  // zod bounds every z.int() by the safe-integer range; the apiserver's int64 needs no such hint.
  if (out.minimum === Number.MIN_SAFE_INTEGER) delete out.minimum;
  if (out.maximum === Number.MAX_SAFE_INTEGER) delete out.maximum;
  if (out.type === 'object' && out.properties && out['x-kubernetes-preserve-unknown-fields']) {
    throw new Error(`${where}: an object has either properties or free-form content`);
  }
  return ordered(out as StructuralSchema);
}

function ordered(node: StructuralSchema): StructuralSchema {
  const out: Json = {};
  for (const key of KEY_ORDER) if (node[key] !== undefined) out[key] = node[key];
  return out as unknown as StructuralSchema;
}
