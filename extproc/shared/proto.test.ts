import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { adsService, grpcService, protoRoot, protoType } from './proto.js';

describe('shared proto loading', () => {
  it('finds proto/ above the module', () => {
    assert.ok(existsSync(join(protoRoot(), 'envoy/service/discovery/v3/ads.proto')));
  });

  it('loads the ADS service once, with the State of the World method', () => {
    const ads = adsService();
    assert.equal(adsService(), ads);
    const method = ads.service['StreamAggregatedResources'];
    assert.equal(
      method?.path,
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    );
    assert.equal(method?.requestStream, true);
    assert.equal(method?.responseStream, true);
  });

  it('names the file and service when a service is not there', () => {
    assert.throws(
      () => grpcService('envoy/service/discovery/v3/ads.proto', 'envoy.service.discovery.v3.Nope'),
      /ads\.proto: no service envoy\.service\.discovery\.v3\.Nope/,
    );
  });

  it('gives protobufjs types that round-trip our own messages', () => {
    const type = protoType('sluice/extproc/v1/config.proto', 'sluice.extproc.v1.ExtprocConfig');
    const bytes = type.encode(type.fromObject({ json: '{"a":1}' })).finish();
    assert.deepEqual(type.toObject(type.decode(bytes)), { json: '{"a":1}' });
  });
});
