import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AttemptLedger } from '../governance/budget.js';
import type { GovernanceState } from '../pipeline/governance.js';
import { RequestStore, type RequestState } from '../pipeline/request-store.js';
import { channelPair, IpcPeer } from './ipc.js';
import { remoteRequests, requestOwner, serveRequests, workerRequestId } from './requests.js';

function state(id: string, over: Partial<RequestState> = {}): RequestState {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
  return {
    id,
    api: 'openai',
    operation: 'chat',
    model: 'gpt-4o-mini',
    routeName: 'r',
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: false,
    forcedUsage: false,
    attempts: [],
    createdAt: 0,
    ...over,
  };
}

describe('requests across workers', () => {
  it('names the owner in the id', () => {
    const id = workerRequestId(3, '0b7c1f0e-1111-4222-8333-944445555666');
    assert.equal(id, 'w3.0b7c1f0e-1111-4222-8333-944445555666');
    assert.equal(requestOwner(id), 3);
    assert.equal(requestOwner('0b7c1f0e-1111-4222-8333-944445555666'), undefined);
    const r = remoteRequests(new IpcPeer(channelPair()[0]), 1);
    assert.equal(r.elsewhere(id), true);
    assert.equal(r.elsewhere(workerRequestId(1, 'x')), false, 'its own: no round trip');
    assert.equal(r.elsewhere('plain-id'), false);
  });

  it('hands over what a translator reads, then records the attempt on the owner', async () => {
    const [a, b] = channelPair();
    const store = new RequestStore(() => 0);
    const ledger = new AttemptLedger();
    const st = state('w2.abc', {
      outputTokenCap: 300,
      governance: { ledger } as unknown as GovernanceState,
    });
    store.put(st);
    serveRequests(new IpcPeer(b), store);
    const remote = remoteRequests(new IpcPeer(a), 1);
    assert.deepEqual(await remote.get('w2.abc'), {
      api: 'openai',
      operation: 'chat',
      model: 'gpt-4o-mini',
      body: st.body,
      stream: false,
      forcedUsage: false,
      outputTokenCap: 300,
    });
    assert.deepEqual(st.attempts, [], 'reading records nothing');
    assert.equal(
      await remote.begin({ id: 'w2.abc', backend: 'openai', provider: 'openai', startedAtMs: 42 }),
      true,
    );
    assert.deepEqual(st.attempts, [{ backend: 'openai', provider: 'openai', startedAtMs: 42 }]);
    assert.equal(ledger.attempts, 1, "the request's ledger counts the attempt");
    store.close();
  });

  it('hands over a Responses turn the gateway keeps, and a request for a provider-kept response', async () => {
    const [a, b] = channelPair();
    const store = new RequestStore(() => 0);
    const resource = { backend: 'ns/r/openai', call: '/responses/resp_1', query: 'x=1' };
    store.put(state('w2.turn', { operation: 'responses', responseId: 'resp_gw' }));
    store.put(state('w2.kept', { operation: 'responses', body: {}, resource }));
    serveRequests(new IpcPeer(b), store);
    const remote = remoteRequests(new IpcPeer(a), 1);
    assert.equal((await remote.get('w2.turn'))?.responseId, 'resp_gw');
    assert.deepEqual((await remote.get('w2.kept'))?.resource, resource);
    store.close();
  });

  it('says so for a request the owner no longer holds', async () => {
    const [a, b] = channelPair();
    const store = new RequestStore(() => 0);
    serveRequests(new IpcPeer(b), store);
    const remote = remoteRequests(new IpcPeer(a), 1);
    assert.equal(await remote.get('w2.gone'), undefined);
    assert.equal(await remote.begin({ id: 'w2.gone', backend: 'b', provider: 'openai' }), false);
    store.close();
  });
});
