// SigV4 for Bedrock backends: the signature the gateway adds is the one AWS's own signer computes
// for the final request; credentials from a shared credentials file or the pod's web identity
// (a mock STS), refreshed ahead of expiry off the request path.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import {
  AwsSigning,
  parseAwsCredentials,
  podIdentityFetch,
  RefreshingCredentials,
  webIdentityFetch,
  type AwsCredentials,
} from './aws-sigv4.js';

const FILE = `# written by aws configure
[default]
aws_access_key_id = AKIDEXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
aws_session_token = FQoGZXIvYXdzEXAMPLE
`;

function backend(credential: string | undefined): ResolvedBackend {
  return {
    name: 'ns/route/bedrock',
    cluster: 'c',
    provider: 'aws-bedrock',
    credential,
    aws: { region: 'eu-west-1' },
  };
}

const PATH = `/model/${encodeURIComponent('anthropic.claude-3-haiku-20240307-v1:0')}/converse`;
const BODY = Buffer.from('{"messages":[{"role":"user","content":[{"text":"hi"}]}]}');
const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);

describe('shared credentials file', () => {
  it('reads [default], or the only profile; refuses without keys and never quotes the file', () => {
    assert.deepEqual(parseAwsCredentials(FILE), {
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
      sessionToken: 'FQoGZXIvYXdzEXAMPLE',
    });
    assert.deepEqual(
      parseAwsCredentials('[profile prod]\r\naws_access_key_id=A\r\naws_secret_access_key=B=\r\n'),
      { accessKeyId: 'A', secretAccessKey: 'B=' },
    );
    for (const bad of ['sk-not-aws-secret-123', '[a]\naws_access_key_id=A\n[b]\n']) {
      assert.throws(
        () => parseAwsCredentials(bad),
        (e: unknown) =>
          e instanceof SluiceError &&
          !e.message.includes('secret-123') &&
          e.code === 'gateway_error',
      );
    }
  });
});

describe('signing an attempt', () => {
  it('adds the headers AWS’s own signer computes over host, path and the translated body', async () => {
    const signing = new AwsSigning({});
    const h = new Map(
      await signing.headers(
        backend(FILE),
        {
          method: 'POST',
          authority: 'bedrock-runtime.eu-west-1.amazonaws.com',
          path: PATH,
          body: BODY,
        },
        NOW,
      ),
    );
    assert.equal(h.get('x-amz-date'), '20261206T120000Z');
    assert.equal(h.get('x-amz-security-token'), 'FQoGZXIvYXdzEXAMPLE');
    const reference = await new SignatureV4({
      service: 'bedrock',
      region: 'eu-west-1',
      credentials: parseAwsCredentials(FILE),
      sha256: Hash.bind(null, 'sha256'),
    }).sign(
      {
        method: 'POST',
        protocol: 'https:',
        hostname: 'bedrock-runtime.eu-west-1.amazonaws.com',
        path: PATH,
        query: {},
        headers: { host: 'bedrock-runtime.eu-west-1.amazonaws.com' },
        body: BODY,
      },
      { signingDate: new Date(NOW) },
    );
    assert.equal(h.get('authorization'), reference.headers.authorization);
    assert.match(
      h.get('authorization')!,
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20261206\/eu-west-1\/bedrock\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/,
    );
    // Another body, another signature: the signature covers the translated body.
    const other = new Map(
      await signing.headers(
        backend(FILE),
        {
          method: 'POST',
          authority: 'bedrock-runtime.eu-west-1.amazonaws.com',
          path: PATH,
          body: Buffer.from('{}'),
        },
        NOW,
      ),
    );
    assert.notEqual(other.get('authorization'), h.get('authorization'));
    signing.close();
  });

  it('without a Secret or a web identity, refuses (fails closed)', async () => {
    await assert.rejects(
      new AwsSigning({}).headers(
        backend(undefined),
        { method: 'POST', authority: 'h', path: PATH, body: BODY },
        NOW,
      ),
      (e: unknown) => e instanceof SluiceError && e.code === 'gateway_error',
    );
  });
});

describe('refreshing credentials', () => {
  it('refreshes ahead of expiry in the background; requests never wait once they have some', async () => {
    let calls = 0;
    let release: (() => void) | undefined;
    const fetch = async (): Promise<AwsCredentials> => {
      calls++;
      if (calls === 2) await new Promise<void>((r) => (release = r));
      return {
        accessKeyId: `AK${calls}`,
        secretAccessKey: 's',
        expiration: new Date(Date.now() + 400),
      };
    };
    const src = new RefreshingCredentials({ fetch, aheadMs: 300, retryMs: 50 });
    assert.equal((await src.get()).accessKeyId, 'AK1');
    // The refresh starts ~100 ms in, before expiry; while STS is slow, requests get AK1.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(calls, 2);
    assert.equal((await src.get()).accessKeyId, 'AK1');
    release!();
    await new Promise((r) => setTimeout(r, 10));
    assert.equal((await src.get()).accessKeyId, 'AK2');
    src.close();
  });

  it('retries a failed refresh and keeps serving the credentials that are still valid', async () => {
    let calls = 0;
    const fetch = (): Promise<AwsCredentials> => {
      calls++;
      if (calls === 2)
        return Promise.reject(new Error('sts: token file /var/run/secret unreadable'));
      return Promise.resolve({
        accessKeyId: `AK${calls}`,
        secretAccessKey: 's',
        expiration: new Date(Date.now() + 2000),
      });
    };
    // Refresh 200 ms after issue; the failure is retried 150 ms later.
    const src = new RefreshingCredentials({ fetch, aheadMs: 1800, retryMs: 150 });
    assert.equal((await src.get()).accessKeyId, 'AK1');
    await new Promise((r) => setTimeout(r, 270));
    assert.equal(calls, 2);
    assert.equal((await src.get()).accessKeyId, 'AK1');
    await new Promise((r) => setTimeout(r, 180));
    assert.equal(calls, 3);
    assert.equal((await src.get()).accessKeyId, 'AK3');
    src.close();
  });
});

