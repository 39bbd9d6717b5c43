/**
 * AWS SigV4 for Bedrock backends: every upstream attempt is signed after its translation, so the
 * signature covers the final path and body. Signing is the AWS SDK's own signer
 * (`@smithy/signature-v4`, SHA-256 from `@smithy/hash-node`, i.e. Node's crypto).
 *
 * Credentials, per backend:
 * - a Secret (the backend's `credential`) holding an AWS shared credentials file — what
 *   `aws configure` writes: `aws_access_key_id`, `aws_secret_access_key` and an optional
 *   `aws_session_token`, in `[default]` or the file's only profile;
 * - without one, the pod's web identity (IRSA: `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`,
 *   exchanged with STS AssumeRoleWithWebIdentity by the SDK's `fromTokenFile`), else EKS Pod
 *   Identity (the agent's endpoint and token, by the SDK's `fromHttp`). Those credentials
 *   are cached and refreshed in the background ahead of expiry; a request waits only for the very
 *   first exchange, or when a refresh has failed until the old credentials expired.
 *
 * Only `host` and the `x-amz-*` headers the signer adds are signed: Envoy may still change
 * others (user-agent, content-length for a replaced body) after this filter.
 */
import type { fromHttp } from '@aws-sdk/credential-provider-http';
import type { fromTokenFile } from '@aws-sdk/credential-provider-web-identity';
import type { Hash } from '@smithy/hash-node';
import type { SignatureV4 } from '@smithy/signature-v4';
import type { ResolvedBackend } from '../config/runtime.js';
import { SluiceError } from '../errors.js';
import { Refreshing, type RefreshingOptions } from './refreshing.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
  /** When the credentials stop working; undefined for static keys. */
  expiration?: Date | undefined;
}

/** Where credentials come from: the signer asks on every attempt, the source caches. */
export interface AwsCredentialSource {
  get(): Promise<AwsCredentials>;
  close(): void;
}

/**
 * The AWS SDK's signer and credential providers (~6 MiB of V8 heap with what they load, issue
 * 16): imported once a config names a Bedrock backend (loadBackendPackages, before the config is
 * applied), not with this module, which every extproc imports (providers/auth.ts).
 */
interface AwsPackages {
  Hash: typeof Hash;
  SignatureV4: typeof SignatureV4;
  fromHttp: typeof fromHttp;
  fromTokenFile: typeof fromTokenFile;
}
let packages: Promise<AwsPackages> | undefined;

/** Loads the AWS packages; once per process, a failed load tried again next call. */
export function loadAwsSigning(): Promise<AwsPackages> {
  packages ??= Promise.all([
    import('@smithy/hash-node'),
    import('@smithy/signature-v4'),
    import('@aws-sdk/credential-provider-http'),
    import('@aws-sdk/credential-provider-web-identity'),
  ]).then(
    ([hash, sigv4, http, webIdentity]) => ({
      Hash: hash.Hash,
      SignatureV4: sigv4.SignatureV4,
      fromHttp: http.fromHttp,
      fromTokenFile: webIdentity.fromTokenFile,
    }),
    (err: unknown) => {
      packages = undefined;
      throw err;
    },
  );
  return packages;
}

/** The SigV4 service name of the Bedrock runtime endpoints. */
export const BEDROCK_SERVICE = 'bedrock';

function misconfigured(): SluiceError {
  // Never quote the secret: it names nothing but that the file is unusable.
  return new SluiceError(
    'gateway_error',
    'The gateway has no usable AWS credentials for this backend.',
  );
}

/**
 * An AWS shared credentials file → its keys: `[default]`, else the file's only profile. Keys and
 * values are trimmed; `#` and `;` start comments.
 */
export function parseAwsCredentials(text: string): AwsCredentials {
  const profiles = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      current = new Map();
      profiles.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0 || !current) continue;
    current.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  const profile =
    profiles.get('default') ?? (profiles.size === 1 ? [...profiles.values()][0] : undefined);
  const accessKeyId = profile?.get('aws_access_key_id');
  const secretAccessKey = profile?.get('aws_secret_access_key');
  if (!accessKeyId || !secretAccessKey) throw misconfigured();
  const sessionToken = profile?.get('aws_session_token');
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

export class StaticCredentials implements AwsCredentialSource {
  private readonly creds: Promise<AwsCredentials>;
  constructor(creds: AwsCredentials) {
    this.creds = Promise.resolve(creds);
  }
  get(): Promise<AwsCredentials> {
    return this.creds;
  }
  close(): void {}
}

/** AWS credentials kept fresh in the background (see providers/refreshing.ts). */
export class RefreshingCredentials
  extends Refreshing<AwsCredentials>
  implements AwsCredentialSource
{
  constructor(opts: RefreshingOptions<AwsCredentials>) {
    super(opts, misconfigured);
  }
}

export interface WebIdentityEnv {
  AWS_ROLE_ARN?: string | undefined;
  AWS_WEB_IDENTITY_TOKEN_FILE?: string | undefined;
  AWS_ROLE_SESSION_NAME?: string | undefined;
  /** EKS Pod Identity: the agent's credentials endpoint and the token file it wants. */
  AWS_CONTAINER_CREDENTIALS_FULL_URI?: string | undefined;
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE?: string | undefined;
  /** STS endpoint override (tests, VPC endpoints); the SDK's regional default otherwise. */
  AWS_ENDPOINT_URL_STS?: string | undefined;
}

