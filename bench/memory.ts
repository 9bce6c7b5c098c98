/**
 * Section 3, memory: cachewd's resident set while 8 clients (curl processes) download the whole
 * snapshot at once.
 * Sampled from /proc/<pid>/status every 20 ms, and VmHWM (the kernel's own peak, reset just before
 * the downloads when permitted) so a spike between samples is not missed.
 */
import { procMemory, resetPeak, sampleRss } from './cachewd.js';
import { curlMissing, curlParallel } from './http-get.js';
import type { ServedSnapshot } from './serving.js';
import { skippedRow, type Row } from './table.js';
import { MiB, fmtBytes, log } from './util.js';

const SECTION = 'memory';
const CLIENTS = 8;
const AIM_BYTES = 250 * MiB;

/**
 * `label` says which cachewd configuration this is (the table may hold more than one); the 250 MiB
 * aim is for the default settings only (`withAim`), not for a memory tier configured to hold the
 * snapshot itself.
 */
export async function benchMemory(pid: number, snapshot: ServedSnapshot, runs: number, label: string, withAim = true): Promise<Row[]> {
  const missing = await curlMissing();
  if (missing) return [skippedRow(SECTION, `cachewd peak RSS (${label})`, missing)];
  const idle = (await procMemory(pid)).rssBytes;
  let peak = 0;
  let hwmReset = true;
  let throughput = 0;
  for (let i = 1; i <= runs; i++) {
    hwmReset = (await resetPeak(pid)) && hwmReset;
    const sampler = sampleRss(pid, 20);
    let sampled: number;
    try {
      const jobs = Array.from({ length: CLIENTS }, () => ({ url: snapshot.url, repeat: 1, bytes: snapshot.size }));
      const stats = await curlParallel(jobs);
      throughput = Math.max(throughput, stats.bytes / 1e6 / (stats.ms / 1000));
    } finally {
      sampled = await sampler.stop();
    }
    const { hwmBytes } = await procMemory(pid);
    // Without a reset VmHWM is the lifetime peak (e.g. while generating): only the samples count then.
    const runPeak = hwmReset ? Math.max(sampled, hwmBytes) : sampled;
    peak = Math.max(peak, runPeak);
    log(`memory run ${i}/${runs} (${label}): peak RSS ${fmtBytes(runPeak)} (idle ${fmtBytes(idle)})`);
  }
  return [
    {
      section: SECTION,
      metric: `cachewd peak RSS, ${CLIENTS} concurrent full downloads (${label})`,
      ours: fmtBytes(peak),
      baseline: `${fmtBytes(idle)} (idle, before)`,
      ratio: '',
      aim: withAim ? '≤ 250 MiB' : '',
      met: withAim ? peak <= AIM_BYTES : undefined,
      note: `max over ${runs} runs; ${hwmReset ? 'VmHWM reset before each run' : 'VmHWM reset not permitted: 20 ms samples only'}; aggregate ${throughput.toFixed(0)} MB/s (best run)`,
    },
  ];
}