function stsAnswer(n: number, expiration: Date): string {
  return `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:sluice:extproc</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock/sluice-extproc</Arn>
      <AssumedRoleId>AROAEXAMPLE:sluice-extproc</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIA${n}</AccessKeyId>
      <SecretAccessKey>secret-${n}</SecretAccessKey>
      <SessionToken>token-${n}</SessionToken>
      <Expiration>${expiration.toISOString()}</Expiration>
    </Credentials>
    <Audience>sts.amazonaws.com</Audience>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r-${n}</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`;
}

describe('web identity (IRSA) against a mock STS', () => {
  it('exchanges the token file for credentials and refreshes them before they expire', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-irsa-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'jwt-1');
    const seen: URLSearchParams[] = [];
    const sts = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        seen.push(form);
        res.writeHead(200, { 'content-type': 'text/xml' });
        // Each set lasts 1.5 s; refreshed 1.2 s ahead, i.e. ~0.3 s after it was issued.
        res.end(stsAnswer(seen.length, new Date(Date.now() + 1500)));
      });
    });
    await new Promise<void>((r) => sts.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(sts.address() as AddressInfo).port}`;
    try {
      const fetch = webIdentityFetch(
        {
          AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/bedrock',
          AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
          AWS_ENDPOINT_URL_STS: endpoint,
        },
        'us-east-1',
      )!;
      const src = new RefreshingCredentials({ fetch, aheadMs: 1200, retryMs: 100 });
      const first = await src.get();
      assert.equal(first.accessKeyId, 'ASIA1');
      assert.equal(first.sessionToken, 'token-1');
      assert.equal(seen[0]!.get('Action'), 'AssumeRoleWithWebIdentity');
      assert.equal(seen[0]!.get('RoleArn'), 'arn:aws:iam::123456789012:role/bedrock');
      assert.equal(seen[0]!.get('WebIdentityToken'), 'jwt-1');
      // The kubelet rotates the token: the next exchange reads the new one.
      writeFileSync(tokenFile, 'jwt-2');
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(seen.length >= 2, 'refreshed before expiry');
      assert.equal(seen[1]!.get('WebIdentityToken'), 'jwt-2');
      const next = await src.get();
      assert.notEqual(next.accessKeyId, 'ASIA1');
      assert.ok(next.expiration!.getTime() > Date.now());
      src.close();
    } finally {
      sts.close();
    }
  });
});

describe('EKS Pod Identity against a mock agent', () => {
  it('fetches with the projected token, refreshes before expiry, and signs with what it got', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-podid-'));
    const tokenFile = join(dir, 'eks-pod-identity-token');
    writeFileSync(tokenFile, 'pod-token-1');
    const auths: string[] = [];
    const agent = http.createServer((req, res) => {
      auths.push(String(req.headers.authorization));
      if (
        req.headers.authorization !== 'pod-token-1' &&
        req.headers.authorization !== 'pod-token-2'
      ) {
        res.writeHead(401);
        res.end();
        return;
      }
      const n = auths.length;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          AccessKeyId: `ASIAPOD${n}`,
          SecretAccessKey: `pod-secret-${n}`,
          Token: `pod-session-${n}`,
          AccountId: '123456789012',
          Expiration: new Date(Date.now() + 1500).toISOString(),
        }),
      );
    });
    await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
    const uri = `http://127.0.0.1:${(agent.address() as AddressInfo).port}/v1/credentials`;
    try {
      const fetch = podIdentityFetch({
        AWS_CONTAINER_CREDENTIALS_FULL_URI: uri,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      })!;
      const src = new RefreshingCredentials({ fetch, aheadMs: 1200, retryMs: 100 });
      const first = await src.get();
      assert.equal(first.accessKeyId, 'ASIAPOD1');
      assert.equal(first.sessionToken, 'pod-session-1');
      writeFileSync(tokenFile, 'pod-token-2');
      await new Promise((r) => setTimeout(r, 700));
      assert.deepEqual(auths.slice(0, 2), ['pod-token-1', 'pod-token-2']);
      assert.notEqual((await src.get()).accessKeyId, 'ASIAPOD1');
      src.close();
      // The signer uses Pod Identity when the backend has no Secret and there is no IRSA.
      const signing = new AwsSigning({
        AWS_CONTAINER_CREDENTIALS_FULL_URI: uri,
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      });
      const h = new Map(
        await signing.headers(
          backend(undefined),
          { method: 'POST', authority: 'h', path: PATH, body: BODY },
          Date.now(),
        ),
      );
      assert.match(h.get('authorization')!, /Credential=ASIAPOD\d+\//);
      assert.match(h.get('x-amz-security-token')!, /^pod-session-\d+$/);
      signing.close();
    } finally {
      agent.close();
    }
  });
});
