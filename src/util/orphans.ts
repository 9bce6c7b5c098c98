/**
 * Children that outlived their server. Every git process cachewd starts carries the server's pid and
 * state directory in its environment (CACHEW_PARENT_PID, CACHEW_STATE_DIR) and leads its own process
 * group. A graceful stop kills those groups; a `kill -9` cannot, so at start-up (and on every sweep)
 * the process table is read and every group whose marked parent is dead and whose state directory is
 * ours is killed. The marker, not a pid file, identifies them: it survives pid reuse of the child and
 * needs no write per spawn. The state directory scopes it: a restart cleans up after its own
 * predecessor, not after other cachewd instances on the same machine (their own restart does that).
 * Linux only (/proc); elsewhere this finds nothing.
 */
import { readdir, readFile } from 'node:fs/promises';

/** Environment variable naming the cachewd process that started a child. */
export const PARENT_PID_ENV = 'CACHEW_PARENT_PID';
/** Environment variable naming that process's state directory. */
export const STATE_DIR_ENV = 'CACHEW_STATE_DIR';

/**
 * The state directory children are marked with; set once by the server at start-up. A process runs
 * one cachewd (tests that start several in one process never kill that process, so its children are
 * never orphans).
 */
let markedStateDir = '';

/** Marks every child started from now on as belonging to the server with this state directory. */
export function markChildrenWith(stateDir: string): void {
  markedStateDir = stateDir;
}

/** The marker to put into every child's environment. */
export function childMarker(): Record<string, string> {
  return { [PARENT_PID_ENV]: String(process.pid), [STATE_DIR_ENV]: markedStateDir };
}

export interface ReapOptions {
  /** Only children marked with this state directory are candidates. */
  stateDir: string;
  /** Where the process table is (default /proc); tests point it at a fixture. */
  procRoot?: string;
  /** Kills a process group (default: SIGKILL to -pgid). */
  killGroup?: (pgid: number) => void;
  /** True when `pid` is a live process (default: signal 0 and not a zombie). */
  isAlive?: (pid: number) => Promise<boolean>;
}

/** Kills the process groups of children whose cachewd (of `stateDir`) is gone; returns the group ids killed. */
export async function reapOrphans(options: ReapOptions): Promise<number[]> {
  const proc = options.procRoot ?? '/proc';
  const isAlive = options.isAlive ?? ((pid: number) => processAlive(pid, proc));
  const killGroup = options.killGroup ?? defaultKillGroup;
  let entries: string[];
  try {
    entries = await readdir(proc);
  } catch {
    return [];
  }
  const ownGroup = await processGroup(proc, process.pid);
  const verdicts = new Map<number, boolean>();
  const killed = new Set<number>();
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const parent = await markedParent(proc, name, options.stateDir);
    if (parent === undefined || parent === process.pid) continue;
    let alive = verdicts.get(parent);
    if (alive === undefined) {
      alive = await isAlive(parent);
      verdicts.set(parent, alive);
    }
    if (alive) continue;
    const group = await processGroup(proc, Number(name));
    if (group === undefined || group <= 1 || group === ownGroup || killed.has(group)) continue;
    killGroup(group);
    killed.add(group);
  }
  return [...killed];
}

/** The pid a process is marked with, when it is also marked with `stateDir`. */
async function markedParent(proc: string, pid: string, stateDir: string): Promise<number | undefined> {
  let environ: string;
  try {
    environ = await readFile(`${proc}/${pid}/environ`, 'latin1');
  } catch {
    return undefined; // gone, or not ours to read
  }
  const entries = environ.split('\0');
  const valueOf = (name: string): string | undefined => entries.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
  if (valueOf(STATE_DIR_ENV) !== stateDir) return undefined;
  const value = Number(valueOf(PARENT_PID_ENV));
  return Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** Field 5 of /proc/<pid>/stat (after the parenthesised command, which may contain spaces). */
async function processGroup(proc: string, pid: number): Promise<number | undefined> {
  const fields = await statFields(proc, pid);
  const group = Number(fields?.[2]);
  return Number.isSafeInteger(group) ? group : undefined;
}

/** The fields after `pid (comm)`: state, ppid, pgrp, ... */
async function statFields(proc: string, pid: number): Promise<string[] | undefined> {
  try {
    const stat = await readFile(`${proc}/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

async function processAlive(pid: number, proc: string): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie has exited; only its parent has not collected it yet.
  const state = (await statFields(proc, pid))?.[0];
  return state !== 'Z' && state !== 'X';
}

function defaultKillGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}
