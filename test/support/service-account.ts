/**
 * A Google service account for tests: a fresh RSA key pair, what the mock Vertex AI / OAuth token
 * endpoint checks assertions with (the account's email and public key), and the key file a Secret
 * holds for the gateway (its private key, and the token endpoint to use).
 */
import { generateKeyPairSync } from 'node:crypto';

export interface TestServiceAccount {
  readonly clientEmail: string;
  readonly publicKeyPem: string;
  readonly privateKeyPem: string;
  /** The mock's `vertex` option: the project and location it serves, and this account. */
  vertex(project: string, location: string): VertexAccount;
  /** The service-account key file (JSON), whose token_uri is `tokenUri`. */
  keyFile(tokenUri: string): string;
}

export interface VertexAccount {
  project: string;
  location: string;
  clientEmail: string;
  publicKeyPem: string;
}

export function testServiceAccount(clientEmail: string): TestServiceAccount {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return {
    clientEmail,
    publicKeyPem,
    privateKeyPem,
    vertex: (project, location) => ({ project, location, clientEmail, publicKeyPem }),
    keyFile: (tokenUri) =>
      JSON.stringify({
        type: 'service_account',
        client_email: clientEmail,
        private_key: privateKeyPem,
        token_uri: tokenUri,
      }),
  };
}
