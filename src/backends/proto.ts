import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as ReservationProto } from '../generated/proto/reservation.js';
import type { ProtoGrpcType as InventoryProto } from '../generated/proto/inventory.js';
import type { ProtoGrpcType as PaymentProto } from '../generated/proto/payment.js';

// The backends' contracts, loaded at runtime from proto/ (the same files the
// build generates the TypeScript types from). Options match the generator:
// field names as written, int64 as strings, enums as names, defaults filled.

function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'proto', 'common', 'v1', 'common.proto'))) return join(dir, 'proto');
    dir = dirname(dir);
  }
  throw new Error('proto/ not found next to the gateway');
}

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export type Protos = ReservationProto & InventoryProto & PaymentProto;

let cached: Protos | undefined;

export function loadProtos(): Protos {
  if (cached) return cached;
  const def = protoLoader.loadSync(['reservation/v1/reservation.proto', 'reservation/v1/inventory.proto', 'payment/v1/payment.proto'], {
    ...LOADER_OPTIONS,
    includeDirs: [protoDir()],
  });
  cached = grpc.loadPackageDefinition(def) as unknown as Protos;
  return cached;
}
