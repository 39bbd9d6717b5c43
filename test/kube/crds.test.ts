// The generated CRDs on a real apiserver: they install, every CEL rule accepts its valid fixtures
// and rejects its invalid ones with the exact message, the offline validator agrees document by
// document, and the printer columns, short names and category work through kubectl.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { ApiException, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { CEL_RULES } from '../../operator/api/schema.js';
import { GROUP, VERSION } from '../../operator/api/types.js';
import { readDocuments } from '../../operator/source/yaml.js';
import { policySummary, routeSummary } from '../../operator/status/summary.js';
import { apiserverMessage, validateDocument } from '../../operator/validate/validate.js';
import { startKubeEnv } from './env.js';
import type { KubeEnv } from './env.js';

const FIXTURES = new URL('../fixtures/crds/', import.meta.url).pathname;
const CRDS = new URL('../../crds/', import.meta.url).pathname;
const PLURAL: Record<string, string> = { AIRoute: 'airoutes', AIPolicy: 'aipolicies' };

interface Fixture {
  source: string;
  doc: any;
  expectValid: boolean;
}

async function fixtures(file: string): Promise<Fixture[]> {
  const { documents, problems } = await readDocuments([FIXTURES + file]);
  assert.deepEqual(problems, []);
  return documents.map((d) => ({ ...d, expectValid: file.endsWith('.valid.yaml') }));
}

let env: KubeEnv;
let nsCount = 0;

async function freshNamespace(): Promise<string> {
  const name = `crds-${process.pid}-${++nsCount}`;
  await env.kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

// Right after a CRD is Established its storage may still be initialising (429); retry that only.
async function create(namespace: string, doc: any): Promise<{ code: number; message: string }> {
  const api = env.kubeConfig.makeApiClient(CustomObjectsApi);
  const body = { ...doc, metadata: { ...doc.metadata, namespace } };
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL[doc.kind as string]!,
        body,
        fieldValidation: 'Strict',
      });
      return { code: 201, message: '' };
    } catch (err) {
      if (!(err instanceof ApiException)) throw err;
      const raw: unknown = err.body;
      const parsed = (typeof raw === 'string' ? JSON.parse(raw) : raw) as { message: string };
      if (err.code === 429 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      return { code: err.code, message: parsed.message };
    }
  }
}

void before(async () => {
  env = await startKubeEnv();
  const applied = await env.kubectl(['apply', '-f', CRDS]);
  assert.equal(applied.code, 0, applied.stderr);
  const established = await env.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=30s',
    'crd/airoutes.sluice.dev',
    'crd/aipolicies.sluice.dev',
  ]);
  assert.equal(established.code, 0, established.stderr);
});

void after(async () => {
  await env?.stop();
});

const files = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