/** The pod's web identity (IRSA), or undefined when the environment names none. */
export function webIdentityFetch(
  env: WebIdentityEnv,
  region: string,
): (() => Promise<AwsCredentials>) | undefined {
  const roleArn = env.AWS_ROLE_ARN;
  const webIdentityTokenFile = env.AWS_WEB_IDENTITY_TOKEN_FILE;
  if (!roleArn || !webIdentityTokenFile) return undefined;
  const clientConfig: Record<string, unknown> = { region };
  if (env.AWS_ENDPOINT_URL_STS) clientConfig.endpoint = env.AWS_ENDPOINT_URL_STS;
  return async () => {
    const { fromTokenFile } = await loadAwsSigning();
    // A fresh provider per exchange: the token file is re-read (the kubelet rotates it).
    const provider = fromTokenFile({
      roleArn,
      webIdentityTokenFile,
      roleSessionName: env.AWS_ROLE_SESSION_NAME ?? 'sluice-extproc',
      clientConfig,
    });
    const c = await provider();
    return {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      sessionToken: c.sessionToken,
      expiration: c.expiration,
    };
  };
}

/**
 * EKS Pod Identity: the Pod Identity agent's endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) with
 * the projected token (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), by the SDK's `fromHttp`; undefined
 * when the environment names no endpoint.
 */
export function podIdentityFetch(env: WebIdentityEnv): (() => Promise<AwsCredentials>) | undefined {
  const uri = env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
  if (!uri) return undefined;
  const tokenFile = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
  return async () => {
    const { fromHttp } = await loadAwsSigning();
    // A fresh provider per fetch: the token file is re-read (the kubelet rotates it).
    const provider = fromHttp({
      awsContainerCredentialsFullUri: uri,
      ...(tokenFile ? { awsContainerAuthorizationTokenFile: tokenFile } : {}),
      maxRetries: 1,
    });
    const c = await provider();
    return {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      sessionToken: c.sessionToken,
      expiration: c.expiration,
    };
  };
}

/**
 * Signers per backend, built once per backend and credential (a config reload with new keys gets
 * a new one). The web identity source is shared by every backend without a Secret.
 */
export class AwsSigning {
  private readonly signers = new Map<
    string,
    { key: string; signer: SignatureV4; source: AwsCredentialSource }
  >();
  private webIdentity: AwsCredentialSource | undefined;

  constructor(private readonly env: WebIdentityEnv = process.env) {}

  /** The headers that sign this attempt: x-amz-date, x-amz-content-sha256, token, authorization. */
  async headers(
    backend: ResolvedBackend,
    request: { method: string; authority: string; path: string; body: Buffer | undefined },
    /** Wall-clock ms: the signature's date. */
    now: number,
  ): Promise<[string, string][]> {
    const region = backend.aws?.region;
    if (!region) throw misconfigured();
    // Loaded before a config with this backend was applied: here a settled promise.
    const signer = this.signerFor(backend, region, await loadAwsSigning());
    const [pathname, query] = splitPath(request.path);
    const signed = await signer.sign(
      {
        method: request.method,
        protocol: 'https:',
        hostname: request.authority,
        path: pathname,
        query,
        headers: { host: request.authority },
        body: request.body ?? Buffer.alloc(0),
      },
      { signingDate: new Date(now) },
    );
    const out: [string, string][] = [];
    for (const [k, v] of Object.entries(signed.headers)) {
      const name = k.toLowerCase();
      if (name === 'host') continue;
      out.push([name, v]);
    }
    return out;
  }

  close(): void {
    for (const s of this.signers.values()) s.source.close();
    this.webIdentity?.close();
    this.signers.clear();
  }

  private signerFor(
    backend: ResolvedBackend,
    region: string,
    { SignatureV4, Hash }: AwsPackages,
  ): SignatureV4 {
    const key = `${region}\u0000${backend.credential ?? ''}`;
    const cached = this.signers.get(backend.name);
    if (cached && cached.key === key) return cached.signer;
    let source: AwsCredentialSource;
    if (backend.credential !== undefined) {
      source = new StaticCredentials(parseAwsCredentials(backend.credential));
    } else {
      if (!this.webIdentity) {
        // IRSA first, then EKS Pod Identity, as the AWS SDK's default chain orders them.
        const fetch = webIdentityFetch(this.env, region) ?? podIdentityFetch(this.env);
        if (!fetch) throw misconfigured();
        this.webIdentity = new RefreshingCredentials({ fetch });
      }
      source = this.webIdentity;
    }
    const signer = new SignatureV4({
      service: BEDROCK_SERVICE,
      region,
      credentials: () => source.get(),
      sha256: Hash.bind(null, 'sha256'),
    });
    if (cached && cached.source !== this.webIdentity) cached.source.close();
    this.signers.set(backend.name, { key, signer, source });
    return signer;
  }
}

function splitPath(path: string): [string, Record<string, string>] {
  const q = path.indexOf('?');
  if (q < 0) return [path, {}];
  const query: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(path.slice(q + 1))) query[k] = v;
  return [path.slice(0, q), query];
}
