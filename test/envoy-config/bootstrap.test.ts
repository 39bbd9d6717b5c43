// The one Envoy document `sluice run` writes itself rather than serving over ADS: its bootstrap
// (the ADS cluster and, for draining on SIGTERM, the admin interface on a Unix socket), read
// strictly with the targeted Envoy release's API, like every resource the operator emits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envoyBootstrap } from '../../operator/standalone/run.js';
import { envoyApiRoot } from '../../operator/envoy-api/index.js';
import { validateEnvoy } from '../../operator/envoy-api/validate.js';
import { encodeStrict } from './strict-json.js';

void describe('envoy-config: the sluice run bootstrap', () => {
  void it('decodes strictly as envoy.config.bootstrap.v3.Bootstrap, admin on a Unix socket', () => {
    const root = envoyApiRoot();
    const bootstrap = envoyBootstrap('/run/x/ads.sock', '/run/x/envoy-admin.sock');
    const bytes = encodeStrict(root, 'envoy.config.bootstrap.v3.Bootstrap', bootstrap);
    // And nothing the release's validation rules refuse: Envoy would not start.
    assert.deepEqual(validateEnvoy(root, 'envoy.config.bootstrap.v3.Bootstrap', bytes), []);
    const decoded = root.lookupType('envoy.config.bootstrap.v3.Bootstrap').decode(bytes);
    const admin = (decoded as unknown as { admin: { address: { pipe: { path: string } } } }).admin;
    assert.equal(admin.address.pipe.path, '/run/x/envoy-admin.sock');
  });
});