void describe('generated CRDs on kube-apiserver', () => {
  void it('has a valid and an invalid fixture for every CEL rule', () => {
    for (const rule of Object.values(CEL_RULES)) {
      assert.ok(files.includes(`${rule.id}.valid.yaml`), `${rule.id}.valid.yaml`);
      assert.ok(files.includes(`${rule.id}.invalid.yaml`), `${rule.id}.invalid.yaml`);
    }
  });

  for (const file of files) {
    void describe(file, () => {
      let namespace: string;
      let docs: Fixture[] = [];
      const ruleId = file.replace(/\.(in)?valid\.yaml$/, '');
      const rule = Object.values(CEL_RULES).find((r) => r.id === ruleId);

      void before(async () => {
        namespace = await freshNamespace();
        docs = await fixtures(file);
        assert.ok(docs.length > 0, 'fixture file has documents');
      });

      void it('gets the same verdict and message from the apiserver and offline', async () => {
        for (const { source, doc, expectValid } of docs) {
          const name = `${doc.kind}/${doc.metadata.name} (${source})`;
          const offline = validateDocument(doc);
          const server = await create(namespace, doc);
          if (expectValid) {
            assert.equal(server.code, 201, `${name}: apiserver said ${server.message}`);
            assert.deepEqual(offline.errors, [], name);
            assert.equal(offline.outcome, 'valid', name);
            continue;
          }
          assert.equal(
            server.code,
            422,
            `${name}: apiserver said ${server.code} ${server.message}`,
          );
          assert.equal(offline.outcome, 'invalid', name);
          const expect = doc.metadata.annotations?.['test.sluice.dev/expect'] as string | undefined;
          const field = doc.metadata.annotations?.['test.sluice.dev/field'] as string | undefined;
          if (expect !== undefined) {
            const message = `${doc.kind}.${GROUP} "${doc.metadata.name}" is invalid: ${expect}`;
            assert.equal(server.message, message, `${name}: apiserver`);
            assert.equal(apiserverMessage(offline), message, `${name}: offline`);
            if (rule) assert.equal(offline.errors[0]?.rule, rule.rule, `${name}: failed rule`);
          } else {
            assert.ok(field, `${name}: an invalid fixture names its expected error or field`);
            assert.ok(
              server.message.includes(`${field}: `),
              `${name}: apiserver message ${server.message} does not name ${field}`,
            );
            assert.deepEqual(
              offline.errors.map((e) => e.field),
              [field],
              `${name}: offline errors ${JSON.stringify(offline.errors)}`,
            );
          }
        }
      });
    });
  }

  void describe('kubectl', () => {
    let namespace: string;

    const summaries: Record<string, Record<string, string>> = {};

    void before(async () => {
      namespace = await freshNamespace();
      for (const { doc } of await fixtures('complete.valid.yaml')) {
        assert.equal((await create(namespace, doc)).code, 201);
        // What the operator writes beside the conditions, for the columns.
        summaries[doc.kind] =
          doc.kind === 'AIRoute' ? routeSummary(doc) : policySummary(doc, ['complete']);
      }
      const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      const condition = (type: string, status: string, reason: string) => ({
        type,
        status,
        reason,
        message: '',
        lastTransitionTime: now,
      });
      const api = env.kubeConfig.makeApiClient(CustomObjectsApi);
      const setStatus = async (plural: string, kind: string, conditions: object[]) => {
        const ref = { group: GROUP, version: VERSION, namespace, plural, name: 'complete' };
        const current = await api.getNamespacedCustomObject(ref);
        await api.replaceNamespacedCustomObjectStatus({
          ...ref,
          body: { ...current, status: { observedGeneration: 1, conditions, ...summaries[kind] } },
        });
      };
      await setStatus('airoutes', 'AIRoute', [
        condition('Accepted', 'True', 'Accepted'),
        condition('Programmed', 'False', 'NACKed'),
        condition('EndpointsReady', 'False', 'PortNotFound'),
      ]);
      await setStatus('aipolicies', 'AIPolicy', [
        condition('Accepted', 'True', 'Accepted'),
        condition('Programmed', 'Unknown', 'Pending'),
      ]);
    });

    void it('prints the AIRoute columns', async () => {
      const got = await env.kubectl(['get', 'air', '-n', namespace, '-o', 'wide']);
      assert.equal(got.code, 0, got.stderr);
      const [header, row] = got.stdout.trimEnd().split('\n');
      const columns = header!.split(/\s{2,}/);
      assert.deepEqual(columns, [
        'NAME',
        'MODELS',
        'BACKENDS',
        'ACCEPTED',
        'PROGRAMMED',
        'ENDPOINTSREADY',
        'REASON',
        'AGE',
      ]);
      // Every model and backend, from the operator's one-line summaries: a column over a list
      // path would print only its first element.
      const cells = row!.split(/\s{2,}/);
      assert.equal(cells[1], summaries['AIRoute']!['models']);
      assert.equal(cells[2], summaries['AIRoute']!['backends']);
      assert.match(cells[1]!, /, /, 'the fixture serves more than one model');
      assert.deepEqual(cells.slice(3, 7), ['True', 'False', 'False', 'NACKed']);
    });

    void it('prints the AIPolicy columns', async () => {
      const got = await env.kubectl(['get', 'aip', '-n', namespace]);
      assert.equal(got.code, 0, got.stderr);
      const [header, row] = got.stdout.trimEnd().split('\n');
      assert.deepEqual(header!.split(/\s+/), [
        'NAME',
        'TARGETS',
        'MODE',
        'ACCEPTED',
        'PROGRAMMED',
        'AGE',
      ]);
      assert.deepEqual(row!.split(/\s+/).slice(0, 5), [
        'complete',
        'complete',
        'enforce',
        'True',
        'Unknown',
      ]);
    });

    void it('lists both kinds under the sluice category', async () => {
      const got = await env.kubectl(['get', 'sluice', '-n', namespace, '-o', 'name']);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(got.stdout.trim().split('\n').sort(), [
        'aipolicy.sluice.dev/complete',
        'airoute.sluice.dev/complete',
      ]);
    });

    void it('reads an unquoted `on` key as kubectl does (YAML 1.1: the boolean true)', async () => {
      const manifest = [
        'apiVersion: sluice.dev/v1alpha1',
        'kind: AIRoute',
        'metadata: {name: unquoted-on}',
        'spec:',
        '  models: [{prefix: llama-}]',
        '  backends: [{name: vllm, provider: openai-compatible, endpoint: {service: {name: vllm, port: 80}}}]',
        '  retry:',
        '    on: [5xx]',
        '',
      ].join('\n');
      const applied = await env.kubectl(['create', '-n', namespace, '-f', '-'], {
        input: manifest,
      });
      assert.notEqual(applied.code, 0);
      assert.match(applied.stderr, /unknown field "spec\.retry\.true"/);
      const { documents } = await readDocuments(['-'], () => Promise.resolve(manifest));
      const offline = validateDocument(documents[0]!.doc);
      assert.deepEqual(
        offline.errors.map((e) => e.field),
        ['spec.retry.true'],
      );
    });

    void it('explains fields from the schema descriptions', async () => {
      const got = await env.kubectl(['explain', 'airoutes.spec.backends.weight']);
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stdout, /Relative share among backends of the same priority/);
    });

    void it('has a description for every field kubectl explain shows', async () => {
      for (const path of [
        'airoutes.spec',
        'airoutes.spec.backends',
        'airoutes.status',
        'airoutes.status.conditions',
        'aipolicies.spec',
        'aipolicies.spec.masking',
        'aipolicies.spec.promptGuard',
        'aipolicies.status',
      ]) {
        const got = await env.kubectl(['explain', path]);
        assert.equal(got.code, 0, got.stderr);
        assert.doesNotMatch(got.stdout, /<no description>/, `${path}:\n${got.stdout}`);
      }
    });
  });
});
