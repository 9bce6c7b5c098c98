/**
 * The `zstd-napi` addon (libzstd, built from source at `npm ci`), loaded once for both of its users:
 * the generator's frame compression (git/snapshot/zstd-native.ts) and the restore client's
 * decompression (client/zstd-decompress.ts). It is an optional dependency: where it could not be
 * built, `zstdAddon()` is null and both fall back to the zstd CLI.
 */
import { createRequire } from 'node:module';

/** A compression context (ZSTD_CCtx). */
export interface CompressionContext {
  setParameter(param: number, value: number): void;
  reset(directive: number): void;
  compress2(dst: Uint8Array, src: Uint8Array): number;
  /** [bytes left to flush (0 = frame complete at `end`), bytes written to dst, bytes read from src] */
  compressStream2(dst: Uint8Array, src: Uint8Array, endOp: number): [number, number, number];
}

/** A decompression context (ZSTD_DCtx). */
export interface DecompressionContext {
  setParameter(param: number, value: number): void;
  /** [remaining hint (0 = frame complete), bytes written to dst, bytes read from src] */
  decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
}

/** The part of zstd-napi's `binding` module cachew uses. */
export interface ZstdAddon {
  CCtx: new () => CompressionContext;
  CParameter: { compressionLevel: number; checksumFlag: number; contentSizeFlag: number; nbWorkers: number };
  EndDirective: { continue: number; end: number };
  ResetDirective: { sessionOnly: number };
  compressBound(size: number): number;
  versionString(): string;
  DCtx: new () => DecompressionContext;
  DParameter: { windowLogMax: number };
}

let addon: ZstdAddon | null | undefined;

/** The addon, or null when it cannot load on this host. Loaded once per process (per thread). */
export function zstdAddon(): ZstdAddon | null {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)('zstd-napi/binding') as ZstdAddon;
    } catch {
      addon = null;
    }
  }
  return addon;
}
