/**
 * The CustomResourceDefinitions of the Sluice API, built from the zod schemas. Pure data: no file
 * system, no formatting (render.ts does that), so the offline validator can reuse the schemas.
 */
import type { z } from 'zod';
import { AIPolicySpecSchema, AIRouteSpecSchema, ResourceStatusSchema } from '../api/schema.js';
import { GROUP, VERSION } from '../api/types.js';
import { structuralSchema } from './structural.js';
import type { StructuralSchema } from './structural.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: 'Namespaced';
    versions: {
      name: string;
      served: true;
      storage: true;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      schema: { openAPIV3Schema: StructuralSchema };
    }[];
  };
}

export type SluiceKind = 'AIRoute' | 'AIPolicy';

interface KindSpec {
  kind: SluiceKind;
  plural: string;
  shortName: string;
  description: string;
  spec: z.ZodType;
  columns: PrinterColumn[];
}

const condition = (type: string): PrinterColumn => ({
  name: type,
  type: 'string',
  jsonPath: `.status.conditions[?(@.type=="${type}")].status`,
});
const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

const KINDS: Record<SluiceKind, KindSpec> = {
  AIRoute: {
    kind: 'AIRoute',
    plural: 'airoutes',
    shortName: 'air',
    description:
      'AIRoute: the models a set of backends serves, how requests are matched to backends, and ' +
      'their weights, fallbacks, timeouts and retries.',
    spec: AIRouteSpecSchema,
    columns: [
      { name: 'Models', type: 'string', jsonPath: ".spec.models[*]['exact','prefix']" },
      { name: 'Backends', type: 'string', jsonPath: '.spec.backends[*].name' },
      condition('Accepted'),
      condition('Programmed'),
      age,
    ],
  },
  AIPolicy: {
    kind: 'AIPolicy',
    plural: 'aipolicies',
    shortName: 'aip',
    description:
      'AIPolicy: consumers, access, limits, pricing, masking and prompt guard for the AIRoutes ' +
      'it targets in its namespace.',
    spec: AIPolicySpecSchema,
    columns: [
      { name: 'Targets', type: 'string', jsonPath: '.spec.targetRefs[*].name' },
      { name: 'Mode', type: 'string', jsonPath: '.spec.mode' },
      condition('Accepted'),
      age,
    ],
  },
};

export const SLUICE_KINDS = Object.keys(KINDS) as SluiceKind[];

const cache = new Map<SluiceKind, CustomResourceDefinition>();

/** The CRD of a kind; built once per process (the validator asks for it per document). */
export function crdFor(kind: SluiceKind): CustomResourceDefinition {
  let crd = cache.get(kind);
  if (!crd) {
    crd = build(KINDS[kind]);
    cache.set(kind, crd);
  }
  return crd;
}

/** The openAPIV3Schema of a kind, as the apiserver validates it. */
export function openAPISchema(kind: SluiceKind): StructuralSchema {
  const version = crdFor(kind).spec.versions[0];
  if (!version) throw new Error(`${kind}: CRD has no version`);
  return version.schema.openAPIV3Schema;
}

function build(k: KindSpec): CustomResourceDefinition {
  const status = structuralSchema(ResourceStatusSchema);
  status.description = 'What the operator observed; written through the status subresource.';
  const openAPIV3Schema: StructuralSchema = {
    description: k.description,
    type: 'object',
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: structuralSchema(k.spec),
      status,
    },
    required: ['spec'],
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${k.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/part-of': 'sluice' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: k.kind,
        listKind: `${k.kind}List`,
        plural: k.plural,
        singular: k.kind.toLowerCase(),
        shortNames: [k.shortName],
        categories: ['sluice'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: k.columns,
          schema: { openAPIV3Schema },
        },
      ],
    },
  };
}
