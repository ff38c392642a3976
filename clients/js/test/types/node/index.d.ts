// A minimal stand-in for @types/node, for checking index.d.ts with tsc offline (Debian ships
// node-typescript but not @types/node). Only what index.d.ts and usage.mts use.
interface Buffer extends Uint8Array {
  toString(encoding?: 'utf8' | 'hex' | 'base64' | 'latin1'): string;
  equals(other: Uint8Array): boolean;
}
declare var Buffer: {
  from(data: string | Uint8Array | ArrayBuffer, encoding?: string): Buffer;
  alloc(size: number): Buffer;
};
