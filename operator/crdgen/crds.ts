/**
 * The CustomResourceDefinitions of the Sluice API, built from the zod schemas. Pure data: no file
 * system, no formatting (render.ts does that), so the offline validator can reuse the schemas.
 */
import type { z } from 'zod';
import {
  AIPolicySpecSchema,
  AIPolicyStatusSchema,
  AIRouteSpecSchema,
  AIRouteStatusSchema,
} from '../api/schema.js';
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
  status: z.ZodType;
  columns: PrinterColumn[];
}

/**
 * The apiserver prints the FIRST value a column's JSONPath finds, so lists are summarised into a
 * status field by the operator (status/summary.ts) and printed from there.
 */
const condition = (type: string, description: string, priority?: number): PrinterColumn => ({
  name: type,
  type: 'string',
  jsonPath: `.status.conditions[?(@.type=="${type}")].status`,
  description,
  ...(priority !== undefined ? { priority } : {}),
});
const reason = (type: string): PrinterColumn => ({
  name: 'Reason',
  type: 'string',
  jsonPath: `.status.conditions[?(@.type=="${type}")].reason`,
  description: `Why ${type} is what it is.`,
  priority: 1,
});
const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
const accepted = condition('Accepted', 'The spec is valid and its references resolve.');
const programmed = condition(
  'Programmed',
  "Every gateway (Envoy and extproc) ACKed a configuration holding the object's current generation.",
);

const KINDS: Record<SluiceKind, KindSpec> = {
  AIRoute: {
    kind: 'AIRoute',
    plural: 'airoutes',
    shortName: 'air',
    description:
      'AIRoute: the models a set of backends serves, how requests are matched to backends, and ' +
      'their weights, fallbacks, timeouts and retries.',
    spec: AIRouteSpecSchema,
    status: AIRouteStatusSchema,
    columns: [
      {
        name: 'Models',
        type: 'string',
        jsonPath: '.status.models',
        description: 'The models the route serves.',
      },
      {
        name: 'Backends',
        type: 'string',
        jsonPath: '.status.backends',
        description: 'Its backends and their providers.',
      },
      accepted,
      programmed,
      condition(
        'EndpointsReady',
        'Every in-cluster backend has a ready endpoint on the Service port it names.',
      ),
      reason('Programmed'),
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
    status: AIPolicyStatusSchema,
    columns: [
      {
        name: 'Targets',
        type: 'string',
        jsonPath: '.status.targets',
        description: 'The AIRoutes it targets, by name or by selector.',
      },
      {
        name: 'Mode',
        type: 'string',
        jsonPath: '.spec.mode',
        description: 'enforce (when empty) or shadow.',
      },
      accepted,
      programmed,
      reason('Programmed'),
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
  const status = structuralSchema(k.status);
  status.description = 'What the operator observed; written through the status subresource.';
  const openAPIV3Schema: StructuralSchema = {
    description: k.description,
    type: 'object',
    properties: {
      apiVersion: {
        description: `${GROUP}/${VERSION}: the versioned schema of this object.`,
        type: 'string',
      },
      kind: { description: `${k.kind}.`, type: 'string' },
      // The apiserver refuses anything but a type here (kubectl explain describes it itself).
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
