import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { CEL_RULES } from '../api/schema.js';
import { crdFor, SLUICE_KINDS } from './crds.js';
import { drift, main } from './main.js';
import { renderCrds } from './render.js';
import { structuralSchema } from './structural.js';
import type { StructuralSchema } from './structural.js';

const ROOT = new URL('../../', import.meta.url);

function* nodes(s: StructuralSchema, at = ''): Generator<[string, StructuralSchema]> {
  yield [at, s];
  for (const [k, v] of Object.entries(s.properties ?? {})) yield* nodes(v, `${at}.${k}`);
  if (s.items) yield* nodes(s.items, `${at}[]`);
  if (s.additionalProperties) yield* nodes(s.additionalProperties, `${at}{}`);
}

void describe('crdgen', () => {
  void it('checked-in CRDs equal a fresh generation (run `npm run gen` if not)', async () => {
    const files = await renderCrds(ROOT);
    assert.deepEqual(
      files.map((f) => f.path),
      ['crds/sluice.dev_airoutes.yaml', 'crds/sluice.dev_aipolicies.yaml'],
    );
    assert.deepEqual(await drift(files, ROOT), []);
  });

  void it('is deterministic', async () => {
    assert.deepEqual(await renderCrds(ROOT), await renderCrds(ROOT));
  });

  void it('--check reports drift and a missing file, and writing fixes it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'crdgen-'));
    const root = pathToFileURL(`${dir}/`);
    try {
      await writeFile(
        join(dir, '.prettierrc.json'),
        await readFile(new URL('.prettierrc.json', ROOT)),
      );
      await mkdir(join(dir, 'crds'));
      await writeFile(join(dir, 'crds/sluice.dev_airoutes.yaml'), 'stale\n');
      const files = await renderCrds(root);
      const problems = await drift(files, root);
      assert.equal(problems.length, 2);
      assert.match(
        problems[0]!,
        /^crds\/sluice.dev_airoutes.yaml: differs from line 1\n {2}- stale/,
      );
      assert.equal(problems[1], 'crds/sluice.dev_aipolicies.yaml: missing');
      let out = '';
      assert.equal(await main([], root, (s) => (out += s)), 0);
      assert.equal(
        out,
        'wrote crds/sluice.dev_airoutes.yaml\nwrote crds/sluice.dev_aipolicies.yaml\n',
      );
      assert.deepEqual(await drift(files, root), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('emits a structural schema: a type everywhere, no closed objects', () => {
    for (const kind of SLUICE_KINDS) {
      const crd = crdFor(kind);
      const schema = crd.spec.versions[0]!.schema.openAPIV3Schema;
      for (const [at, node] of nodes(schema)) {
        assert.ok(node.type, `${kind}${at} has a type`);
        const json = node as unknown as Record<string, unknown>;
        for (const bad of ['$ref', 'anyOf', 'oneOf', 'allOf', 'default']) {
          assert.ok(!(bad in json), `${kind}${at}: ${bad}`);
        }
        if (node.type === 'array') assert.ok(node.maxItems, `${kind}${at}: arrays are bounded`);
        if (node.type === 'string' && !at.startsWith('.apiVersion') && !at.startsWith('.kind')) {
          assert.ok(node.maxLength || node.enum, `${kind}${at}: strings are bounded`);
        }
      }
    }
  });

  void it('carries every CEL rule exactly once, as declared', () => {
    const emitted = SLUICE_KINDS.flatMap((kind) =>
      [...nodes(crdFor(kind).spec.versions[0]!.schema.openAPIV3Schema)].flatMap(
        ([, n]) => n['x-kubernetes-validations'] ?? [],
      ),
    );
    const declared = Object.values(CEL_RULES).map((r) => r.rule);
    // The model match rule sits on two nodes (spec.models[] and rules[].matches[].model).
    assert.deepEqual(
      [...new Set(emitted.map((r) => r.rule))].sort(),
      [...new Set(declared)].sort(),
    );
    for (const r of emitted) assert.ok(!('id' in r), 'fixture ids stay out of the CRD');
  });

  void it('names, scope, subresource and columns', () => {
    const route = crdFor('AIRoute');
    assert.equal(route.metadata.name, 'airoutes.sluice.dev');
    assert.deepEqual(route.spec.names.shortNames, ['air']);
    assert.deepEqual(route.spec.names.categories, ['sluice']);
    assert.equal(route.spec.scope, 'Namespaced');
    const v = route.spec.versions[0]!;
    assert.equal(v.name, 'v1alpha1');
    assert.deepEqual(v.subresources, { status: {} });
    assert.deepEqual(
      v.additionalPrinterColumns.map((c) => c.name),
      ['Models', 'Backends', 'Accepted', 'Programmed', 'EndpointsReady', 'Reason', 'Age'],
    );
    // Lists are printed from one-line summaries the operator writes: a column over a list prints
    // only the first element.
    for (const c of v.additionalPrinterColumns) {
      assert.doesNotMatch(c.jsonPath, /\[\*\]/, c.name);
      assert.ok(c.name === 'Age' || c.description, `column ${c.name} has no description`);
    }
    const policy = crdFor('AIPolicy');
    assert.deepEqual(policy.spec.names.shortNames, ['aip']);
    assert.deepEqual(
      policy.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name),
      ['Targets', 'Mode', 'Accepted', 'Programmed', 'Reason', 'Age'],
    );
    assert.equal(policy.spec.versions[0]!.additionalPrinterColumns[0]!.jsonPath, '.status.targets');
    const status = v.schema.openAPIV3Schema.properties!.status!;
    const condition = status.properties!.conditions!;
    assert.equal(condition['x-kubernetes-list-type'], 'map');
    assert.deepEqual(condition.items!.required, [
      'type',
      'status',
      'reason',
      'message',
      'lastTransitionTime',
    ]);
  });

  void it('describes every field, as kubectl explain shows it', () => {
    for (const kind of SLUICE_KINDS) {
      const root = crdFor(kind).spec.versions[0]!.schema.openAPIV3Schema;
      const missing: string[] = [];
      const walk = (node: StructuralSchema, path: string): void => {
        for (const [k, child] of Object.entries(node.properties ?? {})) {
          // The apiserver allows nothing but `type: object` on the root's metadata.
          const isMetadata = node === root && k === 'metadata';
          if (!child.description && !isMetadata) missing.push(`${path}.${k}`);
          walk(child, `${path}.${k}`);
        }
        if (node.items) walk(node.items, `${path}[]`);
        if (node.additionalProperties) walk(node.additionalProperties, `${path}{}`);
      };
      assert.ok(root.description, kind);
      walk(root, kind.toLowerCase());
      assert.deepEqual(missing, [], `${kind}: fields without a description`);
    }
  });

  void it('refuses zod constructs that have no structural form', () => {
    assert.throws(
      () => structuralSchema(z.object({ a: z.union([z.string(), z.number()]) })),
      /\.a: "anyOf" has no structural form/,
    );
    assert.throws(
      () => structuralSchema(z.object({ a: z.string().default('x') })),
      /\.a: "default" has no structural form/,
    );
    assert.throws(() => structuralSchema(z.object({ a: z.null() })), /has no structural form/);
    assert.throws(() => structuralSchema(z.object({ a: z.any() })), /single type/);
  });

  void it('turns records into maps and free-form sections into preserved objects', () => {
    const s = structuralSchema(
      z.object({ m: z.record(z.string(), z.int()), f: z.record(z.string(), z.unknown()) }),
    );
    assert.deepEqual(s.properties!.m, {
      type: 'object',
      additionalProperties: { type: 'integer' },
    });
    assert.deepEqual(s.properties!.f, {
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
    });
  });
});
