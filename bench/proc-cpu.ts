/**
 * CPU time of a server process and its children (nginx's workers), from /proc: the "server CPU
 * seconds per GB served" of the serving benchmark. Unlike throughput it hardly depends on what else the
 * machine is doing, so it stays comparable on a busy machine.
 */
import { readFile, readdir } from 'node:fs/promises';
import { run } from './util.js';

let ticksPerSecond: number | undefined;

async function clockTicks(): Promise<number> {
  if (ticksPerSecond === undefined) {
    const out = await run('getconf', ['CLK_TCK'], { timeoutMs: 10_000 }).catch(() => '100');
    ticksPerSecond = Number(out.trim()) || 100;
  }
  return ticksPerSecond;
}

/** [ppid, utime + stime in ticks] of one process, or undefined when it is gone. */
async function statOf(pid: number): Promise<[number, number] | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(fields[1]), Number(fields[11]) + Number(fields[12])];
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds used so far by `pid` and every process descended from it. */
export async function treeCpuSeconds(pid: number): Promise<number> {
  const ticks = await clockTicks();
  const byParent = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await statOf(Number(name));
    if (!stat) continue;
    cpu.set(Number(name), stat[1]);
    const siblings = byParent.get(stat[0]) ?? [];
    siblings.push(Number(name));
    byParent.set(stat[0], siblings);
  }
  let total = 0;
  const pending = [pid];
  while (pending.length > 0) {
    const next = pending.pop() as number;
    total += cpu.get(next) ?? 0;
    pending.push(...(byParent.get(next) ?? []));
  }
  return total / ticks;
}
