/**
 * A mock Microsoft Entra ID token endpoint (the OAuth 2.0 v2 endpoint of one tenant), for Azure
 * OpenAI backends that authenticate with Entra tokens: POST /{tenant}/oauth2/v2.0/token, form
 * encoded, grant `client_credentials` for the scope `https://cognitiveservices.azure.com/.default`,
 * the client proven by its `client_secret` or by a `client_assertion` of type jwt-bearer (workload
 * identity's federated token). Refusals use Entra's shape (`error`, `error_description` with an
 * AADSTS code). The gateway reaches it through AZURE_AUTHORITY_HOST (the mock's URL).
 *
 * Tokens live `tokenSeconds`; `valid(authorization)` says whether a `Bearer` header carries one
 * this mock issued that has not expired: the Azure OpenAI mock (provider.ts `auth.azureBearer`)
 * refuses everything else.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const ENTRA_SCOPE = 'https://cognitiveservices.azure.com/.default';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface MockEntraOptions {
  host?: string;
  tenantId: string;
  clientId: string;
  /** The app's client secret (client credentials). */
  clientSecret?: string;
  /** The federated token workload identity presents as its client assertion. */
  federatedToken?: string;
  /** Lifetime of issued tokens (default 3599 s, as Entra). */
  tokenSeconds?: number;
  now?: () => number;
}

export interface EntraTokenRequest {
  tenant: string;
  form: Record<string, string>;
  /** Whether a token was issued. */
  issued: boolean;
}

export interface MockEntra {
  readonly url: string;
  readonly requests: EntraTokenRequest[];
  readonly tokensIssued: number;
  /** Whether `authorization` is `Bearer <a token this mock issued, not expired>`. */
  valid(authorization: string | undefined): boolean;
  close(): Promise<void>;
}

function entraError(res: ServerResponse, status: number, error: string, description: string): void {
  const text = JSON.stringify({
    error,
    error_description: description,
    error_codes: [Number(/AADSTS(\d+)/.exec(description)?.[1] ?? 0)],
    timestamp: new Date().toISOString().replace('T', ' ').slice(0, 19) + 'Z',
  });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(text);
}

export async function startMockEntra(opts: MockEntraOptions): Promise<MockEntra> {
  const now = opts.now ?? Date.now;
  const tokens = new Map<string, number>();
  const requests: EntraTokenRequest[] = [];
  let issued = 0;

  function handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const m = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec((req.url ?? '').split('?')[0]!);
    if (!m || req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    const form = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
    const record: EntraTokenRequest = { tenant: decodeURIComponent(m[1]!), form, issued: false };
    requests.push(record);
    if (record.tenant !== opts.tenantId)
      return entraError(
        res,
        400,
        'invalid_request',
        `AADSTS90002: Tenant '${record.tenant}' not found.`,
      );
    if (form.grant_type !== 'client_credentials')
      return entraError(
        res,
        400,
        'unsupported_grant_type',
        'AADSTS70003: The app requested an unsupported grant type.',
      );
    if (form.scope !== ENTRA_SCOPE)
      return entraError(res, 400, 'invalid_scope', 'AADSTS70011: The provided scope is not valid.');
    if (form.client_id !== opts.clientId)
      return entraError(
        res,
        400,
        'unauthorized_client',
        `AADSTS700016: Application with identifier '${form.client_id}' was not found in the directory.`,
      );
    if (form.client_secret !== undefined) {
      if (opts.clientSecret === undefined || form.client_secret !== opts.clientSecret)
        return entraError(
          res,
          401,
          'invalid_client',
          'AADSTS7000215: Invalid client secret provided.',
        );
    } else if (form.client_assertion !== undefined) {
      if (
        form.client_assertion_type !== JWT_BEARER ||
        opts.federatedToken === undefined ||
        form.client_assertion !== opts.federatedToken
      )
        return entraError(
          res,
          401,
          'invalid_client',
          'AADSTS700213: No matching federated identity record found for presented assertion.',
        );
    } else {
      return entraError(
        res,
        401,
        'invalid_client',
        "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }
    const seconds = opts.tokenSeconds ?? 3599;
    const token = `eyJ0eXAiOiJKV1QifQ.mock-entra-${++issued}`;
    tokens.set(token, now() + seconds * 1000);
    record.issued = true;
    const text = JSON.stringify({
      token_type: 'Bearer',
      expires_in: seconds,
      ext_expires_in: seconds,
      access_token: token,
    });
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, Buffer.concat(chunks), res));
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    requests,
    get tokensIssued() {
      return issued;
    },
    valid(authorization) {
      const t = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
      const expiry = t === undefined ? undefined : tokens.get(t);
      return expiry !== undefined && expiry > now();
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
