/**
 * The throttling proxy as its own process, for benchmarks: the proxy's pacing then has an event loop
 * of its own instead of competing with the client it measures.
 *
 *   node --import tsx test/harness/throttle-proxy-process.ts <target> <bytesPerSecond> [latencyMs]
 *
 * Prints `{"url": "http://127.0.0.1:PORT"}` on one line once listening; stops on SIGTERM or when its
 * stdin closes (so it never outlives the parent).
 */
import { startThrottleProxy } from './throttle-proxy.js';

const [target, rate, latency] = process.argv.slice(2);
if (!target || !rate) {
  process.stderr.write('usage: throttle-proxy-process.ts <target> <bytesPerSecond> [latencyMs]\n');
  process.exit(2);
}
const proxy = await startThrottleProxy({ target, bytesPerSecond: Number(rate), latencyMs: latency === undefined ? 0 : Number(latency) });
process.stdout.write(`${JSON.stringify({ url: proxy.url })}\n`);
const stop = (): void => {
  void proxy.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
