import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { descriptorSetToJson, envoyApiRoot } from './index.js';

// FieldDescriptorProto numbers: labels 1 optional, 3 repeated; types 5 int32, 9 string,
// 11 message, 14 enum.
const set = {
  file: [
    {
      // Skipped: protobufjs' own copy (camelCase field names) stands in for it.
      name: 'google/protobuf/struct.proto',
      package: 'google.protobuf',
      syntax: 'proto3',
      messageType: [{ name: 'Struct', field: [] }],
    },
    {
      name: 'p/v1/a.proto',
      package: 'p.v1',
      syntax: 'proto3',
      messageType: [
        {
          name: 'A',
          field: [
            { name: 'labels', number: 1, label: 3, type: 11, typeName: '.p.v1.A.LabelsEntry' },
            { name: 'ids', number: 2, label: 3, type: 5 },
            { name: 'text', number: 3, label: 1, type: 9, oneofIndex: 0 },
            { name: 'kind', number: 4, label: 1, type: 14, typeName: '.p.v1.Kind', oneofIndex: 0 },
            { name: 'note', number: 5, label: 1, type: 9, oneofIndex: 1, proto3Optional: true },
            { name: 'meta', number: 6, label: 1, type: 11, typeName: '.google.protobuf.Struct' },
          ],
          nestedType: [
            {
              name: 'LabelsEntry',
              field: [
                { name: 'key', number: 1, label: 1, type: 9 },
                { name: 'value', number: 2, label: 1, type: 11, typeName: '.p.v1.A' },
              ],
              options: { mapEntry: true },
            },
          ],
          oneofDecl: [{ name: 'choice' }, { name: '_note' }],
        },
      ],
      enumType: [
        {
          name: 'Kind',
          value: [
            { name: 'NONE', number: 0 },
            { name: 'ONE', number: 1 },
          ],
        },
      ],
      service: [
        {
          name: 'S',
          method: [
            {
              name: 'Chat',
              inputType: '.p.v1.A',
              outputType: '.p.v1.A',
              clientStreaming: true,
              serverStreaming: true,
            },
          ],
        },
      ],
    },
    {
      name: 'p/v1/old.proto',
      package: 'p.v1',
      // proto2: no syntax field.
      messageType: [{ name: 'Old', field: [{ name: 'ids', number: 1, label: 3, type: 5 }] }],
    },
  ],
};

function root(): protobuf.Root {
  const bytes = descriptor.FileDescriptorSet.encode(
    descriptor.FileDescriptorSet.fromObject(set),
  ).finish();
  const r = protobuf.Root.fromJSON(descriptorSetToJson(bytes));
  r.resolveAll();
  return r;
}

describe('descriptorSetToJson', () => {
  it('keeps map fields as maps (protobufjs Root.fromDescriptor makes them repeated entries)', () => {
    const a = root().lookupType('p.v1.A');
    const labels = a.fields['labels'];
    assert.ok(labels instanceof protobuf.MapField);
    assert.equal(labels.keyType, 'string');
    assert.equal(labels.resolvedType?.fullName, '.p.v1.A');
    assert.equal(a.lookup('LabelsEntry'), null, 'the entry type is not a message of its own');
    const msg = a.fromObject({ labels: { x: { text: 't' } } });
    const back = a.toObject(a.decode(a.encode(msg).finish()));
    assert.deepEqual(back, { labels: { x: { text: 't' } } });
  });

  it('keeps oneofs, proto3 optional, enums, packing by syntax, and streaming methods', () => {
    const r = root();
    const a = r.lookupType('p.v1.A');
    assert.deepEqual(a.oneofs['choice']?.oneof, ['text', 'kind']);
    assert.equal(a.fields['note']?.options?.['proto3_optional'], true);
    assert.equal(a.oneofs['_note']?.isProto3Optional, true);
    assert.equal(a.fields['kind']?.resolvedType?.fullName, '.p.v1.Kind');
    assert.equal(a.fields['ids']?.packed, true, 'proto3 repeated scalars are packed');
    assert.equal(r.lookupType('p.v1.Old').fields['ids']?.packed, false, 'proto2 ones are not');
    const chat = r.lookupService('p.v1.S').methods['Chat']!;
    assert.equal(chat.requestStream, true);
    assert.equal(chat.responseStream, true);
  });

  it("uses protobufjs' own well-known types, so Struct objects read the same everywhere", () => {
    const a = root().lookupType('p.v1.A');
    const struct = a.fields['meta']?.resolvedType as protobuf.Type;
    assert.deepEqual(Object.keys(struct.fields), ['fields']);
    const value = root().lookupType('google.protobuf.Value');
    assert.ok(value.fields['stringValue'], 'camelCase, as protobufjs bundles it');
  });
});

describe('envoyApiRoot', () => {
  it("holds the targeted release's ext_proc fields the older snapshot lacked", () => {
    const r = envoyApiRoot();
    const res = r.lookupType('envoy.service.ext_proc.v3.ProcessingResponse');
    assert.equal(res.fields['streamed_immediate_response']?.id, 11);
    const req = r.lookupType('envoy.service.ext_proc.v3.ProcessingRequest');
    assert.equal(req.fields['protocol_config']?.id, 11);
    const modes = r.lookupEnum(
      'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode',
    );
    assert.equal(modes.values['FULL_DUPLEX_STREAMED'], 4);
  });
});
