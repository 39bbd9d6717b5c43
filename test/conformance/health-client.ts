import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

/** A minimal grpc.health.v1 client, as Kubernetes gRPC probes and Envoy health checks use it. */
export class HealthClient {
  private readonly client: grpc.Client & {
    Check(
      req: { service: string },
      cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
    ): void;
  };

  constructor(address: string) {
    const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    this.client = new pkg.grpc.health.v1.Health(
      address,
      grpc.credentials.createInsecure(),
    ) as never;
  }

  check(service: string): Promise<string> {
    return new Promise((resolve, reject) =>
      this.client.Check({ service }, (err, res) =>
        err ? reject(err) : resolve(res?.status ?? 'UNKNOWN'),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}
